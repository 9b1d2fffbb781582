"""The detect stage of `vigil serve`: the `events` stream → detection → alerts (stored, and
published to the `alerts` stream) and the event store.

Intake (HTTP, syslog, tailed files) publishes each event to the `events` stream, which is on
disk when `publish` returns: only then is the sender acknowledged. One detection stage reads
the stream in micro-batches from its acknowledged position, parses, matches the Sigma rules
and the live indicators, runs the Sigma correlations, writes alerts (deterministic ids: a replayed
event cannot make a second alert) and stores the events (each offset once), and then
acknowledges the batch. After a crash it starts again from the last acknowledged position.
"""

from __future__ import annotations

import logging
import math
import struct
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from vigil.assets.discovery import discover
from vigil.bus import Stream
from vigil.detect import Detection
from vigil.detect.core import DetectionCore, correlation_detection
from vigil.detect.ioc import IntelScan
from vigil.detect.sigma import CorrelationEngine, Hit, LoadedRules
from vigil.detect.workers import WorkerError, WorkerPool
from vigil.errors import (
    OUTAGE_BACKOFF,
    StorageUnavailable,
    outage,
    retry_wait,
    storage_problem,
)
from vigil.events import Event
from vigil.events.entities import entities_in, entities_of, entity_values
from vigil.events.flows import flow_of, flows_record
from vigil.events.records import Alert, alert_id, detected_now
from vigil.ingest import FileReport
from vigil.ingest import live as live_events
from vigil.ingest.jsonlog import record_event
from vigil.ingest.shapes import Classifier
from vigil.store.alerts import AlertStore
from vigil.store.events import EventStore, EventWriter
from vigil.store.stages import StageStateStore

if TYPE_CHECKING:
    from vigil.intel.store import IndicatorStore

log = logging.getLogger("vigil.pipeline")

# One intake record: kind (J: a JSON event, S: a syslog message, L: a line of a tailed file,
# E: an event already read from a log file, as `event_record` writes it), when it was
# received (epoch s), the source's name, then the event's own bytes.
_HEAD = struct.Struct("<cdB")
JSON, SYSLOG, LINE, EVENT = b"J", b"S", b"L", b"E"
MAX_TRIES = 3  # failures of a batch, then of a single record, before it is isolated / set aside
MAX_BACKOFF = 30.0  # seconds between retries at most, while storage refuses writes
DISPATCH_STEP = 0.01  # seconds: how often a free worker is looked for while results are due
STAGE = "detect"  # its name for the state it keeps (the Sigma correlation windows)


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


def encode(kind: bytes, source: str, received: float, payload: bytes | bytearray) -> bytes:
    name = source.encode("utf-8", "replace")[:255]
    return b"".join((_HEAD.pack(kind, received, len(name)), name, payload))


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
    found: list[Alert] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)  # for correlation rules, in event order
    hit_offsets: list[int] = field(default_factory=list)  # the stream offset of each hit
    received: dict[int, float] = field(default_factory=dict)  # offset → received, of `found`
    rejects: list[dict[str, Any]] = field(default_factory=list)
    held_from: int | None = None  # lowest offset the event store holds unwritten
    discovered: bytes | None = None  # what the events show of assets (`Inventory` bytes)
    flows: bytes | None = None  # the connections the events record (a `flows` record)


class Analyzer:
    """The per-event half of detection: parse, match the Sigma rules and the indicators,
    store the events. Independent per micro-batch, so several can run side by side (one per
    worker process); what needs every batch in order (correlation, the alert store) is the
    `Detector`'s."""

    def __init__(
        self,
        loaded: LoadedRules,
        events: EventStore | None,
        intel: IntelScan | None = None,
    ) -> None:
        self.loaded = loaded
        self.events = EventWriter(events) if events is not None else None
        self.core = DetectionCore(loaded, intel=intel)
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
        offset_of = {id(event): offset for event, offset in zip(events, offsets, strict=True)}
        found = self.core.detect(events)
        try:  # what the events show of assets; never at the cost of detection
            shown = discover(events)
            if shown.nodes:
                out.discovered = shown.to_bytes()
        except Exception:
            log.exception("passive discovery failed on a batch (detection goes on)")
        connections = [flow for flow in map(flow_of, events) if flow is not None]
        if connections:  # for the segments stage (conformance to the segment policy)
            out.flows = flows_record(connections)
        for hit, event in found.hits:
            out.hits.append(hit)
            out.hit_offsets.append(offset_of.get(id(event), -1))
        for detection, event in found.detections:
            at = offset_of.get(id(event))
            if detection.kind == "indicator":  # one alert per indicator field of the event
                identity = f"{at}\0{next(iter(detection.matched_fields), '')}"
            else:
                identity = f"{at}"
            out.found.append(
                Alert(alert_id(detection, identity), detection, entities_of(event), offset=at)
            )
        out.received = {a.offset: received[a.offset] for a in out.found if a.offset in received}
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
                if type(data["fields"]) is not dict:
                    raise TypeError("its fields are not an object")
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


class Rejects:
    """The rejects file (JSON lines): records set aside, each with its reason and text. One
    per process, shared by every writer (intake, detection, the stages), so lines from
    several threads never interleave."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def add(self, items: list[dict[str, Any]]) -> None:
        if not items:
            return
        with self._lock, self.path.open("ab") as out:
            for item in items:  # one at a time: an item may be a line of many megabytes
                out.write(orjson.dumps(item, default=str))
                out.write(b"\n")


class Detector:
    """The in-order half of detection: correlation over the rule hits of every batch, the
    alerts (deterministic ids) stored and published to the `alerts` stream, indicator
    sightings and set-aside records."""

    def __init__(
        self,
        loaded: LoadedRules,
        alerts: AlertStore,
        indicators: IndicatorStore | None = None,
        rejects: Rejects | None = None,
        alerts_out: Stream | None = None,
        kept: StageStateStore | None = None,
        relationships_out: Stream | None = None,
        flows_out: Stream | None = None,
        name: str = STAGE,
    ) -> None:
        self.name = name  # whose state it keeps: "detect", or "detect-3" for a partition
        self.alerts = alerts
        self.alerts_out = alerts_out  # the `alerts` stream (correlation and later stages)
        self.relationships_out = relationships_out  # what events show of assets
        self.flows_out = flows_out  # the connections events record
        self.indicators = indicators
        self.rejects = rejects  # shared by intake and every partition's detector
        self.specs = loaded.plan.correlations
        self.kept = kept
        self.reset()

    def reset(self) -> None:
        """The Sigma correlation windows as last kept (at start, and after a failed batch,
        whose hits may be in them: they will be fed again)."""
        self.correlation = CorrelationEngine(self.specs)
        self.kept_upto = 0  # hits of records below this offset are in the windows
        saved = self.kept.get(self.name) if self.kept is not None and self.specs else None
        if saved is not None:
            self.kept_upto, state = saved
            self.correlation.restore(state)

    def finish(self, analysis: Analysis, upto: int | None = None) -> BatchFigures:
        """One analyzed batch, in stream order; `upto`: the stream offset after it."""
        figures = BatchFigures(events=analysis.events, rejected=analysis.rejected)
        found = list(analysis.found)
        fed = False
        if analysis.hits:
            detected_at = detected_now()
            kept_upto = self.kept_upto
            for hit, offset in zip(analysis.hits, analysis.hit_offsets, strict=True):
                if 0 <= offset < kept_upto:
                    continue  # before a restart: in the windows already, not counted twice
                fed = True
                for fired in self.correlation.feed(hit):
                    if fired.spec.output:  # on the event that completed it
                        detection = correlation_detection(fired, detected_at)
                        at = offset if offset >= 0 else None
                        found.append(self._correlated(detection, at, fired.hits))
        if self.indicators is not None:
            sightings = [
                IntelScan.sighting(a.detection) for a in found if a.detection.kind == "indicator"
            ]
            if sightings:
                self.indicators.record_sightings(sightings)
        # in event order (the correlate stage reads them so, from any number of partitions)
        found.sort(key=_event_order)
        figures.alerts = len(found)
        figures.new_alerts = self.alerts.add(found)
        stored_at = time.time()
        if self.alerts_out is not None and found:
            self.alerts_out.publish([replace(a, raised=stored_at).to_bytes() for a in found])
        received = analysis.received
        for alert in found:
            if alert.offset is not None and alert.offset in received:
                figures.latencies.append(stored_at - received[alert.offset])
        if self.relationships_out is not None and analysis.discovered is not None:
            self.relationships_out.publish([analysis.discovered])
        if self.flows_out is not None and analysis.flows is not None:
            self.flows_out.publish([analysis.flows])
        self.set_aside(analysis.rejects)
        if fed and upto is not None and self.kept is not None:
            # kept with the batch, before the stream is acknowledged: windows span a restart
            self.kept.put(self.name, upto, self.correlation.state())
            self.kept_upto = upto
        return figures

    def set_aside(self, items: list[dict[str, Any]]) -> None:
        """Records set aside, each with its reason (and text), into the rejects file."""
        if self.rejects is not None:
            self.rejects.add(items)

    @staticmethod
    def _correlated(detection: Detection, offset: int | None, hits: Sequence[Hit]) -> Alert:
        refs = orjson.dumps(detection.details.get("events", []), default=str).decode()
        view: dict[str, Any] = {"host.name": detection.host} if detection.host else {}
        # the addresses it counted by (a scanner, a password guesser, a tunnelling host),
        # then those its events name (the hosts one mapped the shares of...)
        group = (detection.details.get("group") or {}).values()
        named = (value for hit in hits for value in hit.fields.values())
        found = (ip for value in (*group, *named) for ip in entity_values("ip", value))
        addresses = list(dict.fromkeys(found))
        if addresses:
            view["related.ip"] = addresses[:MAX_CORRELATED_ADDRESSES]
        return Alert(alert_id(detection, refs), detection, entities_in(view), offset=offset)


class Pipeline:
    """The intake stream and its detection stage, run in a thread.

    The per-event work (`Analyzer`) runs in this process, or, given a pool of workers that
    each hold one (`vigil.serve.workers.analyzer_pool`), in worker processes, several
    micro-batches at once; the results are finished (`Detector`) here, one batch at a time
    in stream order. The stream is acknowledged up to what is detected on and stored."""

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
        self._counted = self.position  # batches below are counted in `totals`
        self._in_flight: deque[tuple[int, int]] = deque()  # (worker, end of its batch)
        self._held: dict[int, int | None] = {}  # worker → lowest offset it holds unstored
        self.totals = {"events": 0, "rejected": 0, "alerts": 0, "new_alerts": 0, "batches": 0}
        self.failures = 0  # batches failed, ever
        self.consecutive = 0  # failures since the stage last made progress
        self.problem: str | None = None  # why the stage is not making progress, if it is not
        self.storage: StorageUnavailable | None = None  # when that is the data folder
        self.set_aside = 0  # records set aside after failing detection on their own
        self._strikes: dict[int, int] = {}  # position → failures there
        self._isolating: deque[tuple[int, int]] = deque()  # ranges to process one at a time
        self._skipped: set[int] = set()  # offsets set aside, while isolating
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._turn = threading.Lock()  # one batch at a time, whoever runs it

    # --- intake ----------------------------------------------------------------------------

    def lag(self) -> int:
        """Events received and not yet detected on."""
        return self.stream.end - self.position

    def done_through(self) -> int:
        """The offset before which every event of the stream is detected on (past
        `position` when a partition's stream says nothing of its own came in between)."""
        with self._turn:
            if self._in_flight or self._isolating or self._sent != self.position:
                return self.position
            through = getattr(self.stream, "done_through", None)
            return through(self.position) if through is not None else self.position

    def publish(
        self, kind: bytes, source: str, payloads: Sequence[bytes | bytearray]
    ) -> tuple[int, int]:
        now = time.time()
        return self.stream.publish([encode(kind, source, now, p) for p in payloads])

    # --- the detection stage ---------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

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

    def abandon(self) -> None:
        """Stop without acknowledging anything more (the stream is another's now: a lost
        partition lease). Events held for the store are still written: the store skips the
        offsets it holds, so whoever does them again stores nothing twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
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
        """Keep every worker busy, then finish the oldest batch given out once it is ready.

        Work-conserving: a worker that is free gets whatever waits (up to `batch_max`) at
        once, while the others work, and the oldest result is waited for in short steps, so
        records that arrive meanwhile go to a free worker instead of waiting behind the
        oldest batch. Under load batches grow by themselves (more waits each time)."""
        pool = self.pool
        assert pool is not None
        deadline = time.monotonic() + timeout
        while True:
            self._give_out(pool, timeout)  # waits only while nothing is given out
            if not self._in_flight:
                return 0
            worker, upto = self._in_flight[0]
            left = deadline - time.monotonic()
            if pool.ready(worker, min(DISPATCH_STEP, max(left, 0.0))) or left <= 0:
                self._in_flight.popleft()
                analysis = pool.result(worker)
                self._give_out(pool, 0.0)  # the freed worker goes on while this is finished
                return self._finish(worker, upto, analysis)

    def _give_out(self, pool: WorkerPool, timeout: float) -> None:
        """Micro-batches of what waits, one to each free worker (waiting up to `timeout`
        for records only when no batch is given out)."""
        while len(self._in_flight) < pool.size:
            if self._in_flight:
                records = self.stream.fetch(self._sent, self.batch_max, 0)
            else:
                records = self._fetch(timeout)
            if not records:
                return
            worker = pool.submit("analyze", records)
            self._sent = records[-1][0] + 1
            self._in_flight.append((worker, self._sent))

    def _finish(self, worker: int, upto: int, analysis: Analysis) -> int:
        figures = self.detector.finish(analysis, upto)
        done = upto - self.position
        self.position = upto
        self._held[worker] = analysis.held_from
        self._acknowledge()
        if upto > self._counted:  # a batch done again after a failure is counted once
            self._counted = upto
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
            self._acknowledged()
        elif upto >= self.stream.end and not held:
            self._acknowledged()  # idle, nothing held: nothing is wrong

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
                self.pool.call_all("flush")
                self._held = dict.fromkeys(self._held)
            self._acknowledge()

    def restart(self) -> None:
        """After a failure: start again from the last acknowledged position (what was given
        out is detected on again; alert ids and the event stores keep it from doubling)."""
        with self._turn:
            self._in_flight.clear()
            self._held.clear()
            if self.pool is not None:
                try:  # what was given out is dropped, and what the event stores hold
                    self.pool.drop_owed()
                    self.pool.call_all("reset")
                except WorkerError:  # a worker died or does not answer
                    self.pool.restart()
            elif self.analyzer is not None:
                self.analyzer.reset()
            self.detector.reset()
            self.position = self._sent = self.stream.acked

    def drain(self, timeout: float = 60.0) -> bool:
        """Process until everything published so far is done and stored (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self.position < self.stream.end and time.monotonic() < deadline:
            self.step(0.05)
        try:
            self.flush()
        except Exception as exc:
            self._failed(exc)
        return self.position >= self.stream.end

    # --- failures --------------------------------------------------------------------------

    def step(self, timeout: float = 0.25) -> int:
        """One unit of work, whatever happens: a micro-batch (or, after repeated failures, a
        range being isolated); a failure is contained (see `_failed`). Records done."""
        try:
            if self._isolating:
                return self._isolate_once()
            return self.run_once(timeout)
        except Exception as exc:
            self._failed(exc)
            return 0

    def _failed(self, exc: Exception) -> None:
        """A batch failed. When the data folder refused a write (full, read-only) or the bus
        could not be reached, nothing is wrong with the records: wait (longer each time) and
        retry, reported in `problem`.
        Otherwise retry from the acknowledged position; after `MAX_TRIES` failures there,
        process what was given out in halves, one range at a time, down to the record at
        fault, which is set aside with the reason after `MAX_TRIES` failures of its own, so
        no record can stop the stage."""
        self.failures += 1
        self.consecutive += 1
        storage = storage_problem(exc)
        reason = _summary(exc)
        at, given = self.stream.acked, self._sent
        wait = 0.0
        if storage is not None:
            if str(storage) != self.problem:
                log.warning("detection stage waits for storage: %s", storage)
            self.storage = storage
            self.problem = str(storage)
            wait = retry_wait(self.consecutive, MAX_BACKOFF)
        elif (waiting := outage(exc)) is not None:  # the bus or a server out of reach
            if str(waiting) != self.problem:
                log.warning("detection stage waits: %s", waiting)
            self.problem = str(waiting)
            wait = retry_wait(self.consecutive, OUTAGE_BACKOFF)
        elif self._isolating:
            lo, hi = self._isolating[0]
            if hi - lo > 1:
                middle = (lo + hi) // 2
                self._isolating.popleft()
                self._isolating.extendleft([(middle, hi), (lo, middle)])
            else:
                tries = self._strikes[lo] = self._strikes.get(lo, 0) + 1
                if tries >= MAX_TRIES:
                    self._set_aside(lo, reason)
            self.problem = f"isolating a record that fails detection: {reason}"
        else:
            tries = self._strikes.get(at, 0) + 1
            self._strikes = {at: tries}
            self.problem = f"detection failing: {reason}"
            if tries == 1:
                log.error("detection failed at %d (retrying): %s", at, _detail(exc))
            if tries >= MAX_TRIES and given > at:
                log.warning(
                    "detection failed %d times at %d: isolating records %d-%d", tries, at, at, given
                )
                self._isolating.append((at, given))
                self._strikes = {}
            else:
                wait = 1.0
        if wait:
            self._stop.wait(wait)
        try:
            self.restart()
        except Exception:
            log.exception("restarting the detection stage failed")

    def _isolate_once(self) -> int:
        """Process the first range being isolated as one batch, stored at once (so a failure
        of the event store is this range's)."""
        with self._turn:
            lo, hi = self._isolating[0]
            records = [r for r in self._records(lo, hi) if r[0] not in self._skipped]
            self._sent = hi
            if self.pool is None:
                assert self.analyzer is not None
                worker, analysis = 0, self.analyzer.analyze(records)
            else:
                worker = self.pool.submit("analyze", records)
                analysis = self.pool.result(worker)
            done = self._finish(worker, hi, analysis)
            if self.pool is None:
                assert self.analyzer is not None
                self.analyzer.flush()
            else:
                self.pool.call_all("flush")
            self._held = dict.fromkeys(self._held)
            self._isolating.popleft()
            self._acknowledge()
            if not self._isolating:
                self._strikes = {}
                self._skipped.clear()
            return done

    def _records(self, lo: int, hi: int) -> list[tuple[int, bytes]]:
        """The records from `lo` to before `hi` (a partition's offsets have gaps)."""
        records: list[tuple[int, bytes]] = []
        start = lo
        while start < hi:
            more = [r for r in self.stream.fetch(start, hi - start, 0) if r[0] < hi]
            if not more:
                break
            records.extend(more)
            start = more[-1][0] + 1
        return records

    def _set_aside(self, offset: int, reason: str) -> None:
        """A record that fails detection on its own, again and again: into the rejects with
        the reason (its text kept), and skipped from now on."""
        [(_, record)] = self._records(offset, offset + 1) or [(offset, b"")]
        try:
            kind, received, source, payload = decode(record)
        except struct.error:
            kind, received, source, payload = b"?", 0.0, "", record
        log.error("record %d set aside: detection failed on it %d times: %s", offset,
                  MAX_TRIES, reason)  # fmt: skip
        self.detector.set_aside(
            [
                {
                    "offset": offset,
                    "source": source,
                    "received": received,
                    "kind": kind.decode("ascii", "replace"),
                    "reason": f"detection failed on this record {MAX_TRIES} times: {reason}",
                    "raw": payload.decode("utf-8", "replace"),
                }
            ]
        )
        self._skipped.add(offset)
        self.set_aside += 1

    def _acknowledged(self) -> None:
        """Progress: whatever was wrong is over."""
        self.consecutive = 0
        self.problem = None
        self.storage = None

    def idle(self) -> None:
        """Nothing came: store what is held and acknowledge it (a failure is contained)."""
        if self._isolating:
            return
        try:
            self.flush()
        except Exception as exc:
            self._failed(exc)

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.step(0.25):
                self.idle()


MAX_CORRELATED_ADDRESSES = 50  # a correlation's IP entities at most


def _event_order(alert: Alert) -> float:
    """Alerts of one batch by their event's offset (a correlation's: the event that completed
    it); those of no event (an import) after them."""
    return alert.offset if alert.offset is not None else math.inf


def _summary(exc: BaseException) -> str:
    """An error in one line (a worker's carries its traceback: its last line)."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    text = lines[-1] if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _detail(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 4000 else text[:3997] + "..."
