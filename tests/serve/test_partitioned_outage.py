"""A detect worker's partition loop outlives NATS going away and coming back: nothing it
does against the bus in that time (telling progress, renewing leases) stops it for good."""

from __future__ import annotations

import time
from typing import Any

from vigil.bus.jetstream import JetStreamBus
from vigil.serve.partitions import PartitionedDetect


class Counting:
    """A partition's pipeline that does one record per step and tells it as progress."""

    def __init__(self) -> None:
        self.done = 0

    def step(self, timeout: float) -> int:
        self.done += 1
        time.sleep(0.01)
        return 1

    def done_through(self) -> int:
        return self.done

    def idle(self) -> None: ...

    def stop(self, timeout: float = 0) -> None: ...

    def abandon(self) -> None: ...


def test_the_partition_loop_goes_on_after_a_nats_restart(nats_server) -> None:
    bus = JetStreamBus(nats_server.url, timeout=1.0)
    made: list[Counting] = []

    def pipeline(partition: int, consumer: Any) -> Counting:
        made.append(Counting())
        return made[-1]

    detect = PartitionedDetect(
        bus, pipeline, partitions=1, lease_s=3, progress=bus.stream("alerts")
    )
    try:
        detect.start()
        assert detect.owned == {0}
        time.sleep(0.5)
        nats_server.stop()  # progress cannot be told, leases cannot be renewed
        time.sleep(5.0)  # longer than a publish waits, and than the leases last
        nats_server.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (detect.owned and detect.problem is None):
            time.sleep(0.1)
        assert detect.alive, "the partition loop died with the bus"
        assert detect.owned == {0} and detect.problem is None
        before = made[-1].done
        time.sleep(0.5)
        assert made[-1].done > before  # still working
    finally:
        detect.stop()
        bus.close()
