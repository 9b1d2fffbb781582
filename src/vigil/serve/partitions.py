"""The detect stage over a partitioned `events` stream: intake publishes each record to the
partition of its host (`partition_of`), and any number of detect workers share the
partitions through leases (`vigil.bus.leases`).

    out = PartitionedEvents(bus, partitions=8)        # intake: publish(kind, source, lines)
    detect = PartitionedDetect(bus, make_pipeline, partitions=8)
    detect.start()                                    # takes its share, follows the leases
    ...
    detect.stop()                                     # finishes, stores, hands over

Partition n is the JetStream stream `events-<n>`, read by the durable consumer `detect`:
whichever worker holds the lease resumes from that position, so a partition taken over from
a worker that died loses no event, and what that worker had done but not acknowledged is
done again (alert ids are fixed by the finding, the event store skips offsets it holds:
nothing is stored twice). Each partition has its own Sigma correlation windows (kept as
`detect-<n>` in the state database) and its own event-store writer (`p<n>`).

A worker runs its partitions in one thread, a micro-batch of each in turn (one process, one
core: workers scale out by processes). A partition whose lease could not be renewed is
stopped at once, before its lease can run out."""

from __future__ import annotations

import logging
import re
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from vigil.bus.jetstream import JetStreamBus, JetStreamStream
from vigil.bus.leases import PartitionLeases
from vigil.serve.pipeline import Pipeline, encode

log = logging.getLogger("vigil.partitions")

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


def partition_stream(bus: JetStreamBus, partition: int) -> JetStreamStream:
    return bus.stream(f"events-{partition}")


class PartitionedEvents:
    """Intake's side: records published to the partitions of their hosts."""

    def __init__(self, bus: JetStreamBus, *, partitions: int) -> None:
        self.partitions = partitions
        self.streams = [partition_stream(bus, p) for p in range(partitions)]

    def publish(
        self, kind: bytes, source: str, payloads: Sequence[bytes | bytearray]
    ) -> tuple[int, int] | None:
        """Durable on return. No single range of offsets: None."""
        now = time.time()
        grouped: dict[int, list[bytes]] = defaultdict(list)
        for payload in payloads:
            grouped[partition_of(payload, source, self.partitions)].append(
                encode(kind, source, now, payload)
            )
        for partition, records in grouped.items():
            self.streams[partition].publish(records)
        return None

    def lag(self) -> int:
        """Records published and not yet acknowledged by the detect workers."""
        return sum(stream.backlog("detect") for stream in self.streams)


class PartitionedDetect:
    def __init__(
        self,
        bus: JetStreamBus,
        pipeline: Callable[[int, Any], Pipeline],
        *,
        partitions: int,
        lease_s: float = 6.0,
        me: str | None = None,
    ) -> None:
        self.bus = bus
        self.make_pipeline = pipeline  # (partition, its stream) -> a Pipeline on it
        self.leases = PartitionLeases(bus, "detect", partitions=partitions, lease_s=lease_s, me=me)
        self.lease_s = lease_s
        self.pipelines: dict[int, Pipeline] = {}
        self.problem: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._renewed = 0.0

    @property
    def owned(self) -> set[int]:
        return set(self.pipelines)

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
            stream = partition_stream(self.bus, partition).consumer("detect")
            self.pipelines[partition] = self.make_pipeline(partition, stream)

    def step(self, timeout: float = 0.05) -> int:
        """A micro-batch of each partition held; records done."""
        done = 0
        for pipeline in list(self.pipelines.values()):
            done += pipeline.step(timeout if len(self.pipelines) == 1 else 0.0)
        return done

    def drain(self, timeout: float = 60.0) -> bool:
        """Until every held partition is processed and stored (tests, tools)."""
        deadline = time.monotonic() + timeout
        done = True
        for pipeline in list(self.pipelines.values()):
            done = pipeline.drain(max(0.0, deadline - time.monotonic())) and done
        return done

    def _drop(self, partition: int, *, finish: bool) -> None:
        """Stop a partition: `finish` stores and acknowledges what is done (a hand-over);
        otherwise nothing more is acknowledged (the lease is lost: the partition is
        another's, who does again what was not acknowledged)."""
        pipeline = self.pipelines.pop(partition)
        if finish:
            pipeline.stop(timeout=0)
        else:
            pipeline.abandon()

    def _run(self) -> None:
        next_lease = time.monotonic() + self.lease_s / 3
        while not self._stop.is_set():
            if time.monotonic() >= next_lease:
                self.rebalance()
                next_lease = time.monotonic() + self.lease_s / 3
            if not self.pipelines:
                self._stop.wait(0.1)
                continue
            if not self.step():
                for pipeline in list(self.pipelines.values()):
                    pipeline.idle()
                self._stop.wait(0.05)


__all__ = [
    "SCANNED",
    "PartitionedDetect",
    "PartitionedEvents",
    "partition_key",
    "partition_of",
    "partition_stream",
]
