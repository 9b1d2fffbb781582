"""`vigil serve` assembled: the stores, the loaded rules and indicators, the pipeline, saved
hunts on their schedule, and the `Backend` the API serves."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from vigil.bus import LocalStream
from vigil.config import Settings
from vigil.correlate import Settings as CorrelateSettings
from vigil.correlate.entities import detection_entities
from vigil.correlate.stage import IncidentStage
from vigil.correlate.store import IncidentStore
from vigil.detect import Detection
from vigil.detect.ioc import IntelScan
from vigil.detect.sigma import LoadedRules, load_rules, starter_rules
from vigil.errors import (
    InputError,
    Overloaded,
    StorageFull,
    StorageUnavailable,
    TooLarge,
    VigilError,
    storage_problem,
)
from vigil.events.records import Alert, IncidentChange, RiskChange, alert_id
from vigil.hunt import HuntLimits
from vigil.ingest import Problem
from vigil.intel.store import IndicatorStore
from vigil.serve.metrics import pipeline_metrics
from vigil.serve.pipeline import (
    EVENT,
    JSON,
    Analyzer,
    BatchFigures,
    Detector,
    Pipeline,
    event_record,
)
from vigil.serve.stages import StageCollector, StageRunner
from vigil.serve.workers import WorkerPool
from vigil.store import migrate, state_engine
from vigil.store.alerts import AlertStore
from vigil.store.events import EventStore
from vigil.store.hunts import HuntStore
from vigil.store.stages import StageStateStore

log = logging.getLogger("vigil.serve")
RETRY_AFTER = 2.0  # seconds a refused sender waits before trying again
INTAKE_MEMORY_S = 30.0  # /health reports a refused ingest for this long
IMPORT_WAIT_S = 10.0  # an alert import waits this long for its incidents
ROOM = 4 << 20  # bytes free on the data folder's disk before ingest is tried again


def _has_room(folder: Path) -> bool:
    try:
        stat = os.statvfs(folder)
    except OSError:
        return True  # cannot tell: let the write say
    return stat.f_bavail * stat.f_frsize >= ROOM


def _storage_kind(problem: StorageUnavailable) -> str:
    return "storage full" if isinstance(problem, StorageFull) else "storage unavailable"


@dataclass(frozen=True, slots=True)
class IngestAck:
    """Events accepted: on disk (the intake log) before this is returned."""

    accepted: int
    first_offset: int | None
    last_offset: int | None


class Service:
    """Everything `vigil serve` runs, built from the settings; also the API's `Backend`."""

    def __init__(self, settings: Settings, *, loaded: LoadedRules | None = None) -> None:
        self.settings = settings
        folder = settings.data_dir
        folder.mkdir(parents=True, exist_ok=True)
        self.engine = state_engine(settings.database_url or folder)
        migrate(self.engine)
        self.alert_store = AlertStore(self.engine)
        self.hunts = HuntStore(self.engine)
        self.indicators_store = IndicatorStore(self.engine)
        self.events_folder = folder / "events"
        folders = [*([starter_rules()] if settings.starter_rules else []), *settings.rules]
        self.loaded = loaded if loaded is not None else load_rules(folders)
        self.registry = CollectorRegistry()
        self.metrics = pipeline_metrics(self.registry)
        self.stream = LocalStream(
            folder / "intake",
            fsync=settings.pipeline.fsync,
            segment_bytes=settings.pipeline.segment_bytes,
        )
        self.incident_store = IncidentStore(self.engine, evidence=folder / "evidence")
        correlate = settings.correlate
        self.incidents = IncidentStage(
            self.incident_store,
            CorrelateSettings(correlate.window_s, correlate.span_s, correlate.half_life_s),
        )
        # the streams between the stages (`vigil.serve.stages`): `events` is `self.stream`
        # (the intake log); alerts are kept as durably as events; incident and risk changes
        # are derived (the store has them), for whoever follows them
        segment = settings.pipeline.segment_bytes
        self.alerts_stream = LocalStream(
            folder / "alerts", fsync=settings.pipeline.fsync, segment_bytes=segment
        )
        self.incidents_stream = LocalStream(
            folder / "incidents", fsync=False, segment_bytes=segment
        )
        self.risk_stream = LocalStream(folder / "risk", fsync=False, segment_bytes=segment)
        self.incidents.listeners.append(self._publish_risk)
        self.incidents.change_listeners.append(self._publish_incidents)
        self.detector = Detector(
            self.loaded,
            self.alert_store,
            self.indicators_store if settings.indicators else None,
            rejects=folder / "rejects.jsonl",
            alerts_out=self.alerts_stream,
            kept=StageStateStore(self.engine),
        )
        self.correlating = StageRunner(
            "correlate", self.incidents, self.alerts_stream, set_aside=self.detector.set_aside
        )
        self.registry.register(StageCollector(self._stage_figures))
        stored = settings.pipeline.store_events
        self.pool: WorkerPool | None = None
        analyzer: Analyzer | None = None
        if settings.pipeline.workers:
            self.pool = WorkerPool(
                settings.pipeline.workers,
                self.loaded,
                events_folder=self.events_folder if stored else None,
                database_url=(
                    self.engine.url.render_as_string(hide_password=False)
                    if settings.indicators
                    else None
                ),
            )
            self.indicator_count = self.pool.indicators
        else:
            intel = IntelScan.load(self.indicators_store) if settings.indicators else None
            analyzer = Analyzer(
                self.loaded, EventStore(self.events_folder) if stored else None, intel
            )
            self.indicator_count = intel.matcher.count if intel else 0
        self.pipeline = Pipeline(
            self.stream,
            self.detector,
            analyzer,
            pool=self.pool,
            batch_max=settings.pipeline.batch_max,
            batch_wait=settings.pipeline.batch_wait_ms / 1000,
            on_batch=self._on_batch,
        )
        self._intake_lock = threading.Lock()
        self._reserved = 0  # events being written to the intake stream now
        self._intake_problem: StorageUnavailable | None = None  # why the last ingest failed
        self._intake_problem_at = 0.0
        self.latencies: list[tuple[float, float]] = []  # (when stored, received→stored)
        self.started = time.time()
        self._hunter = threading.Event()
        self._hunt_slots = threading.BoundedSemaphore(settings.hunt.concurrent)
        self.hunt_limits = HuntLimits(**settings.hunt.model_dump(exclude={"concurrent"}))
        self._hunt_thread: threading.Thread | None = None
        self.batch_listeners: list[Callable[[BatchFigures], None]] = []

    # --- running ---------------------------------------------------------------------------

    def start(self) -> None:
        self.pipeline.start()
        self.correlating.start()
        for path in self.settings.listeners.tail:
            thread = threading.Thread(
                target=self._tail, args=(Path(path),), name=f"vigil-tail-{path}", daemon=True
            )
            thread.start()
        self._hunt_thread = threading.Thread(
            target=self._hunt_loop, name="vigil-hunts", daemon=True
        )
        self._hunt_thread.start()

    def stop(self) -> None:
        self._hunter.set()
        self.pipeline.stop()
        self.correlating.stop()
        for stream in (self.stream, self.alerts_stream, self.incidents_stream, self.risk_stream):
            stream.close()

    def drain(self, timeout: float = 60.0) -> bool:
        """Run every stage until all published so far is processed (tests, tools)."""
        deadline = time.monotonic() + timeout
        done = self.pipeline.drain(timeout)
        return self.correlating.drain(max(0.0, deadline - time.monotonic())) and done

    def _stage_figures(self) -> dict[str, tuple[int, int]]:
        return {
            "detect": (self.pipeline.lag(), self.pipeline.totals["events"]),
            "correlate": (self.correlating.lag(), self.correlating.processed),
        }

    def _publish_risk(self, changes: list[RiskChange]) -> None:
        if changes:
            self.risk_stream.publish([change.to_bytes() for change in changes])

    def _publish_incidents(self, changes: list[IncidentChange]) -> None:
        if changes:
            self.incidents_stream.publish([change.to_bytes() for change in changes])

    def _on_batch(self, figures: BatchFigures, pipeline: Pipeline) -> None:
        self.metrics.lag.set(pipeline.lag())
        self.metrics.queue_depth.set(self.stream.end - self.stream.acked)
        self.metrics.events_rejected.labels(reason="parse").inc(figures.rejected)
        if figures.new_alerts:
            self.metrics.alerts.labels(kind="any", level="any").inc(figures.new_alerts)
        now = time.time()
        self.latencies.extend((now, latency) for latency in figures.latencies)
        del self.latencies[:-200_000]
        for listener in self.batch_listeners:
            listener(figures)

    def _tail(self, path: Path) -> None:
        """Follow a log file into the intake stream. Its read position is saved only after
        the lines are in the stream (on disk): a restart re-reads at most what was not."""
        from vigil.ingest.tail import FileTail
        from vigil.serve.pipeline import LINE

        states = self.settings.data_dir / "tails"
        states.mkdir(parents=True, exist_ok=True)
        name = "".join(c if c.isalnum() or c in "._-" else "_" for c in str(path))
        try:
            tail = FileTail(path, states / f"{name}.state")
        except InputError:
            log.exception("cannot tail %s", path)
            return
        with tail:
            while not self._hunter.is_set():
                batch = tail.read_batch(1000)
                if batch:
                    self.pipeline.publish(LINE, f"tail:{path.name}", [b.data for b in batch])
                    tail.commit()
                else:
                    self._hunter.wait(0.5)

    def _hunt_loop(self) -> None:
        while not self._hunter.wait(5.0):
            try:
                self.run_due_hunts()
            except Exception:  # the schedule itself (the state database) failed: next round
                log.exception("saved hunts could not be run")

    @contextlib.contextmanager
    def _hunt_slot(self, *, wait: bool) -> Iterator[None]:
        """One of the `hunt.concurrent` places for a running hunt: refused (Overloaded) when
        all are taken, unless the caller waits (saved hunts do; requests do not)."""
        if not self._hunt_slots.acquire(blocking=wait):
            raise Overloaded(
                f"{self.settings.hunt.concurrent} hunts are running; try again shortly",
                retry_after=RETRY_AFTER,
            )
        try:
            yield
        finally:
            self._hunt_slots.release()

    def run_due_hunts(self, now: float | None = None) -> int:
        """Run the saved hunts that are due, each on its own (one that fails records its
        error as its result, and runs again at its next turn); what they find becomes
        alerts. New alerts made."""
        at = time.time() if now is None else now
        made = 0
        for hunt in self.hunts.due(at):
            if self._hunter.is_set():
                break
            try:
                with self._hunt_slot(wait=True):
                    found = self._saved_hunt(hunt)
                made += self.alert_store.add(found)
                if found:  # into incidents like any other alert (ids fixed: once each)
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

    def _saved_hunt(self, hunt: dict[str, Any]) -> list[Alert]:
        if not hunt["sigma"]:
            return self._sql_alerts(hunt)
        found: list[Alert] = []
        for detection in self._retro(hunt["sigma"], None, None):
            offset = detection.record_id if isinstance(detection.record_id, int) else None
            entities = detection_entities(detection)
            found.append(
                Alert(alert_id(detection, str(offset)), detection, entities, offset=offset)
            )
        return found

    def _sql_alerts(self, hunt: dict[str, Any]) -> list[Alert]:
        from vigil.hunt import sql

        answer = sql(self.events_folder, hunt["query"], limit=1000, limits=self.hunt_limits)
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
                detected_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                details={"query": hunt["query"]},
            )
            identity = orjson.dumps(values, default=str, option=orjson.OPT_SORT_KEYS).decode()
            out.append(
                Alert(alert_id(detection, identity), detection, detection_entities(detection))
            )
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
            self.events_folder, loaded, since=start, limits=self.hunt_limits, cancel=cancel
        )

    def feed(self, paths: list[Path], on_progress: Callable[[int], None] | None = None) -> int:
        """Read log files (any format `vigil scan` reads) into the intake stream, each event
        with what its reader knew of it; waits while the pipeline is over its backlog limit.
        Returns the events sent."""
        from vigil.ingest import FileReport, discover, read_events

        sent = 0
        for source in discover(paths):
            report = FileReport(source.name)
            for batch in read_events(source, report):
                lines = [event_record(e) for e in batch]
                while self.pipeline.lag() + len(lines) > self.settings.pipeline.max_lag:
                    time.sleep(0.2)
                self.pipeline.publish(EVENT, f"file:{Path(source.name).name}", lines)
                sent += len(lines)
                if on_progress is not None:
                    on_progress(sent)
        return sent

    # --- Backend ---------------------------------------------------------------------------

    def check_intake(self, count: int = 1) -> None:
        """Raise what `ingest` would for `count` events before anything is read: Overloaded
        when the backlog is full, StorageFull while the data folder's disk has no room."""
        limit = self.settings.pipeline.max_lag
        with self._intake_lock:
            lag = self.pipeline.lag() + self._reserved
        if lag + count > limit:
            self.metrics.overloaded.inc()
            raise Overloaded(f"{lag:,} events waiting for detection", retry_after=RETRY_AFTER)
        problem = self._intake_problem
        if isinstance(problem, StorageFull) and not _has_room(self.settings.data_dir):
            raise problem

    def ingest(self, lines: Sequence[bytes | bytearray], *, source: str) -> IngestAck:
        count = len(lines)
        if not count:
            return IngestAck(0, None, None)
        limit = self.settings.pipeline.max_lag
        if count > limit:
            raise TooLarge(
                f"{count:,} events in one request; the backlog holds {limit:,}: send fewer"
            )
        with self._intake_lock:  # checked and taken at once: concurrent senders cannot overshoot
            lag = self.pipeline.lag() + self._reserved
            if lag + count > limit:
                self.metrics.overloaded.inc()
                raise Overloaded(f"{lag:,} events waiting for detection", retry_after=RETRY_AFTER)
            self._reserved += count
        try:
            first, last = self.pipeline.publish(JSON, source, lines)
        except Exception as exc:
            storage = storage_problem(exc)
            if storage is None:
                raise
            self._intake_problem, self._intake_problem_at = storage, time.monotonic()
            log.warning("ingest refused: %s", storage)
            raise storage from exc
        finally:
            with self._intake_lock:
                self._reserved -= count
        self._intake_problem = None
        self.metrics.events_in.labels(source=source.split(":", 1)[0]).inc(count)
        self.metrics.lag.set(self.pipeline.lag())
        return IngestAck(count, first, last)

    def set_aside(self, source: str, rejected: Sequence[tuple[Problem, bytes | bytearray]]) -> None:
        """Records refused at intake (too deep, ...) into the rejects file, with the reason."""
        now = time.time()
        self.detector.set_aside(
            [
                {"source": source, "received": now, "record": problem.record,
                 "reason": problem.reason, "raw": raw.decode("utf-8", "replace")}
                for problem, raw in rejected
            ]
        )  # fmt: skip
        self.metrics.events_rejected.labels(reason="intake").inc(len(rejected))

    def alerts(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        since: float | None = None,
        level: str | None = None,
        rule_id: str | None = None,
        kind: str | None = None,
    ) -> list[dict[str, Any]]:
        return self.alert_store.list(
            limit=limit, offset=offset, since=since, level=level, rule_id=rule_id, kind=kind
        )

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        return self.alert_store.get(alert_id)

    def hunt_sql(
        self, query: str, *, limit: int = 10_000, cancel: threading.Event | None = None
    ) -> dict[str, Any]:
        from vigil.hunt import sql

        with self._hunt_slot(wait=False):
            answer = sql(
                self.events_folder, query, limit=limit, limits=self.hunt_limits, cancel=cancel
            )
        return {
            "columns": answer.columns,
            "rows": [list(row) for row in answer.rows],
            "seconds": answer.seconds,
            "truncated": answer.truncated,
        }

    def hunt_sigma(
        self, rule: str, *, since: str | None = None, cancel: threading.Event | None = None
    ) -> dict[str, Any]:
        started = time.perf_counter()
        with self._hunt_slot(wait=False):
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

    def saved_hunts(self) -> list[dict[str, Any]]:
        return self.hunts.all()

    def save_hunt(
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

    def delete_hunt(self, name: str) -> bool:
        return self.hunts.delete(name)

    def rules(self) -> list[dict[str, Any]]:
        return [
            {
                "rule_id": r.rule_id,
                "title": r.title,
                "level": r.level,
                "status": r.status,
                "tags": list(r.tags),
                "path": r.path,
            }
            for r in self.loaded.plan.rules
        ]

    def indicators(self, value: str) -> list[dict[str, Any]]:
        return [
            {
                "type": i.type,
                "value": i.value,
                "score": round(i.score(), 1),
                "live": bool(i.live_sources()),
                "sightings": i.sightings,
                "sources": [s.source for s in i.sources],
            }
            for i in self.indicators_store.search(value)
        ]

    def intel_stats(self) -> dict[str, Any]:
        return self.indicators_store.stats()

    def import_alerts(
        self, name: str, data: bytes, kind: str, mapping: list[str] | None = None
    ) -> dict[str, Any]:
        """Alerts another tool raised (Wazuh, Suricata EVE, the AIT CSV, CSV or JSON lines
        with a `KEY=COLUMN` mapping): stored as alerts (ids fixed by the record: a file sent
        twice adds nothing) and grouped into incidents with Vigil's own."""
        from vigil.correlate import AIT_MAPPING, mapping_from_pairs, parse_alerts, to_alert

        fields = None
        if kind == "ait":
            kind, fields = "csv", AIT_MAPPING
        elif kind in ("csv", "json"):
            fields = mapping_from_pairs(mapping or [])
        alerts, report = parse_alerts(
            name, data, kind, fields, max_unpacked=self.settings.api.max_body_bytes
        )
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        records = [to_alert(a, name, stamp, now) for a in alerts]
        new = self.alert_store.add(records)
        incidents: list[str] = []
        fresh = [r.id for r in records]
        if fresh:
            known = self.incident_store.known_alerts(fresh)  # a file sent again joins nothing
            fresh = [i for i in fresh if i not in known]
            _, last = self.alerts_stream.publish([r.to_bytes() for r in records])
            # the caller is told which incidents they joined: wait for the correlate stage
            if self.correlating.alive:
                self.correlating.wait_for(last + 1, IMPORT_WAIT_S)
            else:
                self.correlating.drain(IMPORT_WAIT_S)
            incidents = self.incident_store.incidents_of(fresh) if fresh else []
        return {
            "accepted": len(alerts),
            "new_alerts": new,
            "rejected": report.rejected,
            "set_aside": report.set_aside[:20],
            "incidents": incidents,
        }

    def entities(self, *, limit: int = 50) -> list[dict[str, Any]]:
        now = time.time()
        risk = self.incidents.correlator.risk
        return [
            {**row, "risk_now": round(row["risk"] * risk.decay(max(0.0, now - row["as_of"])), 3)}
            for row in self.incident_store.entities(limit=limit)
        ]

    def health(self, *, detail: bool = False) -> dict[str, Any]:
        """ "ok", or "degraded" with what is wrong (a kind each; with `detail`, the reasons and
        the figures too)."""
        lag = self.pipeline.lag()
        pipeline = self.pipeline
        problems: list[tuple[str, str]] = []
        if pipeline._thread is None or not pipeline._thread.is_alive():
            problems.append(("detection stopped", "the detection stage is not running"))
        if lag >= self.settings.pipeline.max_lag:
            problems.append(("backlog full", f"{lag:,} events wait for detection"))
        intake = self._intake_problem
        if intake is not None and time.monotonic() - self._intake_problem_at < INTAKE_MEMORY_S:
            problems.append((_storage_kind(intake), f"ingest: {intake}"))
        if pipeline.storage is not None:
            problems.append((_storage_kind(pipeline.storage), f"detection: {pipeline.storage}"))
        elif pipeline.problem is not None:
            problems.append(("detection failing", pipeline.problem))
        correlating = self.correlating
        if not correlating.alive:
            problems.append(("correlation stopped", "the correlate stage is not running"))
        elif correlating.problem is not None:
            problems.append(("correlation failing", correlating.problem))
        out: dict[str, Any] = {
            "status": "degraded" if problems else "ok",
            "problems": sorted({kind for kind, _ in problems}),
        }
        if not detail:
            return out
        return {
            **out,
            "problems": [f"{kind}: {why}" for kind, why in problems],
            "events_processed": pipeline.totals["events"],
            "alerts": pipeline.totals["new_alerts"],
            "lag": lag,  # received, not yet detected on
            "backlog": self.stream.end - self.stream.acked,  # not yet detected on and stored
            "set_aside": pipeline.set_aside + correlating.records_set_aside,
            "stages": {
                "detect": {"lag": lag, "processed": pipeline.totals["events"]},
                "correlate": {"lag": correlating.lag(), "processed": correlating.processed},
            },
            "batch_failures": pipeline.failures,
            "rules": len(self.loaded.plan.rules),
            "indicators": self.indicator_count,
            "uptime_s": round(time.time() - self.started, 1),
            "alert_latency_ms": self.latency(self.settings.pipeline.latency_window_s),
        }

    def latency(self, window: float) -> dict[str, float | int]:
        """Percentiles of event→alert latency (received to alert stored) over the alerts of
        the last `window` seconds."""
        since = time.time() - window
        values = sorted(latency for when, latency in self.latencies if when >= since)
        if not values:
            return {"alerts": 0}

        def pick(q: float) -> float:
            return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1)

        return {"alerts": len(values), "p50": pick(0.50), "p99": pick(0.99), "max": pick(1.0)}
