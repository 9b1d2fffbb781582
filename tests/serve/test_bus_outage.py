"""Stages outlive NATS going away and coming back: nothing they do against the bus in that
time (reading, acknowledging, telling progress, renewing leases) stops them for good, and
no record is set aside for it."""

from __future__ import annotations

import time
from typing import Any

from vigil.bus.jetstream import JetStreamBus
from vigil.serve.partitions import PartitionedDetect
from vigil.serve.stages import StageRunner


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


class Keeping:
    def __init__(self) -> None:
        self.seen: list[bytes] = []

    def restore(self) -> None: ...

    def process(self, records: Any) -> None:
        self.seen.extend(record for _, record in records)


def test_a_stage_goes_on_after_a_nats_outage_and_sets_nothing_aside(nats_server) -> None:
    bus = JetStreamBus(nats_server.url, timeout=1.0)
    stream = bus.stream("alerts")
    stage, aside = Keeping(), []
    runner = StageRunner("kept", stage, stream.consumer("kept"), set_aside=aside.extend)
    try:
        runner.start()
        stream.publish([b"a", b"b"])
        assert runner.wait_for(2, 10)
        nats_server.stop()
        time.sleep(5.0)  # the runner's reads fail all along
        nats_server.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                stream.publish([b"c"])
                break
            except Exception:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert runner.wait_for(3, 30), runner.problem
        assert runner.alive and stage.seen == [b"a", b"b", b"c"] and aside == []
        assert runner.problem is None
    finally:
        runner.stop()
        bus.close()
