"""The embedded pipeline of `vigil serve`: intake → durable stream → detection → alerts and
the event store.

Intake (HTTP, syslog, tailed files) publishes each event to the `events` stream, which is on
disk when `publish` returns: only then is the sender acknowledged. One detection stage reads
the stream in micro-batches from its acknowledged position, parses, matches the Sigma rules
and the live indicators, feeds correlation, writes alerts (deterministic ids: a replayed
event cannot make a second alert) and stores the events (each offset once), and then
acknowledges the batch. After a crash it starts again from the last acknowledged position.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from vigil.bus import Stream
from vigil.correlate import from_detection
from vigil.detect import Detection
from vigil.detect.ioc import IntelScan
from vigil.detect.sigma import CorrelationEngine, Hit, LoadedRules
from vigil.events import Event
from vigil.ingest import FileReport
from vigil.ingest import live as live_events
from vigil.ingest.jsonlog import record_event
from vigil.ingest.shapes import Classifier
from vigil.scan import correlation_detection, detection_of
from vigil.store.alerts import AlertStore, alert_id
from vigil.store.events import EventStore, EventWriter

if TYPE_CHECKING:
    from vigil.correlate.stage import IncidentStage
    from vigil.intel.store import IndicatorStore
    from vigil.serve.workers import WorkerPool

log = logging.getLogger("vigil.pipeline")

# One intake record: kind (J: a JSON event, S: a syslog message, L: a line of a tailed file,
# E: an event already read from a log file, as `event_record` writes it), when it was
# received (epoch s), the source's name, then the event's own bytes.
_HEAD = struct.Struct("<cdB")
JSON, SYSLOG, LINE, EVENT = b"J", b"S", b"L", b"E"


def _now() -> str:
    """When a detection is made, as its `detected_at` says it (UTC, milliseconds)."""
    return datetime.now(tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_record(event: Event) -> bytes:
    """An event read from a file, with what its reader knew (dataset, logsource, time)."""
    return orjson.dumps(
        {
            "fields": event.fields,
            "dataset": event.dataset,
            "product": event.product,
            "service": event.service,
            "category": event.category,
            "time": event.time,
            "source": event.source,
            "record": event.record,
            "format": event.format,
        },
        default=str,
    )


def encode(kind: bytes, source: str, received: float, payload: bytes) -> bytes:
    name = source.encode("utf-8", "replace")[:255]
    return _HEAD.pack(kind, received, len(name)) + name + payload


def decode(record: bytes) -> tuple[bytes, float, str, bytes]:
    kind, received, size = _HEAD.unpack_from(record)
    start = _HEAD.size
    return (
        kind,
        received,
        record[start : start + size].decode("utf-8", "replace"),
        record[start + size :],
    )


@dataclass
class BatchFigures:
    events: int = 0
    rejected: int = 0
    alerts: int = 0
    new_alerts: int = 0
    latencies: list[float] = field(default_factory=list)  # received → alert stored, seconds


@dataclass
class Analysis:
    """What the per-event half of detection made of one micro-batch (picklable: a worker
    process sends it back)."""

    events: int = 0
    rejected: int = 0
    found: list[tuple[str, Detection, int | None]] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)  # for correlation rules, in event order
    received: dict[int, float] = field(default_factory=dict)  # offset → received, of `found`
    rejects: list[dict[str, Any]] = field(default_factory=list)
    held_from: int | None = None  # lowest offset the event store holds unwritten


class Analyzer:
    """The per-event half of detection: parse, match the Sigma rules and the indicators,
    store the events. Independent per micro-batch, so several can run side by side (one per
    worker process); what needs every batch in order (correlation, the alert store) is the
    `Detector`'s."""

    def __init__(
        self, loaded: LoadedRules, events: EventStore | None, intel: IntelScan | None = None
    ) -> None:
        self.loaded = loaded
        self.events = EventWriter(events) if events is not None else None
        self.intel = intel
        correlation = CorrelationEngine(loaded.plan.correlations)
        self.wanted = {i for i in range(len(loaded.plan.rules)) if correlation.wants(i)}
        self.classifier = Classifier()

    def analyze(self, records: Sequence[tuple[int, bytes]]) -> Analysis:
        out = Analysis()
        report = FileReport("stream", keep_raw=True)
        events: list[Event] = []
        offsets: list[int] = []
        received: dict[int, float] = {}
        for offset, record in records:
            try:
                kind, when, source, payload = decode(record)
            except struct.error:
                report.reject(offset, "damaged intake record")
                continue
            received[offset] = when
            event = self._event(kind, source, payload, offset, report)
            if event is not None:
                events.append(event)
                offsets.append(offset)
        out.events = len(events)
        detected_at = _now()
        plan = self.loaded.plan
        offset_of = {id(event): offset for event, offset in zip(events, offsets, strict=True)}
        for match in self.loaded.engine.match(events):
            event = match.event
            at = offset_of.get(id(event))
            if match.rule in self.wanted and event.time is not None:
                refs = ((event.source, event.record),)
                out.hits.append(Hit(event.time, ("rule", match.rule), match.rule_fields(), refs))
            if not plan.rules[match.rule].output:
                continue
            detection = detection_of(match, self.loaded, detected_at)
            out.found.append((alert_id(detection, str(at)), detection, at))
        if self.intel is not None and self.intel.matcher.count:
            for event, offset in zip(events, offsets, strict=True):
                for detection in self.intel.detections([event], detected_at):
                    identity = f"{offset}\0{next(iter(detection.matched_fields), '')}"
                    out.found.append((alert_id(detection, identity), detection, offset))
        out.received = {at: received[at] for _, _, at in out.found if at in received}
        if self.events is not None:
            self.events.check()
            if events:
                self.events.put(events, offsets)
            out.held_from = self.events.held_from
        out.rejected = len(report.rejects)
        out.rejects = list(report.set_aside)
        return out

    def flush(self) -> None:
        """Write what is handed to the event store."""
        if self.events is not None:
            self.events.flush()

    def reset(self) -> None:
        """Forget what is handed to the event store and not yet written (it is to be
        analyzed again)."""
        if self.events is not None:
            self.events.discard()

    def close(self) -> None:
        if self.events is not None:
            self.events.close()

    def _event(
        self, kind: bytes, source: str, payload: bytes, offset: int, report: FileReport
    ) -> Event | None:
        if kind == JSON:
            try:
                value = orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                report.reject(offset, f"invalid JSON: {exc}", raw=payload)
                return None
            event = record_event(self.classifier, value, offset, payload, report, format="http")
            if event is not None:
                event.source = source
            return event
        if kind == EVENT:
            try:
                data = orjson.loads(payload)
                service = data["service"]
                return Event(
                    fields=data["fields"],
                    source=data["source"] or source,
                    record=data["record"],
                    time=data["time"],
                    product=data["product"],
                    service=tuple(service) if isinstance(service, list) else service,
                    category=data["category"],
                    format=data["format"] or "",
                    dataset=data["dataset"],
                )
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                report.reject(offset, f"damaged event record: {exc}", raw=payload)
                return None
        if kind in (SYSLOG, LINE):
            made = live_events.line_events([(payload, offset)], report)
            if not made:
                return None
            made[0].source = source
            return made[0]
        report.reject(offset, f"unknown intake kind {kind!r}")
        return None


class Detector:
    """The in-order half of detection: correlation over the rule hits of every batch, the
    alerts (deterministic ids), indicator sightings, set-aside records, and the alerts into
    incidents."""

    def __init__(
        self,
        loaded: LoadedRules,
        alerts: AlertStore,
        indicators: IndicatorStore | None = None,
        rejects: Path | None = None,
        incidents: IncidentStage | None = None,
    ) -> None:
        self.alerts = alerts
        self.incidents = incidents
        self.indicators = indicators
        self.rejects = rejects
        self.correlation = CorrelationEngine(loaded.plan.correlations)

    def finish(self, analysis: Analysis) -> BatchFigures:
        figures = BatchFigures(events=analysis.events, rejected=analysis.rejected)
        found = list(analysis.found)
        if analysis.hits:
            detected_at = _now()
            for hit in analysis.hits:
                for fired in self.correlation.feed(hit):
                    if fired.spec.output:
                        found.append(self._correlated(correlation_detection(fired, detected_at)))
        if self.indicators is not None:
            sightings = [IntelScan.sighting(d) for _, d, _ in found if d.kind == "indicator"]
            if sightings:
                self.indicators.record_sightings(sightings)
        figures.alerts = len(found)
        figures.new_alerts = self.alerts.add(found)
        stored_at = time.time()
        if self.incidents is not None and found:
            self.incidents.feed([from_detection(i, d, stored_at) for i, d, _ in found])
        received = analysis.received
        for _, _, where in found:
            if where is not None and where in received:
                figures.latencies.append(stored_at - received[where])
        if analysis.rejects and self.rejects is not None:
            with self.rejects.open("ab") as out:
                for item in analysis.rejects:
                    out.write(orjson.dumps(item, default=str) + b"\n")
        return figures

    @staticmethod
    def _correlated(detection: Detection) -> tuple[str, Detection, int | None]:
        refs = orjson.dumps(detection.details.get("events", []), default=str).decode()
        return alert_id(detection, refs), detection, None


class Pipeline:
    """The intake stream and its detection stage, run in a thread.

    The per-event work (`Analyzer`) runs in this process, or, given a `WorkerPool`, in
    worker processes, several micro-batches at once; the results are finished (`Detector`)
    here, one batch at a time in stream order. The stream is acknowledged up to what is
    detected on and stored."""

    def __init__(
        self,
        stream: Stream,
        detector: Detector,
        analyzer: Analyzer | None = None,
        *,
        pool: WorkerPool | None = None,
        batch_max: int = 5000,
        batch_wait: float = 0.05,
        on_batch: Any = None,
    ) -> None:
        if (analyzer is None) == (pool is None):
            raise ValueError("a pipeline runs its analyzer in this process or a worker pool")
        self.stream = stream
        self.detector = detector
        self.analyzer = analyzer
        self.pool = pool
        self.batch_max = batch_max
        self.batch_wait = batch_wait
        self.on_batch = on_batch
        self.position = stream.acked  # everything below is detected on
        self._sent = self.position  # everything below is given to the analyzers
        self._in_flight: deque[tuple[int, int]] = deque()  # (worker, end of its batch)
        self._held: dict[int, int | None] = {}  # worker → lowest offset it holds unstored
        self.totals = {"events": 0, "rejected": 0, "alerts": 0, "new_alerts": 0, "batches": 0}
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._turn = threading.Lock()  # one batch at a time, whoever runs it

    # --- intake ----------------------------------------------------------------------------

    def lag(self) -> int:
        """Events received and not yet detected on."""
        return self.stream.end - self.position

    def publish(self, kind: bytes, source: str, payloads: Sequence[bytes]) -> tuple[int, int]:
        now = time.time()
        return self.stream.publish([encode(kind, source, now, p) for p in payloads])

    # --- the detection stage ---------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="vigil-detect", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.flush()
        if self.pool is not None:
            self.pool.stop()
        elif self.analyzer is not None:
            self.analyzer.close()

    def run_once(self, timeout: float = 0.0) -> int:
        """Finish one micro-batch (waiting up to `timeout` for data); records done."""
        with self._turn:
            if self.pool is None:
                records = self._fetch(timeout)
                if not records:
                    return 0
                assert self.analyzer is not None
                self._sent = records[-1][0] + 1
                return self._finish(0, self._sent, self.analyzer.analyze(records))
            return self._run_pool(timeout)

    def _fetch(self, timeout: float) -> list[tuple[int, bytes]]:
        records = self.stream.fetch(self._sent, self.batch_max, timeout)
        if records and len(records) < self.batch_max and self.batch_wait > 0:
            # let the batch fill a little: fewer, larger batches cost less per event
            deadline = time.monotonic() + self.batch_wait
            while len(records) < self.batch_max and time.monotonic() < deadline:
                more = self.stream.fetch(
                    records[-1][0] + 1, self.batch_max - len(records), deadline - time.monotonic()
                )
                if not more:
                    break
                records.extend(more)
        return records

    def _run_pool(self, timeout: float) -> int:
        """Keep every worker busy, then finish the oldest batch given out."""
        pool = self.pool
        assert pool is not None
        while len(self._in_flight) < pool.size:
            if self._in_flight:
                # workers are busy: give out only full batches, without waiting
                records = self.stream.fetch(self._sent, self.batch_max, 0)
                if len(records) < self.batch_max:
                    break
            else:
                records = self._fetch(timeout)
                if not records:
                    break
            worker = pool.submit(records)
            self._sent = records[-1][0] + 1
            self._in_flight.append((worker, self._sent))
        if not self._in_flight:
            return 0
        worker, upto = self._in_flight.popleft()
        return self._finish(worker, upto, pool.result(worker))

    def _finish(self, worker: int, upto: int, analysis: Analysis) -> int:
        figures = self.detector.finish(analysis)
        done = upto - self.position
        self.position = upto
        self._held[worker] = analysis.held_from
        self._acknowledge()
        for name in ("events", "rejected", "alerts", "new_alerts"):
            self.totals[name] += getattr(figures, name)
        self.totals["batches"] += 1
        if self.on_batch is not None:
            self.on_batch(figures, self)
        return done

    def _acknowledge(self) -> None:
        """Acknowledge the stream up to what is both detected on and stored: events held by
        an event store for a larger file are processed again after a crash (their alerts
        have fixed ids, and the store skips what it has, so nothing is made twice)."""
        held = [at for at in self._held.values() if at is not None]
        upto = min([self.position, *held])
        if upto > self.stream.acked:
            self.stream.ack(upto)

    def flush(self) -> None:
        """Finish what is given out, store what the event stores hold and acknowledge it
        (idle time, shutdown)."""
        with self._turn:
            if self.pool is None:
                if self.analyzer is not None:
                    self.analyzer.flush()
                    self._held[0] = None
            else:
                while self._in_flight:
                    worker, upto = self._in_flight.popleft()
                    self._finish(worker, upto, self.pool.result(worker))
                self.pool.flush()
                self._held = dict.fromkeys(self._held)
            self._acknowledge()

    def restart(self) -> None:
        """After a failure: start again from the last acknowledged position (what was given
        out is detected on again; alert ids and the event stores keep it from doubling)."""
        with self._turn:
            self._in_flight.clear()
            self._held.clear()
            if self.pool is not None:
                self.pool.restart()
            elif self.analyzer is not None:
                self.analyzer.reset()
            self.position = self._sent = self.stream.acked

    def drain(self, timeout: float = 60.0) -> bool:
        """Process until everything published so far is done and stored (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self.position < self.stream.end and time.monotonic() < deadline:
            self.run_once(0.05)
        self.flush()
        return self.position >= self.stream.end

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.run_once(0.25):
                    self.flush()  # idle: what is held gets stored
            except Exception:  # a bug must not stop 7x24 detection silently: log, count, retry
                self.failures += 1
                log.exception("detection batch failed (will retry from the acknowledged point)")
                self._stop.wait(1.0)
                try:
                    self.restart()
                except Exception:
                    log.exception("restarting the detection stage failed")
