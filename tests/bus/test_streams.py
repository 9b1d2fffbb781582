"""One contract, two streams: the embedded segment log and NATS JetStream (a real
nats-server) publish, hand out in order, keep each named consumer's position across a
reopen, and read any range again; JetStream also across a restart of the server."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vigil.bus import LocalStream
from vigil.bus.jetstream import BusUnavailable, JetStreamBus
from vigil.bus.segments import CommitError
from vigil.errors import outage


def records(count: int, start: int = 0) -> list[bytes]:
    return [b"record %06d " % i + b"x" * 100 for i in range(start, start + count)]


def read(consumer: Any, start: int, upto: int) -> list[tuple[int, bytes]]:
    got: list[tuple[int, bytes]] = []
    while start + len(got) < upto:
        batch = consumer.fetch(start + len(got), 100, 1.0)
        if not batch:
            break
        got.extend(batch)
    return got


class Opener:
    """Opens the stream `name` afresh (a new process would), and closes what it opened."""

    def __init__(self, make: Callable[[], Any], close: Callable[[Any], None]) -> None:
        self.make, self.close_one = make, close
        self.opened: list[Any] = []

    def __call__(self) -> Any:
        made = self.make()
        self.opened.append(made)
        return made

    def close_all(self) -> None:
        for made in reversed(self.opened):
            self.close_one(made)
        self.opened.clear()


@pytest.fixture(params=["local", "jetstream"])
def open_stream(request, tmp_path: Path) -> Iterator[Opener]:
    if request.param == "local":
        opener = Opener(lambda: LocalStream(tmp_path / "events", fsync=False), lambda s: s.close())
    else:
        server = request.getfixturevalue("nats_server")
        opener = Opener(lambda: JetStreamBus(server.url).stream("events"), lambda s: s.bus.close())
    try:
        yield opener
    finally:
        opener.close_all()


def test_records_come_out_in_order_with_consecutive_offsets(open_stream) -> None:
    stream = open_stream()
    assert stream.publish(records(250)) == (0, 249)
    assert stream.publish(records(50, start=250)) == (250, 299)
    assert stream.end == 300
    detect = stream.consumer("detect")
    got = read(detect, 0, 300)
    assert [offset for offset, _ in got] == list(range(300))
    assert [record for _, record in got] == records(300)
    assert detect.fetch(300, 10, 0.2) == []  # nothing more: empty after the wait
    assert detect.fetch(300, 10, 0) == []  # and at once without one


def test_each_named_consumer_keeps_its_position_across_a_reopen(open_stream) -> None:
    stream = open_stream()
    stream.publish(records(300))
    correlate, respond = stream.consumer("correlate"), stream.consumer("respond")
    read(correlate, 0, 300)
    correlate.ack(300)
    read(respond, 0, 120)
    respond.ack(120)
    assert (correlate.acked, respond.acked) == (300, 120)
    open_stream.close_all()
    again = open_stream()
    correlate, respond = again.consumer("correlate"), again.consumer("respond")
    assert (correlate.acked, respond.acked) == (300, 120)
    assert read(respond, 120, 300) == list(zip(range(120, 300), records(180, 120), strict=True))


def test_a_range_can_be_read_again_and_acknowledging_ahead_is_refused(open_stream) -> None:
    stream = open_stream()
    stream.publish(records(100))
    detect = stream.consumer("detect")
    read(detect, 0, 100)
    assert detect.fetch(40, 3, 0) == list(zip(range(40, 43), records(3, 40), strict=True))
    detect.ack(50)
    assert detect.acked == 50
    with pytest.raises(CommitError):
        detect.ack(500)


@pytest.mark.parametrize("kill", [False, True], ids=["restart", "kill"])
def test_jetstream_keeps_records_and_positions_across_a_server_restart(nats_server, kill) -> None:
    bus = JetStreamBus(nats_server.url)
    try:
        stream = bus.stream("events")
        stream.publish(records(200))
        detect = stream.consumer("detect")
        read(detect, 0, 150)
        detect.ack(150)
    finally:
        bus.close()
    nats_server.restart(kill=kill)  # stopped (or killed), started again on its store
    bus = JetStreamBus(nats_server.url)
    try:
        stream = bus.stream("events")
        detect = stream.consumer("detect")
        assert stream.end == 200  # every published record kept
        if kill:
            # the server writes a consumer's position behind: after a kill it may come back
            # lower (records are then handed out again: outputs are idempotent), never higher
            assert detect.acked <= 150
        else:
            assert detect.acked == 150
        start = detect.acked
        expected = list(zip(range(start, 200), records(200 - start, start), strict=True))
        assert read(detect, start, 200) == expected
        assert stream.publish(records(1, 200)) == (200, 200)
    finally:
        bus.close()


def test_a_server_out_of_reach_is_bus_unavailable_and_the_bus_comes_back(nats_server) -> None:
    bus = JetStreamBus(nats_server.url, timeout=1.0)
    try:
        stream = bus.stream("events")
        stream.publish(records(10))
        nats_server.stop()
        with pytest.raises(BusUnavailable) as raised:  # never a nats-py error: wait and retry
            stream.publish(records(1, 10))
        assert nats_server.url in str(raised.value) and outage(raised.value) is raised.value
        nats_server.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                stream.publish(records(1, 10))
                break
            except BusUnavailable:
                assert time.monotonic() < deadline, "the bus did not reconnect"
                time.sleep(0.2)
        assert stream.end >= 11
    finally:
        bus.close()
