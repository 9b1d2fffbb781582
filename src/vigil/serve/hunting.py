"""Hunting in `vigil serve`: SQL and Sigma hunts over the stored events within the hunt
limits and a fixed number of places (a request that finds them all taken is refused at
once), and saved hunts run on their schedule, each on its own, their findings alerts."""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from vigil.bus import Stream
from vigil.config import Settings
from vigil.detect.sigma import LoadedRules, load_rules
from vigil.errors import InputError, NotFound, Overloaded, VigilError
from vigil.events.entities import entities_in, entities_of
from vigil.events.records import Alert, Detection, alert_id, detected_now
from vigil.hunt import HuntLimits
from vigil.store.alerts import AlertStore
from vigil.store.hunts import HuntStore

log = logging.getLogger("vigil.serve")
NOTE_ROWS = 20  # the rows of a query's result its notebook entry keeps


class Hunting:
    def __init__(
        self,
        settings: Settings,
        events_folder: Path,
        hunts: HuntStore,
        alert_store: AlertStore,
        alerts_stream: Stream,
    ) -> None:
        self.settings = settings
        self.events_folder = events_folder
        self.hunts = hunts
        self.alert_store = alert_store
        self.alerts_stream = alerts_stream
        self.limits = HuntLimits(**settings.hunt.model_dump(exclude={"concurrent"}))
        self._slots = threading.BoundedSemaphore(settings.hunt.concurrent)
        self.stopping = threading.Event()

    @contextlib.contextmanager
    def slot(self, *, wait: bool) -> Iterator[None]:
        """One of the `hunt.concurrent` places for a running hunt: refused (Overloaded) when
        all are taken, unless the caller waits (saved hunts do; requests do not)."""
        if not self._slots.acquire(blocking=wait):
            raise Overloaded(
                f"{self.settings.hunt.concurrent} hunts are running; try again shortly",
            )
        try:
            yield
        finally:
            self._slots.release()

    # --- hunts asked for -------------------------------------------------------------------

    def sql(
        self, query: str, *, limit: int = 10_000, cancel: threading.Event | None = None
    ) -> dict[str, Any]:
        from vigil.hunt import sql

        with self.slot(wait=False):
            answer = sql(self.events_folder, query, limit=limit, limits=self.limits, cancel=cancel)
        return {
            "columns": answer.columns,
            "rows": [list(row) for row in answer.rows],
            "seconds": answer.seconds,
            "truncated": answer.truncated,
        }

    def sigma(
        self, rule: str, *, since: str | None = None, cancel: threading.Event | None = None
    ) -> dict[str, Any]:
        started = time.perf_counter()
        with self.slot(wait=False):
            found = self._retro(rule, since, cancel)
        detections: list[dict[str, Any]] = []
        room = self.settings.hunt.max_result_bytes
        for detection in found:
            item = detection.as_dict()
            room -= len(orjson.dumps(item, default=str, option=orjson.OPT_NON_STR_KEYS))
            if room < 0:
                break
            detections.append(item)
        return {
            "detections": detections,
            "seconds": round(time.perf_counter() - started, 3),
            "truncated": len(detections) < len(found),
        }

    # --- a saved hunt's notebook -------------------------------------------------------------

    def note(
        self,
        name: str,
        *,
        kind: str,
        text: str,
        author: str,
        since: str | None = None,
        cancel: threading.Event | None = None,
    ) -> dict[str, Any]:
        """Add to a saved hunt's notebook: a `note`, or a query (`sql`, or a `sigma` rule
        with `since`) run now as any hunt is and kept with what it found (columns, the first
        NOTE_ROWS rows, count, seconds, truncated) or with the error that stopped it. NotFound
        without the saved hunt; Overloaded when every hunt place is taken (nothing kept)."""
        if self.hunts.get(name) is None:
            raise NotFound(f"no saved hunt {name!r}")
        if kind not in ("sql", "sigma", "note"):
            raise InputError(f"a notebook entry is sql, sigma or note, not {kind!r}")
        if not text.strip():
            raise InputError("an empty notebook entry")
        result: dict[str, Any] | None = None
        if kind != "note":
            try:
                result = summary(
                    self.sql(text, cancel=cancel)
                    if kind == "sql"
                    else self.sigma(text, since=since or None, cancel=cancel)
                )
            except Overloaded:
                raise
            except InputError as exc:  # a bad query, refused, or stopped: kept as tried
                result = {"error": str(exc)}
        return self.hunts.add_note(name, kind=kind, text=text, author=author, result=result)

    # --- saved hunts -----------------------------------------------------------------------

    def save(
        self, name: str, *, query: str | None, sigma: str | None, every_seconds: int
    ) -> dict[str, Any]:
        """Keep a hunt to run on a schedule, once its SQL or Sigma rule is known to run
        (InputError naming what is wrong otherwise)."""
        from vigil.hunt import check_sql

        if (query is None) == (sigma is None):
            raise InputError("give exactly one of query and sigma")
        if query is not None:
            check_sql(self.events_folder, query)
        else:
            assert sigma is not None
            self._rule(sigma)
        return self.hunts.save(name, query=query, sigma=sigma, every=every_seconds)

    def run_due(self, now: float | None = None) -> int:
        """Run the saved hunts that are due, each on its own (one that fails records its
        error as its result, and runs again at its next turn); what they find becomes
        alerts, into incidents like any other. New alerts made."""
        at = time.time() if now is None else now
        made = 0
        for hunt in self.hunts.due(at):
            if self.stopping.is_set():
                break
            try:
                with self.slot(wait=True):
                    found = self._saved(hunt)
                made += self.alert_store.add(found)
                if found:  # ids fixed by the finding: once each however often it runs
                    raised = time.time()
                    self.alerts_stream.publish(
                        [replace(a, raised=raised).to_bytes() for a in found]
                    )
                result = f"{len(found)} findings"
            except Exception as exc:  # one broken hunt must not stop the others
                if not isinstance(exc, VigilError):
                    log.exception("saved hunt %s failed", hunt["name"])
                result = f"error: {exc}"[:2000]
            self.hunts.ran(hunt["name"], at, result)
        return made

    def loop(self) -> None:
        while not self.stopping.wait(5.0):
            try:
                self.run_due()
            except Exception:  # the schedule itself (the state database) failed: next round
                log.exception("saved hunts could not be run")

    def _saved(self, hunt: dict[str, Any]) -> list[Alert]:
        if not hunt["sigma"]:
            return self._sql_alerts(hunt)
        from vigil.hunt import sigma_found

        loaded = self._rule(hunt["sigma"])
        found: list[Alert] = []
        for detection, event in sigma_found(self.events_folder, loaded, since=None,
                                            limits=self.limits):  # fmt: skip
            offset = detection.record_id if isinstance(detection.record_id, int) else None
            entities = entities_of(event)
            found.append(
                Alert(alert_id(detection, str(offset)), detection, entities, offset=offset)
            )
        return found

    def _sql_alerts(self, hunt: dict[str, Any]) -> list[Alert]:
        from vigil.hunt import sql

        answer = sql(self.events_folder, hunt["query"], limit=1000, limits=self.limits)
        out: list[Alert] = []
        for row in answer.rows:
            values = dict(zip(answer.columns, row, strict=True))
            detection = Detection(
                kind="hunt",
                rule_id=f"hunt:{hunt['name']}",
                rule_title=f"Saved hunt {hunt['name']}",
                level="medium",
                status="stable",
                tags=("hunt",),
                time=None,
                timestamp=None,
                host=str(values.get("host_name") or values.get("host") or "") or None,
                source_file="hunt",
                record_id=None,
                matched_fields=values,
                event={},
                detected_at=detected_now(),
                details={"query": hunt["query"]},
            )
            identity = orjson.dumps(values, default=str, option=orjson.OPT_SORT_KEYS).decode()
            host = {"host.name": detection.host} if detection.host else {}
            out.append(Alert(alert_id(detection, identity), detection, entities_in(host)))
        return out

    def _rule(self, rule: str) -> LoadedRules:
        """One Sigma rule (YAML text) loaded; InputError when it cannot be used."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "rule.yml"
            path.write_text(rule, "utf-8")
            loaded = load_rules([path], use_cache=False)
        if not loaded.plan.rules:
            reason = loaded.plan.problems[0].reason if loaded.plan.problems else "no rule in it"
            raise InputError(f"the rule cannot be used: {reason}")
        return loaded

    def _retro(
        self, rule: str, since: str | None, cancel: threading.Event | None
    ) -> list[Detection]:
        from vigil.hunt import parse_since
        from vigil.hunt import sigma as retro_hunt

        loaded = self._rule(rule)
        start = parse_since(since) if since else None
        return retro_hunt(
            self.events_folder, loaded, since=start, limits=self.limits, cancel=cancel
        )


def summary(found: dict[str, Any]) -> dict[str, Any]:
    """What a notebook keeps of a hunt's answer (`Hunting.sql` or `Hunting.sigma`): its
    columns, its first NOTE_ROWS rows, how many rows, its seconds and whether it was cut
    off. A Sigma hunt's rows are its detections' time, rule, level, host and record."""
    if "detections" in found:
        columns = ["timestamp", "rule_title", "level", "host", "record_id"]
        rows = [[d.get(c) for c in columns] for d in found["detections"]]
    else:
        columns, rows = found["columns"], found["rows"]
    return {
        "columns": columns,
        "rows": rows[:NOTE_ROWS],
        "count": len(rows),
        "seconds": found["seconds"],
        "truncated": found["truncated"],
    }
