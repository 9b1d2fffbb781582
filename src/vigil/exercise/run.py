"""Run scenarios against a running Vigil, from outside, over its HTTP API, and score them.

For each scenario, in turn: its recordings are sent to `POST /api/v1/ingest` (the reply
gives the stream offsets of the events taken), Vigil is waited for until it has detected on
all of them (`/health`'s backlog), and the alerts on exactly those events are read
(`GET /api/v1/alerts?event_from=&event_to=`). The scenario is detected when one of them
carries an expected technique (or one of its sub-techniques) or tactic, stored within
`within_s` of the send: its time to detect is from the send to the first such alert. A
live-fire scenario runs its commands (real tools against a test host, whose logs Vigil
reads); its alerts are those on events since it began, and its time to detect is from the
event (or the start, when later) to the alert. When
it expects an incident (and containment), the alert's incident is waited for
(`GET /api/v1/alerts/{id}`), and its containment by a playbook (`contained_at`, as the
response engine stamps it); a scenario passes when all it expects happened in time.

    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})
    result = run(client, scenarios, data=Path("../shared/data"))
    result.coverage, result.mttd_s
    report_to(client, result, name="nightly")  # to Vigil's coverage page
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from vigil.errors import Invalid, Unavailable, VigilError
from vigil.events.records import tags_match
from vigil.exercise.recordings import latest, records, shifted
from vigil.exercise.scenario import Scenario

CHUNK = 5_000  # records a request
PAGE = 1_000  # alerts a request
IDLE_POLL_S = 0.05
# A shell's exits for a command not found (127) or not executable (126): nothing was fired
NOT_RUN = (126, 127)


@dataclass
class Outcome:
    """One scenario's result."""

    id: str
    name: str
    techniques: list[str]
    tactics: list[str]
    records: int = 0
    detected: bool = False
    time_to_detect_s: float | None = None
    incident: str | None = None  # the incident holding the first matching alert
    time_to_incident_s: float | None = None
    contained: bool = False
    time_to_contain_s: float | None = None
    passed: bool = False  # detected, and the incident and containment it expects
    rules: list[str] = field(default_factory=list)  # the matching alerts' rules
    other_rules: list[str] = field(default_factory=list)  # alerts on it, other techniques
    fired: list[dict[str, Any]] = field(default_factory=list)  # live-fire commands run
    problem: str | None = None  # why it could not be run


@dataclass
class Result:
    url: str
    started: float
    finished: float = 0.0
    outcomes: list[Outcome] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)  # per technique missed: why

    @property
    def tested(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.problem is None]

    @property
    def coverage(self) -> float:
        """The share of the scenarios run that passed: detected, with the incident and the
        containment they expect."""
        tested = self.tested
        return sum(o.passed for o in tested) / len(tested) if tested else 0.0

    @property
    def mttd_s(self) -> float | None:
        return _mean(o.time_to_detect_s for o in self.tested)

    @property
    def mttc_s(self) -> float | None:
        """Mean time from the send to the incident's containment, over those contained."""
        return _mean(o.time_to_contain_s for o in self.tested)

    def by_technique(self) -> dict[str, dict[str, Any]]:
        """Each tested technique (else tactic): scenarios tested and detected, best time."""
        out: dict[str, dict[str, Any]] = {}
        for outcome in self.tested:
            for name in outcome.techniques or outcome.tactics:
                row = out.setdefault(name, {"tested": 0, "detected": 0, "rules": set()})
                row["tested"] += 1
                row["detected"] += int(outcome.detected)
                row["rules"].update(outcome.rules)
        return {k: {**v, "rules": sorted(v["rules"])} for k, v in sorted(out.items())}

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "started": self.started,
            "finished": self.finished,
            "tested": len(self.tested),
            "detected": sum(o.detected for o in self.tested),
            "passed": sum(o.passed for o in self.tested),
            "coverage": round(self.coverage, 4),
            "mttd_s": self.mttd_s,
            "mttc_s": self.mttc_s,
            "by_technique": self.by_technique(),
            "gaps": self.gaps,
            "scenarios": [asdict(o) for o in self.outcomes],
        }


class NotAllowed(Exception):
    """The token may not send events (or read alerts): no scenario can run."""


def _mean(values: Iterable[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return round(statistics.fmean(found), 3) if found else None


def matches(tags: Sequence[str], scenario: Scenario) -> bool:
    """An alert's tags carry one of the expected techniques (or a sub-technique of one) or
    tactics."""
    expect = scenario.expect
    return tags_match([f"attack.{name}" for name in (*expect.techniques, *expect.tactics)], tags)


def run(
    client: httpx.Client,
    scenarios: Iterable[Scenario],
    *,
    data: Path,
    progress: Callable[[Outcome], object] | None = None,
    live_fire: bool = False,
) -> Result:
    """Each scenario in turn; a scenario that cannot be sent is kept with its problem.
    Live-fire steps run only given `live_fire`."""
    result = Result(str(client.base_url), time.time())
    for scenario in scenarios:
        outcome = _one(client, scenario, data, live_fire)
        result.outcomes.append(outcome)
        if progress is not None:
            progress(outcome)
    result.finished = time.time()
    loaded = client.get("/api/v1/rules")
    if loaded.status_code == 200:
        result.gaps = gaps(result, loaded.json())
    return result


def report_to(client: httpx.Client, result: Result, *, name: str) -> str | None:
    """The results to the Vigil they were scored against (`POST /api/v1/exercises`), for its
    coverage page: None once it took them, else why not (the token's role may not report
    them, an older Vigil...). Never raises: the run is done and written whatever it says."""
    try:
        reply = client.post(
            "/api/v1/exercises",
            params={"name": name[:256]} if name else {},
            content=orjson.dumps(result.as_dict()),
            headers={"Content-Type": "application/json"},
        )
    except httpx.HTTPError as exc:
        return f"the results could not be reported to {client.base_url}: {exc}"
    if reply.status_code in (401, 403):
        return (
            f"Vigil did not take the results ({reply.status_code}): the token's role may not "
            "report exercises (exercises:write: admin, analyst)"
        )
    if reply.status_code >= 300:
        return f"Vigil did not take the results ({reply.status_code}): {reply.text[:200]}"
    return None


def gaps(result: Result, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each technique (else tactic) with scenarios not detected, and why as far as the rules
    loaded tell: none names it (a rule is missing), or some do but did not fire on the
    recordings (their log source is not in them, or the behaviour differs)."""
    out = []
    for name, row in result.by_technique().items():
        if row["detected"] == row["tested"]:
            continue
        named = [r for r in rules if tags_match([f"attack.{name}"], r["tags"])]
        sources = sorted(
            {
                "/".join(
                    v
                    for v in (r["logsource"].get(k) for k in ("product", "category", "service"))
                    if v
                )
                for r in named
                if r.get("logsource")
            }
        )
        out.append(
            {
                "technique": name,
                "missed": row["tested"] - row["detected"],
                "tested": row["tested"],
                "rules": len(named),
                "why": (
                    f"no rule loaded names {name}: one is missing"
                    if not named
                    else f"{len(named)} rules name it but none fired on the recordings missed; "
                    f"they read {', '.join(sources[:6]) or 'any log'}: the recordings may lack "
                    "that log, or the behaviour differs"
                ),
            }
        )
    return out


def _one(client: httpx.Client, scenario: Scenario, data: Path, live_fire: bool) -> Outcome:
    outcome = Outcome(
        scenario.id,
        scenario.name,
        list(scenario.expect.techniques),
        list(scenario.expect.tactics),
    )
    if scenario.live and not live_fire:
        outcome.problem = "it fires commands (live fire): allow them with --live-fire"
        return outcome
    first: int | None = None
    last: int | None = None
    try:
        recorded = {n: records(data / s.replay) for n, s in enumerate(scenario.steps) if s.replay}
        # the recordings replayed together keep their timeline: the latest record is now
        stamps = [
            latest(recorded[n]) for n, s in enumerate(scenario.steps) if s.shift_time and s.replay
        ]
        newest = max((t for t in stamps if t is not None), default=None)
        began = time.time()
        for number, step in enumerate(scenario.steps):
            if step.fire is not None:
                outcome.fired.append(_fire(step.fire, step.timeout_s))
                continue
            lines = recorded[number]
            outcome.records += len(lines)
            sent = _send(client, shifted(lines, began, newest) if step.shift_time else lines)
            first = sent[0] if first is None else first
            last = sent[1] if sent[1] is not None else last
    except VigilError as exc:
        outcome.problem = str(exc)
        return outcome
    deadline = time.monotonic() + scenario.expect.within_s
    if scenario.live:
        # its events come through Vigil's listeners: the alerts on events since it began
        hits, found = _live_alerts(client, scenario, began, deadline, first, last)
    else:
        if first is None or last is None:
            outcome.problem = "Vigil took none of its records"
            return outcome
        _idle(client, deadline)
        found = _alerts(client, {"event_from": first, "event_to": last})
        hits = [a for a in found if matches(a.get("tags") or [], scenario)]
    outcome.rules = sorted({a["rule_title"] for a in hits})
    outcome.other_rules = sorted({a["rule_title"] for a in found} - set(outcome.rules))
    if hits:
        # from the send, or from the event when it came later (a tool's line is logged
        # as it happens, after the tool was started)
        outcome.time_to_detect_s = round(
            min(max(0.0, a["created"] - max(began, a.get("time") or began)) for a in hits), 3
        )
        outcome.detected = outcome.time_to_detect_s <= scenario.expect.within_s
        expect = scenario.expect
        if expect.incident or expect.contained:
            _incident(client, outcome, [a["id"] for a in hits], began, deadline, expect.contained)
    outcome.passed = (
        outcome.detected
        and (outcome.incident is not None or not scenario.expect.incident)
        and (outcome.contained or not scenario.expect.contained)
    )
    return outcome


def _fire(command: Sequence[str], timeout_s: float) -> dict[str, Any]:
    """Run a live-fire command (an argument list, no shell) in a process group of its own,
    stopped whole past `timeout_s` and when it ends (a tool's forked workers or daemon with
    it); what it did, for the report. A command that cannot run is the scenario's problem."""
    started = time.monotonic()
    shown = " ".join(command)[:500]
    try:
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise Invalid(f"cannot run {command[0]!r}: {exc}") from None
    stopped = False
    try:
        _, said = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stopped = True
        _stop_group(process)
        _, said = process.communicate()
    finally:
        _stop_group(process)
    if process.returncode in NOT_RUN:
        raise Invalid(f"{command[0]!r} could not run what it was given (exit {process.returncode})")
    lines = said.decode("utf-8", "replace").strip().splitlines()
    return {
        "command": shown,
        "exit": None if stopped else process.returncode,
        "seconds": round(time.monotonic() - started, 3),
        "stopped": stopped,
        "said": lines[-1][:300] if lines else "",
    }


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _live_alerts(
    client: httpx.Client,
    scenario: Scenario,
    began: float,
    deadline: float,
    first: int | None,
    last: int | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The alerts on events since the scenario began (time stamps of whole seconds: from the
    second before) and on the records it sent, as soon as one matches or the time is up."""
    since = began - 1.0
    while True:
        found = _alerts(client, {"since": since})
        if first is not None and last is not None:
            seen = {a["id"] for a in found}
            found += [
                a
                for a in _alerts(client, {"event_from": first, "event_to": last})
                if a["id"] not in seen
            ]
        found = [a for a in found if a["created"] >= began]  # not the scenario before's
        hits = [a for a in found if matches(a.get("tags") or [], scenario)]
        if hits or time.monotonic() >= deadline:
            return hits, found
        time.sleep(IDLE_POLL_S * 4)


def _incident(
    client: httpx.Client,
    outcome: Outcome,
    alerts: list[str],
    began: float,
    deadline: float,
    contained: bool,
) -> None:
    """The incident correlation put the alerts in, and whether a playbook contained it, as
    soon as they are so (or the scenario's time is up)."""
    while True:
        if outcome.incident is None:
            for alert in alerts[:20]:
                held = client.get(f"/api/v1/alerts/{alert}").json().get("incidents") or []
                if held:
                    outcome.incident = held[0]
                    break
        if outcome.incident is not None:
            found = client.get(f"/api/v1/incidents/{outcome.incident}").json()
            outcome.time_to_incident_s = round(max(0.0, found["created"] - began), 3)
            if found.get("contained_at") is not None:
                outcome.contained = True
                outcome.time_to_contain_s = round(max(0.0, found["contained_at"] - began), 3)
            if outcome.contained or not contained:
                return
        if time.monotonic() >= deadline:
            return
        time.sleep(IDLE_POLL_S * 4)


def _send(client: httpx.Client, lines: list[bytes]) -> tuple[int | None, int | None]:
    first: int | None = None
    last: int | None = None
    for at in range(0, len(lines), CHUNK):
        reply = client.post(
            "/api/v1/ingest",
            content=b"\n".join(lines[at : at + CHUNK]),
            headers={"Content-Type": "application/x-ndjson"},
        )
        if reply.status_code in (401, 403):  # no scenario can run: the run stops here
            raise NotAllowed(f"Vigil refused the token ({reply.status_code}): {reply.text[:200]}")
        if reply.status_code == 503:
            raise Unavailable(f"Vigil is not taking events now: {reply.text[:200]}")
        if reply.status_code != 202:
            raise Invalid(f"ingest refused ({reply.status_code}): {reply.text[:200]}")
        taken = reply.json()
        if taken.get("first_offset") is not None:
            first = taken["first_offset"] if first is None else first
            last = taken["last_offset"]
    return first, last


def _idle(client: httpx.Client, deadline: float) -> None:
    """Until Vigil has detected on everything it took (or the scenario's time is up)."""
    while time.monotonic() < deadline:
        health = client.get("/health").json()
        if health.get("backlog") == 0:
            return
        time.sleep(IDLE_POLL_S)


def _alerts(client: httpx.Client, query: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        page = client.get(
            "/api/v1/alerts", params={**query, "limit": PAGE, "offset": len(found)}
        ).json()
        found.extend(page)
        if len(page) < PAGE:
            return found


__all__ = ["NotAllowed", "Outcome", "Result", "gaps", "matches", "report_to", "run"]
