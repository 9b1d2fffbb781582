"""Named, durable consumers of one stream: each stage that follows a stream keeps its own
position across restarts, and records are deleted only once every consumer is past them."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.bus import LocalStream
from vigil.bus.segments import CommitError


def records(count: int, start: int = 0) -> list[bytes]:
    return [b"record %06d " % i + b"x" * 200 for i in range(start, start + count)]


def read_all(consumer, upto: int) -> list[bytes]:
    got: list[bytes] = []
    while consumer.acked + len(got) < upto:
        batch = consumer.fetch(consumer.acked + len(got), 100, 0)
        if not batch:
            break
        got.extend(record for _, record in batch)
    return got


def test_two_consumers_move_on_their_own_and_keep_their_positions(tmp_path: Path) -> None:
    stream = LocalStream(tmp_path, fsync=False)
    stream.publish(records(300))
    correlate, respond = stream.consumer("correlate"), stream.consumer("respond")
    assert read_all(correlate, 300) == records(300)
    correlate.ack(300)
    respond.ack(120)
    assert (correlate.acked, respond.acked, stream.acked) == (300, 120, 120)
    stream.close()

    again = LocalStream(tmp_path, fsync=False)
    correlate, respond = again.consumer("correlate"), again.consumer("respond")
    assert (correlate.acked, respond.acked) == (300, 120)
    assert read_all(respond, 300) == records(180, start=120)
    again.close()


def test_records_are_kept_until_the_slowest_consumer_is_past_them(tmp_path: Path) -> None:
    stream = LocalStream(tmp_path, fsync=False, segment_bytes=4096)
    fast, slow = stream.consumer("fast"), stream.consumer("slow")
    for start in range(0, 1000, 10):  # appends of a few records: many small segments
        stream.publish(records(10, start=start))
    fast.ack(1000)
    assert stream.log.first == 0  # the slow one still needs them all
    assert slow.fetch(0, 1, 0)[0][1] == records(1)[0]
    slow.ack(700)
    assert 0 < stream.log.first <= 700  # whole segments below 700 went
    assert slow.fetch(700, 1, 0)[0][1] == records(1, start=700)[0]
    stream.close()


def test_a_stage_that_subscribes_later_starts_where_the_stream_was_acknowledged(
    tmp_path: Path,
) -> None:
    stream = LocalStream(tmp_path, fsync=False)
    stream.publish(records(50))
    stream.ack(30)  # one consumer, as before named consumers (a data folder from then)
    late = stream.consumer("assets")
    assert late.acked == 30
    with pytest.raises(CommitError, match="named consumers"):
        stream.ack(40)  # from now on, through the named consumers
    with pytest.raises(CommitError, match="past the end"):
        late.ack(51)
    with pytest.raises(ValueError, match="name"):
        stream.consumer("../escape")
    stream.close()
