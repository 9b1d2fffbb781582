"""The demo: a multi-stage intrusion at "Northwind" written by the team as real-format
records (Sysmon, Security and System events as evtx-rs JSON, Zeek JSON, CloudTrail), run
through Vigil's pipeline with its starter rules, so that anyone can watch alerts become one
incident.

The story, over about 37 minutes: jdoe opens a macro invoice from Outlook (initial access);
Word starts encoded PowerShell that downloads a stager from cdn-update-check.com and sets a
logon task (execution, command and control, persistence); the intruder looks around
(discovery), dumps LSASS with comsvcs.dll (credential access), passes jdoe's hash to the file
server FS01 and runs PsExec there (lateral movement), packs the finance share with a
password and copies it to MEGA with rclone (collection, exfiltration), then uses jdoe's AWS
key from the same address to make a key of its own, open a bucket to everyone and stop
CloudTrail. An administrator's `whoami /priv` elsewhere is the noise.

The records hold `${T+seconds:form}` place holders; `records(start)` fills them so that the
intrusion happens from `start` on.
"""

from __future__ import annotations

import re
import tempfile
import time
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from vigil.detect import tactics_of
from vigil.events import format_time

HOST = "ws-fin-07.northwind.local"  # the workstation the intrusion starts on

INTRUSION = "intrusion.jsonl"
DEMO_SECONDS = 8.0  # how long `vigil serve --demo` takes to tell the story
_PLACE = re.compile(rb'"?\$\{T\+(\d{1,6}):(iso|sysmon|epoch)\}"?')


def template() -> bytes:
    return resources.files("vigil.demo").joinpath(INTRUSION).read_bytes()


def duration() -> int:
    """Seconds from the first record to the last."""
    return max(int(m.group(1)) for m in _PLACE.finditer(template()))


def records(start: float, scale: float = 1.0) -> list[bytes]:
    """The intrusion's records (one JSON document each), its first one at `start`, the
    time between them multiplied by `scale` (a replay can tell the story faster)."""

    def fill(match: re.Match[bytes]) -> bytes:
        moment = start + int(match.group(1)) * scale
        form = match.group(2)
        quoted = match.group(0).startswith(b'"')
        if form == b"epoch":
            return f"{moment:.6f}".encode()  # a number in Zeek's JSON
        stamp = datetime.fromtimestamp(moment, tz=UTC)
        if form == b"iso":
            text = stamp.isoformat(timespec="microseconds").replace("+00:00", "Z")
        else:  # Sysmon's UtcTime
            text = stamp.strftime("%Y-%m-%d %H:%M:%S.") + f"{stamp.microsecond // 1000:03d}"
        return f'"{text}"'.encode() if quoted else text.encode()

    return [_PLACE.sub(fill, line) for line in template().splitlines() if line.strip()]


def schedule(start: float, scale: float = 1.0) -> list[tuple[float, bytes]]:
    """(when, record) for a replay in real time: each record at its own time stamp."""
    offsets = [
        int(m.group(1))
        for line in template().splitlines()
        if line.strip()
        for m in [_PLACE.search(line)]
        if m
    ]
    return [(start + o * scale, r) for o, r in zip(offsets, records(start, scale), strict=True)]


def replay(service: Any, seconds: float) -> str | None:
    """Tell the story to a running service in `seconds` of real time (each record sent when
    it happens, so MTTD is the pipeline's own delay); then wait until it is processed and
    return the id of the incident its first record became part of."""
    from vigil.serve.pipeline import JSON

    scale = seconds / max(1, duration())
    plan = schedule(time.time() + 1.0, scale)
    for moment, record in plan:
        pause = moment - time.time()
        if pause > 0:
            time.sleep(pause)
        service.events_out.publish(JSON, "demo", [record])
    deadline = time.time() + 60
    while service.events_out.lag() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # the batch in hand is finished and its incidents saved
    for incident in service.incident_store.ranked(limit=50):
        if f"host:{HOST}" in incident["entities"]:
            return str(incident["id"])
    return None


def incident_view(service: Any, incident: dict[str, Any]) -> dict[str, Any]:
    """An incident with its alerts (time, rule, level, tactics, host) in time order."""
    full = service.incident_store.get(incident["id"])
    alerts = [service.alert(alert_id) for alert_id in full["alert_ids"]]
    shown = []
    for alert in sorted((a for a in alerts if a), key=lambda a: a.get("time") or 0):
        shown.append(
            {
                "id": alert["id"],
                "time": format_time(alert.get("time")),
                "rule": alert["rule_title"],
                "level": alert["level"],
                "tactics": list(tactics_of(alert["tags"])),
                "host": alert.get("host"),
            }
        )
    return {
        **{k: full[k] for k in ("id", "level", "risk", "status", "entities", "tactics", "mttd_s")},
        "stages": full["tactics"],
        "alerts": shown,
        "merges": full["merges"],
        "runs": runs_of(service, full["alert_ids"]),
    }


def runs_of(service: Any, alert_ids: list[str]) -> list[dict[str, Any]]:
    """The playbook runs the incident's alerts started, with their steps."""
    responder = service.responder
    if responder is None:
        return []
    out = []
    for run in reversed(responder.runs(subjects=alert_ids)):
        detail = responder.run(run["id"])
        steps = [
            {k: s[k] for k in ("step", "action", "state", "inputs", "error")}
            for s in detail["steps"]
        ]
        out.append(
            {k: run[k] for k in ("id", "playbook", "state", "dry_run", "reason")} | {"steps": steps}
        )
    return out


def run(folder: Path | None = None, *, start: float | None = None) -> list[dict[str, Any]]:
    """Replay the intrusion into a fresh embedded Vigil (no server; its own data folder, a
    temporary one by default) and return the incidents it became, riskiest first."""
    from vigil.config import Settings
    from vigil.serve.pipeline import JSON
    from vigil.serve.service import Service

    with tempfile.TemporaryDirectory(prefix="vigil-demo-") as scratch:
        data = folder or Path(scratch) / "vigil-data"
        settings = Settings.model_validate(
            {
                "data_dir": data,
                "indicators": False,
                "pipeline": {"workers": 0},
                # the shipped playbooks answer in dry-run (the default): what they would do
                "respond": {"dry_run": True, "firewall": {"hosts": {HOST: []}}},
            }
        )
        service = Service(settings)
        try:
            began = time.time() - duration() if start is None else start
            service.events_out.publish(JSON, "demo", records(began))
            service.drain(120)
            if service.responder is not None:
                service.responder.start()
                service.responder.idle(60)
            return [incident_view(service, i) for i in service.incident_store.ranked(limit=20)]
        finally:
            service.stop()
