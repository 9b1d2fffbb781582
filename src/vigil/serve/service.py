"""`vigil serve` assembled: the stores, the loaded rules and indicators, the streams and the
stages on them, intake and hunting, and the `Backend` the API serves (thin: each call is
one of theirs)."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from prometheus_client import CollectorRegistry

from vigil.assets.graph import AccessGraph
from vigil.assets.importers import import_bytes
from vigil.assets.risk import Register, assess, incidents_by_asset
from vigil.assets.stage import AssetStage
from vigil.assets.store import AssetStore
from vigil.bus import LocalStream
from vigil.config import ROLES, Settings
from vigil.correlate.risk import EntityRisk
from vigil.correlate.stage import IncidentStage
from vigil.correlate.store import IncidentStore
from vigil.detect.ioc import IntelScan
from vigil.detect.sigma import LoadedRules, load_rules, starter_rules
from vigil.detect.workers import WorkerPool
from vigil.errors import NotFound, StorageFull, StorageUnavailable, Unavailable, VigilError
from vigil.events.records import detected_now
from vigil.ingest import Problem
from vigil.intel.store import IndicatorStore, StoredIndicator
from vigil.respond.audit import AuditLog
from vigil.respond.engine import Responder
from vigil.serve.backups import ScheduledBackup
from vigil.serve.hunting import Hunting
from vigil.serve.intake import EventsOut, IngestAck, Intake
from vigil.serve.metrics import pipeline_metrics
from vigil.serve.pipeline import Analyzer, BatchFigures, Detector, Pipeline, Rejects
from vigil.serve.stages import (
    DURABLE,
    FOLDERS,
    STAGES,
    STREAMS,
    ResponseCollector,
    StageCollector,
    StageRunner,
)
from vigil.serve.workers import analyzer_pool
from vigil.store import migrate, state_engine
from vigil.store.alerts import AlertStore
from vigil.store.events import EventStore
from vigil.store.exercises import FIGURES, ExerciseRuns
from vigil.store.hunts import HuntStore
from vigil.store.stages import StageStateStore
from vigil.zerotrust import inventory
from vigil.zerotrust.grants import Grants
from vigil.zerotrust.log import DecisionLog
from vigil.zerotrust.pdp import DecisionPoint, Knowledge
from vigil.zerotrust.policy import PolicySet
from vigil.zerotrust.policy import load as load_policies
from vigil.zerotrust.sessions import Sessions
from vigil.zerotrust.ssf import (
    DEVICE_COMPLIANCE_CHANGE,
    SESSION_REVOKED,
    Receiver,
    SigningKey,
    Transmitter,
)

if TYPE_CHECKING:
    from vigil.bus.jetstream import JetStreamBus
    from vigil.serve.partitions import PartitionedDetect, PartitionedEvents

log = logging.getLogger("vigil.serve")
IMPORT_WAIT_S = 10.0  # an alert import waits this long for its incidents
REGISTER_FRESH_S = 30.0  # the risk register is made again when this old
GRAPH_FRESH_S = 60.0  # a process without the assets stage loads the graph again this often
MANUAL = "manual"  # the source of the indicators analysts add by hand (each one's say)
INCIDENT_ALERTS = 200  # an incident's detail shows its first alerts, this many


def _storage_kind(problem: StorageUnavailable) -> str:
    return "storage full" if isinstance(problem, StorageFull) else "storage unavailable"


def _indicator(found: StoredIndicator) -> dict[str, Any]:
    """An indicator as the API and the console show it."""
    return {
        "type": found.type,
        "value": found.value,
        "score": round(found.score(), 1),
        "live": bool(found.live_sources()),
        "sightings": found.sightings,
        "sources": [s.source for s in found.sources],
        "created": found.created,
        "last_sighting": found.last_sighting,
    }


def _read_back(stream: Any) -> dict[str, Any]:
    """How the decision log reads its stream back (the latest decisions): by direct reads,
    which move no consumer."""
    if isinstance(stream, LocalStream):
        log = stream.log
        return {
            "read": lambda start, most: log.read(start, max_records=most),
            "bounds": lambda: (log.first, log.end),
        }
    return {"read": stream.get, "bounds": lambda: (0, stream.end)}


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
        self.events_folder = settings.events_dir or folder / "events"
        folders = [*([starter_rules()] if settings.starter_rules else []), *settings.rules]
        self.loaded = loaded if loaded is not None else load_rules(folders)
        self.registry = CollectorRegistry()
        self.metrics = pipeline_metrics(self.registry)
        self.incident_store = IncidentStore(self.engine, evidence=folder / "evidence")
        self.asset_store = AssetStore(self.engine)
        self.exercise_runs = ExerciseRuns(self.engine)
        self._register: tuple[float, tuple[Any, ...], Register] | None = None
        self._register_lock = threading.Lock()
        self._graph: tuple[float, AccessGraph] | None = None  # loaded here, and when
        # the streams between the stages, as the registry names them (`vigil.serve.stages`):
        # segment logs in the data folder, or NATS JetStream
        self.bus: JetStreamBus | None = None
        self.streams: dict[str, Any]
        if settings.bus.url:
            from vigil.bus.jetstream import JetStreamBus  # nats-py: only when distributed

            self.bus = JetStreamBus(
                settings.bus.url,
                prefix=settings.bus.prefix,
                max_bytes=settings.bus.max_bytes,
                max_age_s=settings.bus.max_age_s,
            )
            self.streams = {name: self.bus.stream(name) for name in STREAMS}
        else:
            self.streams = {
                name: LocalStream(
                    folder / FOLDERS.get(name, name),
                    fsync=settings.pipeline.fsync and name in DURABLE,
                    segment_bytes=settings.pipeline.segment_bytes,
                )
                for name in STREAMS
            }
        self.stream = self.streams["events"]  # the intake log
        self.alerts_stream = self.streams["alerts"]
        self.risk_stream = self.streams["risk"]
        # what this process runs: every stage (embedded, or `role = "all"`), or one role of
        # the distributed deployment
        self.roles = set(ROLES) - {"all"} if settings.role == "all" else {settings.role}
        stored = settings.pipeline.store_events
        # indicators matched in this process: by its analyzer, or its partitions' (a pool's
        # workers load their own)
        analyzes_here = (
            not settings.pipeline.workers if self.bus is None else "detect" in self.roles
        )
        self.intel = (
            IntelScan.load(self.indicators_store) if settings.indicators and analyzes_here else None
        )
        self.indicator_count = self.intel.matcher.count if self.intel else 0
        self.rejects = Rejects(folder / "rejects.jsonl")  # every writer's, one lock
        self.pool: WorkerPool | None = None
        self.pipeline: Pipeline | None = None  # the detect stage, embedded
        self.workers: PartitionedDetect | None = None  # this process's detect worker
        self.events_out: EventsOut
        self.partitioned: PartitionedEvents | None = None  # distributed: events_out
        if self.bus is None:
            analyzer: Analyzer | None = None
            if settings.pipeline.workers:
                self.pool = analyzer_pool(
                    settings.pipeline.workers,
                    self.loaded,
                    events_folder=self.events_folder if stored else None,
                    database_url=(
                        self.engine.url.render_as_string(hide_password=False)
                        if settings.indicators
                        else None
                    ),
                )
                self.indicator_count = int(self.pool.infos[0])
            else:
                analyzer = Analyzer(
                    self.loaded, EventStore(self.events_folder) if stored else None, self.intel
                )
            self.pipeline = self._pipeline(
                self.streams["events"], self._detector("detect"), analyzer
            )
            self.events_out = self.pipeline
        else:
            from vigil.serve.partitions import PartitionedDetect, PartitionedEvents

            self.partitioned = PartitionedEvents(
                self.streams["events"], partitions=settings.bus.partitions
            )
            self.events_out = self.partitioned
            if "detect" in self.roles:
                self.workers = PartitionedDetect(
                    self.bus,
                    self._partition_pipeline,
                    partitions=settings.bus.partitions,
                    lease_s=settings.bus.lease_s,
                    progress=self.alerts_stream,
                )
        # Zero Trust: the decision point, what it knows (live risk from the zerotrust stage),
        # and the decision log (the `decisions` stream, each batch anchored in the audit chain)
        self.knowledge = Knowledge()
        for (kind, value), risk, _ in self.incident_store.scores():
            self.knowledge.set_risk(kind, value, risk)
        audit = AuditLog(self.engine)
        decisions = self.streams["decisions"]
        self.decision_log = DecisionLog(
            decisions.publish,
            lambda batch: audit.append("vigil:zerotrust", "decisions.logged", "decisions", batch),
            **_read_back(decisions),
        )
        policies = (
            load_policies(list(settings.zerotrust.policies))
            if settings.zerotrust.policies
            else PolicySet()
        )
        self.grants = Grants(self.engine, policies, audit.append)
        self.pdp = DecisionPoint(
            policies, self.knowledge, log=self.decision_log.append, grants=self.grants.covering
        )

        receivers = [
            Receiver(
                r.id,
                r.audience,
                r.push_url,
                r.authorization.get_secret_value() if r.authorization else None,
                tuple(r.events) or (SESSION_REVOKED, DEVICE_COMPLIANCE_CHANGE),
            )
            for r in settings.zerotrust.receivers
        ]
        self.transmitter = Transmitter(
            self.engine,
            SigningKey.at(folder / "ssf-signing-key.pem"),
            settings.zerotrust.issuer,
            receivers,
        )
        self.sessions = Sessions(self.engine, self.pdp, self.transmitter, audit.append)
        self.knowledge.listeners.append(self._reevaluate)
        if "api" in self.roles:  # the processes that answer decisions: posture, tags
            inventory.load(self.knowledge, self.asset_store, self.announce_compliance)
        # response: the engine is here wherever runs are read, approved or undone (api); its
        # workers and stages run in the respond role
        self.responder: Responder | None = None
        if settings.respond.enabled:
            self.responder = Responder(
                self.engine,
                settings.respond,
                self.incident_store,
                assets=self.asset_store,
                graph=self.access_graph,
                publish=self.publisher("actions"),
                sessions=self.sessions,
            )
        # every stage after detection, each in its runner, a named durable consumer of the
        # stream it reads (so any number of stages may follow one stream)
        self.runners = {
            spec.name: StageRunner(
                spec.name,
                spec.build(self),
                self._reader(spec.consumes, spec.name),
                set_aside=self.rejects.add,
            )
            for spec in STAGES
            if spec.build is not None
            and spec.role in self.roles
            and (spec.role != "respond" or self.responder is not None)
        }
        self.correlating = self.runners.get("correlate")
        self.incidents = (
            cast(IncidentStage, self.correlating.stage) if self.correlating is not None else None
        )
        self.registry.register(StageCollector(self._stage_figures))
        if self.responder is not None:
            self.registry.register(ResponseCollector(self.responder.figures))
        self.intake = Intake(settings, self.events_out, self.metrics, self.rejects.add)
        self.hunting = Hunting(
            settings, self.events_folder, self.hunts, self.alert_store, self.alerts_stream
        )
        self.backups = (
            ScheduledBackup(settings, self.registry) if settings.backup.dest is not None else None
        )
        self.latencies: list[tuple[float, float]] = []  # (when stored, received→stored)
        self.started = time.time()
        self._threads: list[threading.Thread] = []
        self.batch_listeners: list[Callable[[BatchFigures], None]] = []

    def _detector(self, name: str) -> Detector:
        return Detector(
            self.loaded,
            self.alert_store,
            self.indicators_store if self.settings.indicators else None,
            rejects=self.rejects,
            alerts_out=self.alerts_stream,
            kept=StageStateStore(self.engine),
            name=name,
            relationships_out=self.streams["relationships"],
            flows_out=self.streams["flows"],
        )

    def _pipeline(
        self, stream: Any, detector: Detector, analyzer: Analyzer | None, *, wait: bool = True
    ) -> Pipeline:
        given = self.settings.pipeline
        return Pipeline(
            stream,
            detector,
            analyzer,
            pool=self.pool if analyzer is None else None,
            batch_max=given.batch_max,
            batch_wait=given.batch_wait_ms / 1000 if wait else 0.0,
            on_batch=self._on_batch,
        )

    def _partition_pipeline(self, partition: int, consumer: Any) -> Pipeline:
        """The detect stage on one partition: its own Sigma correlation windows and its own
        event-store writer (offsets are the one `events` stream's, so alert ids are those
        one process would give)."""
        stored = self.settings.pipeline.store_events
        events = (
            EventStore(self.events_folder / f"partition={partition}", name=f"p{partition}")
            if stored
            else None
        )
        analyzer = Analyzer(self.loaded, events, self.intel)
        # no wait for a batch to fill: the worker's other partitions are served meanwhile
        return self._pipeline(consumer, self._detector(f"detect-{partition}"), analyzer, wait=False)

    def _reader(self, stream: str, name: str) -> Any:
        """A stage's consumer of a stream; of `alerts` from partitioned detection, in the
        events' order (`InEventOrder`)."""
        consumer = self.streams[stream].consumer(name)
        if self.bus is not None and stream == "alerts":
            from vigil.serve.partitions import InEventOrder

            return InEventOrder(consumer, self.settings.bus.partitions)
        return consumer

    def totals(self) -> dict[str, int]:
        """Events detected on and alerts raised by this process."""
        pipelines = self._detect_pipelines()
        keys = ("events", "rejected", "alerts", "new_alerts", "batches")
        return {k: sum(p.totals[k] for p in pipelines) for k in keys}

    # --- running ---------------------------------------------------------------------------

    def start(self) -> None:
        # what start-up loaded (rules, indicators, the access graph, policies) lives as long as
        # the server: out of the collector's way, so its pauses stay short (decisions' p99)
        gc.freeze()
        if self.pipeline is not None:
            self.pipeline.start()
        if self.workers is not None:
            self.workers.start()
        for runner in self.runners.values():
            runner.start()
        if self.responder is not None and "respond" in self.roles:
            self.responder.start()
        self.decision_log.start()
        stopping = self.hunting.stopping
        self._threads = []
        if "intake" in self.roles:
            for path in self.settings.listeners.tail:
                self._threads.append(
                    threading.Thread(
                        target=self.intake.tail,
                        args=(Path(path), stopping),
                        name=f"vigil-tail-{path}",
                        daemon=True,
                    )
                )
        if "api" in self.roles:
            self._threads.append(
                threading.Thread(
                    target=self._inventory_loop, name="vigil-zt-inventory", daemon=True
                )
            )
        if "correlate" in self.roles:  # saved hunts: once in a deployment
            self._threads.append(
                threading.Thread(target=self.hunting.loop, name="vigil-hunts", daemon=True)
            )
        for thread in self._threads:
            thread.start()
        if self.backups is not None:
            self.backups.start()

    def stop(self) -> None:
        if self.backups is not None:
            self.backups.stop()
        self.hunting.stopping.set()
        if self.pipeline is not None:
            self.pipeline.stop()
        if self.workers is not None:
            self.workers.stop()
        for runner in self.runners.values():
            runner.stop()
        if self.responder is not None:
            self.responder.stop()
        self.decision_log.stop()
        self.transmitter.close()
        self.grants.close()
        for stream in self.streams.values():
            stream.close()
        if self.bus is not None:
            self.bus.close()

    def drain(self, timeout: float = 60.0) -> bool:
        """Run every stage this process runs until all published so far is processed
        (tests, tools)."""
        deadline = time.monotonic() + timeout
        done = True
        if self.pipeline is not None:
            done = self.pipeline.drain(timeout)
        if self.workers is not None:
            done = self.workers.drain(timeout) and done
        for runner in self.runners.values():  # in flow order: each feeds the next
            done = runner.drain(max(0.0, deadline - time.monotonic())) and done
        return done

    def _stage_figures(self) -> dict[str, tuple[int, int]]:
        figures = {"detect": (self.events_out.lag(), self.totals()["events"])}
        for name, runner in self.runners.items():
            figures[name] = (runner.lag(), runner.processed)
        return figures

    def _inventory_loop(self) -> None:
        """The inventory into what the decision point knows, every minute."""
        while not self.hunting.stopping.wait(60.0):
            try:
                inventory.load(self.knowledge, self.asset_store, self.announce_compliance)
            except Exception:
                log.exception("zero trust: reading the inventory failed; again in a minute")

    def announce_compliance(self, host: str, was: bool, now: bool) -> None:
        """A device's compliance changed: CAEP device-compliance-change to the receivers."""
        status = {True: "compliant", False: "not-compliant"}
        self.transmitter.emit(
            DEVICE_COMPLIANCE_CHANGE,
            {"format": "opaque", "id": host},
            {"previous_status": status[was], "current_status": status[now]},
        )

    def _reevaluate(self, kind: str, value: str) -> None:
        """What the decision point knows changed for a user or a host: its sessions are
        decided again at once."""
        if kind == "user":
            self.sessions.reevaluate(subject=value)
        elif kind == "host":
            self.sessions.reevaluate(device=value)

    def publisher(self, stream: str) -> Callable[[Sequence[Any]], None]:
        """Publish records (anything with `to_bytes`) to a stream by name (for stages)."""
        target = self.streams[stream]

        def publish(records: Sequence[Any]) -> None:
            if records:
                target.publish([record.to_bytes() for record in records])

        return publish

    def _on_batch(self, figures: BatchFigures, pipeline: Pipeline) -> None:
        self.metrics.lag.set(self.events_out.lag())
        self.metrics.queue_depth.set(self._backlog())
        self.metrics.events_rejected.labels(reason="parse").inc(figures.rejected)
        if figures.new_alerts:
            self.metrics.alerts.labels(kind="any", level="any").inc(figures.new_alerts)
        now = time.time()
        self.latencies.extend((now, latency) for latency in figures.latencies)
        del self.latencies[:-200_000]
        for listener in self.batch_listeners:
            listener(figures)

    # --- Backend ---------------------------------------------------------------------------

    def alerts(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        since: float | None = None,
        level: str | None = None,
        rule_id: str | None = None,
        kind: str | None = None,
        events: tuple[int, int] | None = None,
        host: str | None = None,
        user: str | None = None,
        ip: str | None = None,
        indicator: str | None = None,
        incident: str | None = None,
    ) -> list[dict[str, Any]]:
        return self.alert_store.list(
            limit=limit,
            offset=offset,
            since=since,
            level=level,
            rule_id=rule_id,
            kind=kind,
            events=events,
            host=host,
            user=user,
            ip=ip,
            indicator=indicator,
            incident=incident,
        )

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        found = self.alert_store.get(alert_id)
        if found is not None:  # what the inventory says of its host
            host = found.get("host")
            found["assets"] = self.asset_store.context([f"host:{host.lower()}"] if host else [])
        return found

    def incident(self, incident_id: str) -> dict[str, Any]:
        found = self.incident_store.get(incident_id)
        alert_ids = found["alert_ids"]
        layers = self._layers
        found["alerts_detail"] = [
            {**alert, "layer": layers.get(alert["rule_id"], alert["kind"])}
            for alert in self.alert_store.many(alert_ids[:INCIDENT_ALERTS])
        ]
        found["assets"] = self.asset_store.context(found["entities"])
        responder = self.responder
        found["runs"] = (
            [
                responder.run(run["id"])
                for run in responder.runs(subjects=[incident_id, *alert_ids[:1000]], limit=50)
            ]
            if responder is not None
            else []
        )
        return found

    @cached_property
    def _layers(self) -> dict[str, str]:
        """Each loaded rule's logsource (`windows / process_creation`): an alert's layer."""
        return {
            r.rule_id: " / ".join(
                part
                for part in (r.logsource.product, r.logsource.category, r.logsource.service)
                if part
            )
            for r in self.loaded.plan.rules
        }

    # intake
    def check_intake(self, count: int = 1) -> None:
        self._takes_events()
        self.intake.check(count)

    def ingest(self, lines: Sequence[bytes | bytearray], *, source: str) -> IngestAck:
        self._takes_events()
        return self.intake.ingest(lines, source=source)

    def _takes_events(self) -> None:
        if "intake" not in self.roles:
            raise Unavailable(
                f"this process does not take events (role {self.settings.role}): send them "
                "to a process of role intake or all",
                retry_after=60,
            )

    def set_aside(self, source: str, rejected: Sequence[tuple[Problem, bytes | bytearray]]) -> None:
        self.intake.set_aside(source, rejected)

    def feed(self, paths: list[Path], on_progress: Callable[[int], None] | None = None) -> int:
        return self.intake.feed(paths, on_progress)

    # hunting
    def hunt_sql(
        self, query: str, *, limit: int = 10_000, cancel: threading.Event | None = None
    ) -> dict[str, Any]:
        return self.hunting.sql(query, limit=limit, cancel=cancel)

    def hunt_sigma(
        self, rule: str, *, since: str | None = None, cancel: threading.Event | None = None
    ) -> dict[str, Any]:
        return self.hunting.sigma(rule, since=since, cancel=cancel)

    def saved_hunts(self) -> list[dict[str, Any]]:
        return self.hunts.all()

    def save_hunt(
        self, name: str, *, query: str | None, sigma: str | None, every_seconds: int
    ) -> dict[str, Any]:
        return self.hunting.save(name, query=query, sigma=sigma, every_seconds=every_seconds)

    def delete_hunt(self, name: str) -> bool:
        return self.hunts.delete(name)

    def run_due_hunts(self, now: float | None = None) -> int:
        return self.hunting.run_due(now)

    def hunt_notebook(self, name: str, *, limit: int = 1000) -> dict[str, Any]:
        found = self.hunts.get(name)
        if found is None:
            raise NotFound(f"no saved hunt {name!r}")
        return {**found, "notebook": self.hunts.notebook(name, limit=limit)}

    def add_hunt_note(
        self,
        name: str,
        *,
        kind: str,
        text: str,
        author: str,
        since: str | None = None,
        cancel: threading.Event | None = None,
    ) -> dict[str, Any]:
        return self.hunting.note(
            name, kind=kind, text=text, author=author, since=since, cancel=cancel
        )

    # stores
    def rules(self) -> list[dict[str, Any]]:
        return [
            {
                "rule_id": r.rule_id,
                "title": r.title,
                "level": r.level,
                "status": r.status,
                "tags": list(r.tags),
                "path": r.path,
                "logsource": {
                    "product": r.logsource.product,
                    "category": r.logsource.category,
                    "service": r.logsource.service,
                },
            }
            for r in self.loaded.plan.rules
        ]

    def indicators(self, value: str) -> list[dict[str, Any]]:
        return [_indicator(i) for i in self.indicators_store.search(value)]

    def recent_indicators(self, *, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        """The indicators most recently added first, as `indicators` gives them."""
        return [_indicator(i) for i in self.indicators_store.recent(limit=limit, offset=offset)]

    def sightings(self, *, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        """Indicators seen in events, the latest sighting first."""
        rows = self.indicators_store.recent_sightings(limit=limit, offset=offset)
        return [{k: v for k, v in row.items() if k != "key"} for row in rows]  # type, value

    def intel_stats(self) -> dict[str, Any]:
        return self.indicators_store.stats()

    def add_indicator(
        self,
        type: str,
        value: str,
        *,
        author: str,
        confidence: int | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        from vigil.errors import InputError
        from vigil.intel.model import Indicator, IndicatorValueError, canonical
        from vigil.intel.store import indicator_key

        try:
            kind, canon = canonical(type, value)
        except IndicatorValueError as exc:
            raise InputError(f"not an indicator of type {type}: {exc}") from None
        said = Indicator(
            kind, canon, MANUAL, confidence, reference=author[:512], description=description
        )
        self.indicators_store.add([said])
        key = indicator_key(kind, canon)
        return _indicator(self.indicators_store.get([key])[key])

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
        records = [to_alert(a, name, detected_now(), now) for a in alerts]
        new = self.alert_store.add(records)
        incidents: list[str] = []
        fresh = [r.id for r in records]
        if fresh:
            known = self.incident_store.known_alerts(fresh)  # a file sent again joins nothing
            fresh = [i for i in fresh if i not in known]
            _, last = self.alerts_stream.publish([r.to_bytes() for r in records])
            # the caller is told which incidents they joined: wait for the correlate stage
            correlating = self.correlating
            if correlating is None or self.bus is not None:  # another process's, or
                incidents = self._incidents_of(fresh, IMPORT_WAIT_S)  # read in event order
            else:
                if correlating.alive:
                    correlating.wait_for(last + 1, IMPORT_WAIT_S)
                else:
                    correlating.drain(IMPORT_WAIT_S)
                incidents = self.incident_store.incidents_of(fresh) if fresh else []
        return {
            "accepted": len(alerts),
            "new_alerts": new,
            "rejected": report.rejected,
            "set_aside": report.set_aside[:20],
            "incidents": incidents,
        }

    def _incidents_of(self, alerts: list[str], timeout: float) -> list[str]:
        """The incidents these alerts joined, once every one has (or `timeout` passed)."""
        deadline = time.monotonic() + timeout
        while alerts and time.monotonic() < deadline:
            if len(self.incident_store.known_alerts(alerts)) == len(alerts):
                break
            time.sleep(0.05)
        return self.incident_store.incidents_of(alerts) if alerts else []

    def entities(self, *, limit: int = 50) -> list[dict[str, Any]]:
        now = time.time()
        risk = EntityRisk(self.settings.correlate.half_life_s)
        return [
            {**row, "risk_now": round(row["risk"] * risk.decay(max(0.0, now - row["as_of"])), 3)}
            for row in self.incident_store.entities(limit=limit)
        ]

    def _detect_pipelines(self) -> list[Pipeline]:
        pipelines = [self.pipeline] if self.pipeline is not None else []
        if self.workers is not None:
            pipelines += list(self.workers.pipelines.values())
        return pipelines

    def _backlog(self) -> int:
        """Events not yet detected on and stored (the whole deployment's, distributed)."""
        if self.pipeline is not None:
            stream = self.pipeline.stream
            return stream.end - stream.acked
        assert self.partitioned is not None
        return self.partitioned.backlog()

    # assets
    def access_graph(self) -> AccessGraph:
        """The access graph: the assets stage's, when this process runs it; else loaded
        from the state database (again when a minute old)."""
        runner = self.runners.get("assets")
        if runner is not None and isinstance(runner.stage, AssetStage):
            return runner.stage.graph
        now = time.monotonic()
        if self._graph is None or now - self._graph[0] > GRAPH_FRESH_S:
            self._graph = (now, AccessGraph.from_store(self.engine))
        return self._graph[1]

    def attack_paths(
        self,
        starts: Sequence[str] | None = None,
        ends: Sequence[str] | None = None,
        *,
        per_target: int = 5,
    ) -> dict[str, Any]:
        """Attack paths from `starts` (default: the internet-exposed assets) to `ends`
        (default: the crown jewels), shortest first, and the choke points they share."""
        from vigil.assets.graph import summary

        store = self.asset_store
        froms = list(starts or store.ids_where("internet_exposed"))
        tos = list(ends or store.ids_where("crown_jewel"))
        found = self.access_graph().attack_paths(froms, tos, per_target=per_target)
        return {
            "from": froms,
            "to": tos,
            "paths": [summary(p) for p in found],
            "choke_points": AccessGraph.choke_points(found),
        }

    def blast_radius(self, node: str, *, depth: int | None = None) -> dict[str, Any]:
        """Every node an attacker holding `node` can reach (within `depth` moves), by id →
        moves away; NotFound when no relationship of it is known."""
        graph = self.access_graph()
        if node not in graph.index:
            raise NotFound(f"no relationship of {node!r} is known")
        reach = graph.blast_radius(node, depth=depth)
        return {"node": node, "reaches": len(reach), "moves": reach}

    def import_assets(self, data: bytes, name: str, format: str | None = None) -> dict[str, Any]:
        """A scan, inventory or IAM export into the inventory now, and onto the
        `relationships` stream, so the assets stage (here or in another process) has its
        relationships in the access graph and retires what the source no longer says."""
        inventory = import_bytes(data, name, format)
        counts = self.asset_store.merge(inventory)
        # even with no edge: the stage retires what the source no longer says
        _, last = self.streams["relationships"].publish([inventory.to_bytes()])
        runner = self.runners.get("assets")
        if runner is not None and runner.alive:
            runner.wait_for(last + 1, IMPORT_WAIT_S)
        elif runner is not None:
            runner.drain(IMPORT_WAIT_S)
        report = inventory.report
        return {
            "format": report.format,
            "nodes": len(inventory.nodes),
            "edges": len(inventory.edges),
            **counts,
            "set_aside": report.records_rejected,
            "reasons": [{"record": p.record, "reason": p.reason} for p in report.rejects[:20]],
        }

    def segments(self) -> dict[str, Any]:
        """The segment policy in force (its segments and allowed flows, read from the file
        the settings name), and what the segments stage made of the flows when this process
        runs it."""
        import yaml

        from vigil.zerotrust.segments import FlowPolicy
        from vigil.zerotrust.stage import SegmentStage

        path = self.settings.zerotrust.segments
        runner = self.runners.get("segments")
        stage = (
            runner.stage.figures() if runner and isinstance(runner.stage, SegmentStage) else None
        )
        out: dict[str, Any] = {"path": None if path is None else str(path), "stage": stage}
        if path is None:
            return {**out, "segments": [], "flows": [], "problem": "no segment policy in force"}
        try:
            policy = FlowPolicy.from_yaml(path.read_text(encoding="utf-8"), str(path))
        except (OSError, UnicodeDecodeError, VigilError) as exc:
            return {**out, "segments": [], "flows": [], "problem": f"{path}: {exc}"}
        return {**out, **yaml.safe_load(policy.to_yaml()), "problem": None}

    def attack_coverage(self, *, everything: bool = False) -> dict[str, Any]:
        """The ATT&CK matrix of the loaded rules and the latest exercise reported
        (`vigil.intel.matrix`); `exercise`: that run's figures and gaps, None before any."""
        from vigil.intel.matrix import gaps, matrix

        latest = self.exercise_runs.latest()
        results = latest["results"] if latest is not None else {}
        found = matrix(self.loaded.plan.rules, results.get("by_technique"), everything=everything)
        found["exercise"] = None
        if latest is not None:
            found["exercise"] = {
                **{k: latest[k] for k in ("id", "at", "name")},
                **{k: results.get(k) for k in FIGURES},
                "gaps": gaps(results.get("gaps") or ()),
            }
        return found

    def risk_register(self) -> Register:
        """Every asset ranked with its reasons, and the roadmap (`vigil.assets.risk`). It
        reads the whole inventory and every open incident (most of a second with 10,000 of
        them), so it is made again only when one of them changed (`_register_version`) or
        when `REGISTER_FRESH_S` old, by one caller at a time."""
        with self._register_lock:
            now, version = time.monotonic(), self._register_version()
            kept = self._register
            if kept is None or kept[1] != version or now - kept[0] > REGISTER_FRESH_S:
                kept = self._register = (now, version, self._assess())
            return kept[2]

    def _register_version(self) -> tuple[Any, ...]:
        """What the register is made from, in a few figures: changed when it changes."""
        from sqlalchemy import func, select

        from vigil.store.tables import asset_edge_table, asset_node_table, incident_table

        queries = [
            select(func.count(), func.max(table.c[stamp]))
            for table, stamp in (
                (asset_node_table, "last_seen"),
                (asset_edge_table, "last_seen"),
                (incident_table, "updated"),
            )
        ]
        with self.engine.connect() as conn:
            figures = tuple(tuple(conn.execute(query).one()) for query in queries)
        return (*figures, len(self.loaded.plan.rules))

    def _assess(self) -> Register:
        from vigil.intel.attack import rule_techniques

        opened = self.incident_store.open_entities(limit=100_000)
        incidents = incidents_by_asset(self.asset_store, opened)
        covered = set(rule_techniques(self.loaded.plan.rules))
        return assess(self.asset_store, covered=covered, incidents=incidents)

    def health(self, *, detail: bool = False) -> dict[str, Any]:
        """ "ok", or "degraded" with what is wrong (a kind each; with `detail`, the reasons and
        the figures too). Distributed, of this process's roles; the lag and backlog are the
        deployment's."""
        lag = self.events_out.lag()
        pipelines = self._detect_pipelines()
        problems: list[tuple[str, str]] = []
        if self.pipeline is not None and not self.pipeline.alive:
            problems.append(("detection stopped", "the detection stage is not running"))
        if self.workers is not None:
            if not self.workers.alive:
                problems.append(("detection stopped", "this detect worker is not running"))
            elif self.workers.problem is not None:
                problems.append(("detection failing", self.workers.problem))
        if lag >= self.settings.pipeline.max_lag:
            problems.append(("backlog full", f"{lag:,} events wait for detection"))
        intake = self.intake.problem
        if intake is not None:
            problems.append((_storage_kind(intake), f"ingest: {intake}"))
        for pipeline in pipelines:
            if pipeline.storage is not None:
                problems.append((_storage_kind(pipeline.storage), f"detection: {pipeline.storage}"))
            elif pipeline.problem is not None:
                problems.append(("detection failing", pipeline.problem))
        correlating = self.correlating
        if correlating is not None and not correlating.alive:
            problems.append(("correlation stopped", "the correlate stage is not running"))
        elif correlating is not None and correlating.problem is not None:
            problems.append(("correlation failing", correlating.problem))
        backups = self.backups
        last_backup = backups.last if backups is not None else None
        if backups is not None and last_backup is not None and not last_backup["ok"]:
            problems.append(("backup failing", f"into {backups.dest}: {last_backup['error']}"))
        out: dict[str, Any] = {
            "status": "degraded" if problems else "ok",
            "problems": sorted({kind for kind, _ in problems}),
        }
        if not detail:
            return out
        totals = self.totals()
        stages = {
            name: {"lag": behind, "processed": done}
            for name, (behind, done) in self._stage_figures().items()
        }
        detail_out = {
            **out,
            "problems": [f"{kind}: {why}" for kind, why in problems],
            "role": self.settings.role,
            "events_processed": totals["events"],
            "alerts": totals["new_alerts"],
            "lag": lag,  # received, not yet detected on
            "backlog": self._backlog(),  # not yet detected on and stored
            "set_aside": sum(p.set_aside for p in pipelines)
            + sum(r.records_set_aside for r in self.runners.values()),
            "stages": stages,
            "batch_failures": sum(p.failures for p in pipelines),
            "rules": len(self.loaded.plan.rules),
            "indicators": self.indicator_count,
            "uptime_s": round(time.time() - self.started, 1),
            "alert_latency_ms": self.latency(self.settings.pipeline.latency_window_s),
            "backup": last_backup if backups is not None else "off",
        }
        if self.workers is not None:
            detail_out["partitions"] = sorted(self.workers.owned)
        return detail_out

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


__all__ = ["IngestAck", "Service"]
