"""The detect stage over a partitioned `events` stream: intake publishes each record to the
partition of its host (`partition_of`), and any number of detect workers share the
partitions through leases (`vigil.bus.leases`).

    out = PartitionedEvents(bus, partitions=8)        # intake: publish(kind, source, lines)
    detect = PartitionedDetect(bus, make_pipeline, partitions=8)
    detect.start()                                    # takes its share, follows the leases
    ...
    detect.stop()                                     # finishes, stores, hands over

`events` is one JetStream stream; partition n is its subject `<prefix>.events.<n>`, read by
the durable consumer `detect-<n>`. One stream, so an event's offset is the same whatever the
partitioning (and an alert's id, which names it, is the embedded deployment's). Whichever
worker holds a partition's lease resumes from that consumer's position, so a partition taken
over from a worker that died loses no event, and what that worker had done but not
acknowledged is done again (alert ids are fixed by the finding, the event store skips
offsets it holds: nothing is stored twice). Each partition has its own Sigma correlation
windows (kept as `detect-<n>` in the state database) and its own event-store writer (`p<n>`).

A worker publishes, after its alerts, its partitions' `Progress` to `alerts`: so the correlate
stage takes the alerts of every partition in their events' order (`InEventOrder`), the order
one process would have raised them in, and forms the same incidents.

A worker runs its partitions in one thread, a micro-batch of each in turn (one process, one
core: workers scale out by processes). A partition whose lease could not be renewed is
stopped at once, before its lease can run out."""

from __future__ import annotations

import heapq
import logging
import re
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from vigil.bus.jetstream import JetStreamBus, JetStreamStream
from vigil.bus.leases import PartitionLeases
from vigil.bus.segments import CommitError
from vigil.events.records import Progress
from vigil.serve.pipeline import Pipeline, encode

log = logging.getLogger("vigil.partitions")
TELL_EVERY_S = 1.0  # progress is told at least this often, moved or not

# --- which partition: by host, else source ---------------------------------------------------
# The host is found in the raw record without parsing it: the first value of a field that
# names the host in the shapes Vigil reads (Windows `Computer`/`Hostname`, ECS `host.name`
# or `host: {name}`, Defender `DeviceName`, syslog `hostname`), looked for in the first
# `SCANNED` bytes with a bounded pattern. A record that names none goes by its source (the
# sending agent, file or listener), which is usually one host too. The partition is a CRC-32
# of that key (stable across processes and releases, unlike Python's `hash`).

SCANNED = 16 << 10
_HOST = re.compile(
    rb'"(?:Computer|ComputerName|Hostname|hostname|host_name|host\.name|DeviceName|'
    rb'computer_name)"\s{0,4}:\s{0,4}"([^"\\]{1,255})"'
    # ECS: host.name at the first level of the host object (its os, ip... objects skipped)
    rb'|"host"\s{0,4}:\s{0,4}\{(?:[^{}"]|"[^"\\]{0,255}"|\{[^{}]{0,512}\}){0,64}?'
    rb'"name"\s{0,4}:\s{0,4}"([^"\\]{1,255})"'
)


def partition_key(payload: bytes | bytearray, source: str) -> bytes:
    """The host a record names (lower case), else `source`."""
    found = _HOST.search(payload, 0, SCANNED)
    if found is not None:
        return (found.group(1) or found.group(2)).lower()
    return source.encode("utf-8", "replace")


def partition_of(payload: bytes | bytearray, source: str, partitions: int) -> int:
    if partitions <= 1:
        return 0
    return zlib.crc32(partition_key(payload, source)) % partitions


class PartitionedEvents:
    """Intake's side: records published to the partitions of their hosts, on one stream."""

    def __init__(self, events: JetStreamStream, *, partitions: int) -> None:
        self.events = events
        self.partitions = partitions

    def publish(
        self, kind: bytes, source: str, payloads: Sequence[bytes | bytearray]
    ) -> tuple[int, int]:
        """Durable on return; the offsets of the first and last."""
        now = time.time()
        return self.events.publish_partitioned(
            [
                (partition_of(payload, source, self.partitions), encode(kind, source, now, payload))
                for payload in payloads
            ]
        )

    def lag(self) -> int:
        """Records published and not yet handed to a detect worker (intake's limit)."""
        return sum(
            self.events.waiting(detect_consumer(p), partition=p) for p in range(self.partitions)
        )

    def backlog(self) -> int:
        """Records published and not yet acknowledged: detected on and stored."""
        return sum(
            self.events.backlog(detect_consumer(p), partition=p) for p in range(self.partitions)
        )


def detect_consumer(partition: int) -> str:
    return f"detect-{partition}"


class PartitionedDetect:
    def __init__(
        self,
        bus: JetStreamBus,
        pipeline: Callable[[int, Any], Pipeline],
        *,
        partitions: int,
        lease_s: float = 6.0,
        me: str | None = None,
        progress: JetStreamStream | None = None,
    ) -> None:
        self.bus = bus
        self.events = bus.stream("events")
        self.make_pipeline = pipeline  # (partition, its consumer) -> a Pipeline on it
        self.leases = PartitionLeases(bus, "detect", partitions=partitions, lease_s=lease_s, me=me)
        self.lease_s = lease_s
        self.progress_out = progress  # `alerts`, where each partition's progress is told
        self.pipelines: dict[int, Pipeline] = {}
        self.problem: str | None = None
        self._told: dict[int, int] = {}  # partition → progress last published
        self._told_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._renewed = 0.0

    @property
    def owned(self) -> set[int]:
        return set(self.pipelines)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self.rebalance()
        self._thread = threading.Thread(target=self._run, name="vigil-detect-p", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Finish and store what is in hand, then hand every partition over."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
        for partition in list(self.pipelines):
            self._drop(partition, finish=True)
        self.leases.release()

    def rebalance(self) -> None:
        """Renew the leases, take a fair share, hand over the surplus (stopped first)."""
        try:
            owned = self.leases.step()
        except Exception as exc:  # NATS unreachable: stop everything before leases run out
            self.problem = f"leases: {exc}"
            if time.monotonic() - self._renewed > self.lease_s * 0.8:
                for partition in list(self.pipelines):
                    self._drop(partition, finish=False)
            return
        self._renewed = time.monotonic()
        self.problem = None
        for partition in set(self.pipelines) - owned:  # lost: another holds it now
            log.warning("lease of partition %d lost: stopping it", partition)
            self._drop(partition, finish=False)
        surplus = self.leases.surplus()
        for partition in surplus:
            self._drop(partition, finish=True)
        self.leases.give_back(surplus)
        for partition in sorted(owned - surplus - set(self.pipelines)):
            consumer = self.events.consumer(detect_consumer(partition), partition=partition)
            self.pipelines[partition] = self.make_pipeline(partition, consumer)

    def step(self, timeout: float = 0.05) -> int:
        """A micro-batch of each partition held, then their progress told; records done."""
        done = 0
        for pipeline in list(self.pipelines.values()):
            done += pipeline.step(timeout if len(self.pipelines) == 1 else 0.0)
        self.tell()
        return done

    def drain(self, timeout: float = 60.0) -> bool:
        """Until every held partition is processed and stored (tests, tools)."""
        deadline = time.monotonic() + timeout
        done = True
        for pipeline in list(self.pipelines.values()):
            done = pipeline.drain(max(0.0, deadline - time.monotonic())) and done
        for pipeline in self.pipelines.values():
            pipeline.step(0.0)  # one empty fetch: each knows it is caught up
        self.tell(force=True)
        return done

    def tell(self, *, force: bool = False) -> None:
        """Publish the partitions' progress, when it moved (or every `TELL_EVERY_S`, so a
        reader that starts again soon knows where each stands)."""
        if self.progress_out is None or not self.pipelines:
            return
        upto = {p: pipeline.done_through() for p, pipeline in self.pipelines.items()}
        moved = any(self._told.get(p, -1) < at for p, at in upto.items())
        now = time.monotonic()
        if moved or force or now - self._told_at >= TELL_EVERY_S:
            self._tell(upto)
            self._told_at = now

    def _tell(self, upto: dict[int, int]) -> None:
        if self.progress_out is not None:
            self.progress_out.publish([Progress(upto, self.leases.me).to_bytes()])
            self._told.update(upto)

    def _drop(self, partition: int, *, finish: bool) -> None:
        """Stop a partition: `finish` stores and acknowledges what is done (a hand-over),
        and tells its progress; otherwise nothing more is acknowledged (the lease is lost:
        the partition is another's, who does again what was not acknowledged)."""
        pipeline = self.pipelines[partition]
        if finish:
            pipeline.stop(timeout=0)
            self._tell({partition: pipeline.done_through()})
        else:
            pipeline.abandon()
        del self.pipelines[partition]
        self._told.pop(partition, None)

    def _run(self) -> None:
        next_lease = time.monotonic() + self.lease_s / 3
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_lease:
                    next_lease = time.monotonic() + self.lease_s / 3
                    self.rebalance()
                if not self.pipelines:
                    self._stop.wait(0.1)
                elif not self.step():
                    for pipeline in list(self.pipelines.values()):
                        pipeline.idle()
                    self._stop.wait(0.05)
            except Exception as exc:  # the bus out of reach (telling progress, a hand-over):
                self.problem = f"partitions: {exc}"  # the leases decide what is still ours
                log.warning("partitioned detection: %s (going on)", exc)
                self._stop.wait(0.5)


class InEventOrder:
    """The `alerts` stream as its reader sees it when several partitions publish to it: the
    alerts in their events' order, whichever worker raised them and when (one process
    raises them in that order: so the same events give the same incidents).

    An alert is handed out once every partition's `Progress` is past its event; an alert
    with no event (a Sigma correlation, an import) as soon as it is read. The offsets handed
    out are this view's own, from 0; acknowledging them acknowledges the stream up to the
    first record not yet done, so after a restart the reader reads again from there (an
    alert already correlated is skipped by the stage) and nothing of value is only here."""

    def __init__(self, consumer: Any, partitions: int, *, batch: int = 1000) -> None:
        self.consumer = consumer
        self.partitions = partitions
        self.batch = batch
        self.progress = dict.fromkeys(range(partitions), 0)  # partition → done before
        self._read = consumer.acked  # the stream's offset read next
        self._held: list[tuple[int, int, bytes]] = []  # heap: (event offset, offset, record)
        self._out: list[tuple[int, bytes]] = []  # released (offset, record); view offsets
        self._base = 0  # the view offset of _out[0]: every one before it is acknowledged

    def fetch(self, start: int, max_records: int, timeout: float) -> list[tuple[int, bytes]]:
        if start < self._base:
            raise CommitError(f"alerts in event order: {start} was acknowledged already")
        if start >= self._base + len(self._out):
            self._pull(timeout)
        at = start - self._base
        return [
            (self._base + at + i, record)
            for i, (_, record) in enumerate(self._out[at : at + max_records])
        ]

    def ack(self, upto: int) -> None:
        if upto <= self._base:
            return
        if upto > self._base + len(self._out):
            raise CommitError(f"alerts in event order: {upto} acknowledged, not handed out")
        del self._out[: upto - self._base]
        self._base = upto
        pending = [offset for offset, _ in self._out] + [o for _, o, _ in self._held]
        floor = min(pending, default=self._read)
        if floor > self.consumer.acked:
            self.consumer.ack(floor)

    @property
    def acked(self) -> int:
        return self._base

    @property
    def end(self) -> int:
        """The view's end: what can be handed out now (read without waiting)."""
        self._pull(0.0)
        return self._base + len(self._out)

    @property
    def waiting(self) -> int:
        """Alerts read and held for the progress of a partition behind."""
        return len(self._held)

    def publish(self, records: Sequence[bytes]) -> tuple[int, int]:
        raise CommitError("alerts in event order is a reader's view: publish to `alerts`")

    def close(self) -> None:
        """The stream is closed by its owner."""

    def _pull(self, timeout: float) -> None:
        got = self.consumer.fetch(self._read, self.batch, timeout)
        for offset, record in got:
            self._read = offset + 1
            if Progress.given(record):
                for partition, upto in Progress.from_bytes(record).upto.items():
                    if partition not in self.progress:
                        log.error(
                            "progress of partition %d, past the %d partitions configured: "
                            "[bus] partitions must be the same in every process",
                            partition,
                            self.partitions,
                        )
                    elif upto > self.progress[partition]:
                        self.progress[partition] = upto
                continue
            event = _event_offset(record)
            if event is None:
                self._out.append((offset, record))
            else:
                heapq.heappush(self._held, (event, offset, record))
        floor = min(self.progress.values())
        while self._held and self._held[0][0] < floor:
            _, offset, record = heapq.heappop(self._held)
            self._out.append((offset, record))


def _event_offset(record: bytes) -> int | None:
    """The offset of an alert's event (None: none, or not an alert's record)."""
    try:
        value = orjson.loads(record).get("offset")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, int) else None


__all__ = [
    "SCANNED",
    "InEventOrder",
    "PartitionedDetect",
    "PartitionedEvents",
    "detect_consumer",
    "partition_key",
    "partition_of",
]
