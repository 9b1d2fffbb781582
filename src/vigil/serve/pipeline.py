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
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from vigil.bus import Stream
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
from vigil.store.events import EventStore

log = logging.getLogger("vigil.pipeline")

# One intake record: kind (J: a JSON event, S: a syslog message, L: a line of a tailed file,
# E: an event already read from a log file, as `event_record` writes it), when it was
# received (epoch s), the source's name, then the event's own bytes.
_HEAD = struct.Struct("<cdB")
JSON, SYSLOG, LINE, EVENT = b"J", b"S", b"L", b"E"


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


class Detector:
    """The detection stage: one micro-batch of intake records at a time."""

    def __init__(
        self,
        loaded: LoadedRules,
        alerts: AlertStore,
        events: EventStore | None,
        intel: IntelScan | None = None,
        rejects: Path | None = None,
    ) -> None:
        self.loaded = loaded
        self.alerts = alerts
        self.events = events
        self.intel = intel
        self.rejects = rejects
        plan = loaded.plan
        self.correlation = CorrelationEngine(plan.correlations)
        self.wanted = {i for i in range(len(plan.rules)) if self.correlation.wants(i)}
        self.classifier = Classifier()

    def process(self, records: Sequence[tuple[int, bytes]]) -> BatchFigures:
        figures = BatchFigures()
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
        figures.events = len(events)
        figures.rejected = len(report.rejects)
        detected_at = datetime.now(tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        found: list[tuple[str, Detection, int | None]] = []
        plan = self.loaded.plan
        offset_of = {id(event): offset for event, offset in zip(events, offsets, strict=True)}
        for match in self.loaded.engine.match(events):
            event = match.event
            at = offset_of.get(id(event))
            if match.rule in self.wanted and event.time is not None:
                refs = ((event.source, event.record),)
                hit = Hit(event.time, ("rule", match.rule), match.rule_fields(), refs)
                for fired in self.correlation.feed(hit):
                    if fired.spec.output:
                        found.append(self._correlated(correlation_detection(fired, detected_at)))
            if not plan.rules[match.rule].output:
                continue
            detection = detection_of(match, self.loaded, detected_at)
            found.append((alert_id(detection, str(at)), detection, at))
        if self.intel is not None and self.intel.matcher.count:
            for event, offset in zip(events, offsets, strict=True):
                for detection in self.intel.detections([event], detected_at):
                    identity = f"{offset}\0{next(iter(detection.matched_fields), '')}"
                    found.append((alert_id(detection, identity), detection, offset))
            sightings = [self.intel.sighting(d) for _, d, _ in found if d.kind == "indicator"]
            if sightings:
                self.intel.store.record_sightings(sightings)
        figures.alerts = len(found)
        figures.new_alerts = self.alerts.add(found)
        stored_at = time.time()
        for _, _, where in found:
            if where is not None and where in received:
                figures.latencies.append(stored_at - received[where])
        if self.events is not None and events:
            self.events.buffer(events, offsets, ingested=stored_at)
        if report.rejects and self.rejects is not None:
            with self.rejects.open("ab") as out:
                for item in report.set_aside:
                    out.write(orjson.dumps(item, default=str) + b"\n")
        return figures

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

    @staticmethod
    def _correlated(detection: Detection) -> tuple[str, Detection, int | None]:
        refs = orjson.dumps(detection.details.get("events", []), default=str).decode()
        return alert_id(detection, refs), detection, None


class Pipeline:
    """The intake stream and its detection stage, run in a thread."""

    def __init__(
        self,
        stream: Stream,
        detector: Detector,
        *,
        batch_max: int = 5000,
        batch_wait: float = 0.05,
        on_batch: Any = None,
    ) -> None:
        self.stream = stream
        self.detector = detector
        self.batch_max = batch_max
        self.batch_wait = batch_wait
        self.on_batch = on_batch
        self.position = stream.acked
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

    def run_once(self, timeout: float = 0.0) -> int:
        """Process one micro-batch (waiting up to `timeout` for data); events processed."""
        with self._turn:
            return self._run_once(timeout)

    def _run_once(self, timeout: float) -> int:
        records = self.stream.fetch(self.position, self.batch_max, timeout)
        if not records:
            return 0
        if len(records) < self.batch_max and self.batch_wait > 0:
            # let the batch fill a little: fewer, larger batches cost less per event
            deadline = time.monotonic() + self.batch_wait
            while len(records) < self.batch_max and time.monotonic() < deadline:
                more = self.stream.fetch(
                    records[-1][0] + 1, self.batch_max - len(records), deadline - time.monotonic()
                )
                if not more:
                    break
                records.extend(more)
        figures = self.detector.process(records)
        upto = records[-1][0] + 1
        self.position = upto
        self._acknowledge()
        for name in ("events", "rejected", "alerts", "new_alerts"):
            self.totals[name] += getattr(figures, name)
        self.totals["batches"] += 1
        if self.on_batch is not None:
            self.on_batch(figures, self)
        return len(records)

    def _acknowledge(self) -> None:
        """Acknowledge the stream up to what is both detected on and stored: events held by
        the event store for a larger file are processed again after a crash (their alerts
        have fixed ids, so nothing is raised twice)."""
        upto = self.position
        store = self.detector.events
        if store is not None:
            upto = min(upto, store.max_offset + 1) if store.held else upto
        if upto > self.stream.acked:
            self.stream.ack(upto)

    def flush(self) -> None:
        """Store what the event store holds and acknowledge it (idle time, shutdown)."""
        with self._turn:
            if self.detector.events is not None:
                self.detector.events.flush(time.time())
            self._acknowledge()

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
                log.exception("detection batch failed (will retry)")
                self._stop.wait(1.0)
