"""The stages of `vigil serve` and the streams between them.

    intake ──► events ──► detect ──► alerts ──► correlate ──► incidents, risk
                            │          ▲   └──► respond ──► actions      └──► respond
                            │          └───────────────────┐
                            ├──► flows ──► segments (violations of the segment policy)
                            └──► relationships ──► assets (inventory, access graph)
                                                          └──► inventory ──► zerotrust-inventory

A stage reads one stream from its committed position, does one job, publishes what it made
to the next streams, and only then commits. A stage is one module plus one line in `STAGES`;
later stages (assets, respond, zerotrust) subscribe the same way. `detect` runs in its own
runner (`vigil.serve.pipeline.Pipeline`: worker processes, record isolation); every other
stage runs in a `StageRunner`, which reads, hands batches to the stage, retries, sets aside
a record that fails on its own, and reports its lag and rate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import Engine

from vigil.assets.context import AssetContext
from vigil.assets.stage import AssetStage
from vigil.assets.store import AssetStore
from vigil.bus import Stream
from vigil.config import Settings
from vigil.correlate import Settings as CorrelateSettings
from vigil.correlate.stage import IncidentStage
from vigil.correlate.store import IncidentStore
from vigil.errors import OUTAGE_BACKOFF, outage, retry_wait, storage_problem
from vigil.respond.engine import Responder
from vigil.respond.stage import AlertResponseStage, IncidentResponseStage
from vigil.store.alerts import AlertStore
from vigil.store.stages import StageStateStore
from vigil.zerotrust import inventory
from vigil.zerotrust.pdp import Knowledge
from vigil.zerotrust.stage import InventoryStage, RiskStage, SegmentStage

log = logging.getLogger("vigil.stages")

MAX_TRIES = 3  # failures of a batch, then of a single record, before it is set aside
MAX_BACKOFF = 30.0


class Wiring(Protocol):
    """What a stage is built from: the service's stores and settings, and publishing to a
    stream by name."""

    incident_store: IncidentStore
    settings: Settings
    engine: Engine
    responder: Responder | None
    knowledge: Knowledge

    def publisher(self, stream: str) -> Callable[[Sequence[Any]], None]: ...

    def announce_compliance(self, host: str, was: bool, now: bool) -> None: ...


def _assets(wiring: Wiring) -> Stage:
    return AssetStage(wiring.engine, wiring.publisher("inventory"))


def _correlate(wiring: Wiring) -> Stage:
    given = wiring.settings.correlate
    stage = IncidentStage(
        wiring.incident_store,
        CorrelateSettings(given.window_s, given.span_s, given.half_life_s),
        AssetContext(wiring.engine).points,
    )
    stage.listeners.append(wiring.publisher("risk"))
    stage.change_listeners.append(wiring.publisher("incidents"))
    return stage


def _respond(wiring: Wiring) -> Stage:
    if wiring.responder is None:
        raise RuntimeError("respond stage without a responder")
    return AlertResponseStage(wiring.responder)


def _respond_incidents(wiring: Wiring) -> Stage:
    if wiring.responder is None:
        raise RuntimeError("respond stage without a responder")
    return IncidentResponseStage(wiring.responder)


def _zerotrust(wiring: Wiring) -> Stage:
    return RiskStage(wiring.knowledge)


def _zerotrust_inventory(wiring: Wiring) -> Stage:
    return InventoryStage(
        wiring.knowledge, AssetStore(wiring.engine).node, wiring.announce_compliance
    )


def _segments(wiring: Wiring) -> Stage:
    given = wiring.settings.zerotrust
    assets = AssetStore(wiring.engine)
    return SegmentStage(
        given.segments,
        AlertStore(wiring.engine).add,
        wiring.publisher("alerts"),
        tags=lambda: inventory.tagged_addresses(assets),
        level=given.violation_level,
        staged=given.segments_staged,
        state=StageStateStore(wiring.engine),
    )


@dataclass(frozen=True, slots=True)
class StageSpec:
    """A stage: the stream it consumes, those it publishes to, and how it is built (None:
    `detect`, which runs in its own runner, `vigil.serve.pipeline.Pipeline`), and the role
    of the processes that run it."""

    name: str
    consumes: str
    publishes: tuple[str, ...]
    build: Callable[[Wiring], Stage] | None = None
    role: str = "correlate"


# The registry: one line per stage, in flow order. `Service` runs each stage with a
# `build` in a `StageRunner` on the stream it consumes.
STAGES = (
    StageSpec("detect", consumes="events", publishes=("alerts", "relationships", "flows")),
    StageSpec("segments", consumes="flows", publishes=("alerts",), build=_segments),
    StageSpec("correlate", consumes="alerts", publishes=("incidents", "risk"), build=_correlate),
    StageSpec("assets", consumes="relationships", publishes=("inventory",), build=_assets),
    StageSpec("respond", consumes="alerts", publishes=("actions",), build=_respond, role="respond"),
    StageSpec(
        "respond-incidents",
        consumes="incidents",
        publishes=("actions",),
        build=_respond_incidents,
        role="respond",
    ),
    StageSpec("zerotrust", consumes="risk", publishes=("decisions",), build=_zerotrust, role="api"),
    StageSpec(
        "zerotrust-inventory",
        consumes="inventory",
        publishes=(),
        build=_zerotrust_inventory,
        role="api",
    ),
)
STREAMS = tuple(dict.fromkeys(name for s in STAGES for name in (s.consumes, *s.publishes)))
# Streams kept as durably as the intake (fsync per batch when `pipeline.fsync`); the others
# are derived (their content is in the store too), for whoever follows them.
DURABLE = frozenset({"events", "alerts", "relationships", "flows", "decisions"})
# The folder of each stream in the data folder (`events` is the intake log).
FOLDERS = {"events": "intake"}


class Stage(Protocol):
    """What a `StageRunner` runs: a batch of (offset, record) in, committed when it
    returns; `restore` takes up the stage's kept state before the first batch."""

    def restore(self) -> Any: ...

    def process(self, records: Sequence[tuple[int, bytes]]) -> object: ...


SetAside = Callable[[list[dict[str, Any]]], None]


class StageRunner:
    """Runs one stage over its stream in a thread, from the stream's committed position."""

    def __init__(
        self,
        name: str,
        stage: Stage,
        stream: Stream,
        *,
        set_aside: SetAside,
        batch_max: int = 1000,
    ) -> None:
        self.name = name
        self.stage = stage
        self.stream = stream
        self.set_aside = set_aside
        self.batch_max = batch_max
        self.position = stream.acked
        self.processed = 0  # records, since start
        self.failures = 0
        self.consecutive = 0
        self.problem: str | None = None
        self.records_set_aside = 0
        self._strikes: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._turn = threading.Lock()
        self._progress = threading.Condition()

    def lag(self) -> int:
        return self.stream.end - self.position

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self.stage.restore()
        self._thread = threading.Thread(target=self._run, name=f"vigil-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def step(self, timeout: float = 0.25) -> int:
        """One batch, whatever happens (a failure is contained); records done."""
        with self._turn:
            try:
                records = self.stream.fetch(self.position, self.batch_max, timeout)
            except Exception as exc:  # the stream out of reach (NATS restarting)
                self._unreachable(exc)
                return 0
            if not records:
                return 0
            try:
                self.stage.process(records)
            except Exception as exc:
                self._failed(records, exc)
                return 0
            try:
                self._done(records[-1][0] + 1, len(records))
            except Exception as exc:  # done, not acknowledged: they come again (stages
                self._unreachable(exc)  # are idempotent: a record done twice adds nothing)
                return 0
            return len(records)

    def _unreachable(self, exc: Exception) -> None:
        """The stream could not be read or acknowledged: wait, longer each time, and retry
        (the thread goes on; `problem` says why it does not move)."""
        self.failures += 1
        self.consecutive += 1
        reason = _reason(exc)
        if self.problem != f"{self.name} waiting: {reason}":
            log.warning("stage %s cannot use its stream (retrying): %s", self.name, reason)
        self.problem = f"{self.name} waiting: {reason}"
        self._stop.wait(retry_wait(self.consecutive, OUTAGE_BACKOFF))

    def wait_for(self, offset: int, timeout: float) -> bool:
        """Wait until every record before `offset` is processed (by the thread)."""
        deadline = time.monotonic() + timeout
        with self._progress:
            while self.position < offset:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._progress.wait(min(left, 0.1))
        return True

    def drain(self, timeout: float = 60.0) -> bool:
        """Process everything published so far, here (tests, tools, shutdown)."""
        deadline = time.monotonic() + timeout
        while self.position < self.stream.end and time.monotonic() < deadline:
            self.step(0.05)
        return self.position >= self.stream.end

    def _done(self, upto: int, count: int) -> None:
        self.stream.ack(upto)
        with self._progress:
            self.position = upto
            self._progress.notify_all()
        self.processed += count
        self.consecutive = 0
        self.problem = None
        self._strikes.clear()

    def _failed(self, records: Sequence[tuple[int, bytes]], exc: Exception) -> None:
        """Storage refusing writes or the bus out of reach: wait, longer each time, and
        retry. Any other failure:
        retry; after `MAX_TRIES`, the batch goes record by record, and a record that fails
        `MAX_TRIES` times on its own is set aside with the reason."""
        self.failures += 1
        self.consecutive += 1
        waiting = outage(exc)
        if waiting is not None:
            self.problem = f"waiting: {waiting}"
            longest = MAX_BACKOFF if storage_problem(exc) is not None else OUTAGE_BACKOFF
            self._stop.wait(retry_wait(self.consecutive, longest))
            return
        first, reason = records[0][0], _reason(exc)
        tries = self._strikes[first] = self._strikes.get(first, 0) + 1
        self.problem = f"{self.name} failing: {reason}"
        if tries == 1:
            log.error("stage %s failed at %d (retrying): %s", self.name, first, reason)
        if tries < MAX_TRIES:
            self._stop.wait(min(MAX_BACKOFF, 0.5 * tries))
        elif len(records) > 1:
            self._one_by_one(records)
        else:
            self._set_aside(*records[0], reason)

    def _one_by_one(self, records: Sequence[tuple[int, bytes]]) -> None:
        for offset, record in records:
            for _ in range(MAX_TRIES):
                try:
                    self.stage.process([(offset, record)])
                except Exception as exc:
                    if outage(exc) is not None:
                        self._failed([(offset, record)], exc)  # waits: the rest comes again
                        return
                    last = exc
                    continue
                self._done(offset + 1, 1)
                break
            else:
                self._set_aside(offset, record, _reason(last))

    def _set_aside(self, offset: int, record: bytes, reason: str) -> None:
        log.error("stage %s sets record %d aside: %s", self.name, offset, reason)
        self.set_aside(
            [
                {
                    "stage": self.name,
                    "offset": offset,
                    "reason": f"{self.name} failed on this record {MAX_TRIES} times: {reason}",
                    "raw": record.decode("utf-8", "replace"),
                }
            ]
        )
        self.records_set_aside += 1
        self._done(offset + 1, 1)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step(0.25)
            except Exception as exc:  # acknowledging or setting aside while one by one
                self._unreachable(exc)


def _reason(exc: BaseException) -> str:
    """An error in one line (its last, cut short)."""
    text = str(exc).strip()
    return text.splitlines()[-1][:300] if text else type(exc).__name__


class StageCollector:
    """Every stage's lag (records published to its stream, not yet processed) and rate
    (records processed, a counter) for `/metrics`, read when scraped."""

    def __init__(self, figures: Callable[[], dict[str, tuple[int, int]]]) -> None:
        self.figures = figures  # stage → (lag, processed)

    def describe(self) -> Iterator[Metric]:
        """The metrics' names (read at registration, before any stage runs)."""
        return self._families({})

    def collect(self) -> Iterator[Metric]:
        return self._families(self.figures())

    def _families(self, figures: dict[str, tuple[int, int]]) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "vigil_stage_lag_records",
            "Records on the stage's stream not yet processed",
            labels=["stage"],
        )
        done = CounterMetricFamily(
            "vigil_stage_records", "Records the stage processed", labels=["stage"]
        )
        for name, (behind, processed) in figures.items():
            lag.add_metric([name], behind)
            done.add_metric([name], processed)
        yield lag
        yield done


class ResponseCollector:
    """Response runs per state, steps waiting for approval, and detection → first action
    (p50, p99 over the last runs that acted) for `/metrics`, read from the state database
    when scraped."""

    def __init__(self, figures: Callable[[], dict[str, Any]]) -> None:
        self.figures = figures

    def describe(self) -> Iterator[Metric]:
        return self._families({"runs": {}, "pending_approvals": 0})

    def collect(self) -> Iterator[Metric]:
        return self._families(self.figures())

    def _families(self, figures: dict[str, Any]) -> Iterator[Metric]:
        runs = GaugeMetricFamily("vigil_respond_runs", "Playbook runs by state", labels=["state"])
        for state, count in figures["runs"].items():
            runs.add_metric([state], count)
        yield runs
        yield GaugeMetricFamily(
            "vigil_respond_pending_approvals",
            "Steps waiting for a person's decision",
            value=figures["pending_approvals"],
        )
        latency = GaugeMetricFamily(
            "vigil_respond_first_action_seconds",
            "Detection → first action of recent runs",
            labels=["quantile"],
        )
        for quantile, key in (("0.5", "first_action_p50_ms"), ("0.99", "first_action_p99_ms")):
            if figures.get(key) is not None:
                latency.add_metric([quantile], figures[key] / 1000)
        yield latency
