"""The intake log: offsets, framing, torn tails cut on reopen, commits, retention, locking,
and acknowledged appends surviving SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from vigil.store.segments import SegmentLog, SegmentLogError


def test_records_of_any_bytes_come_back_in_order_across_segments(tmp_path: Path) -> None:
    records = [b"", b"a\nb", b"\0" * 10, *(b"r%d" % i for i in range(500))]
    with SegmentLog(tmp_path, segment_bytes=512) as log:
        assert log.append(records[:3]) == (0, 2)
        for record in records[3:]:
            log.append([record])
        assert log.end == len(records)
        assert len(list(tmp_path.glob("*.seg"))) > 3
        assert [r for _, r in log.read(0, 10_000)] == records
        assert log.read(250, 3) == [(250, records[250]), (251, records[251]), (252, records[252])]
        assert log.read(log.end) == []


@pytest.mark.parametrize("damage", ["cut", "garbage", "flipped"])
def test_a_torn_tail_is_cut_on_reopen_and_appends_go_on(tmp_path: Path, damage: str) -> None:
    with SegmentLog(tmp_path) as log:
        log.append([b"one", b"two", b"three"])
    (segment,) = tmp_path.glob("*.seg")
    data = segment.read_bytes()
    if damage == "cut":
        segment.write_bytes(data[:-2])
    elif damage == "garbage":
        segment.write_bytes(data + b"\xa7\x05\x00\x00\x00\x00\x00\x00\x00ab")
    else:
        segment.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    with SegmentLog(tmp_path) as log:
        expected = [b"one", b"two", b"three"] if damage == "garbage" else [b"one", b"two"]
        assert [r for _, r in log.read(0)] == expected
        assert log.recovered["bytes"] > 0
        first, _ = log.append([b"four"])
        assert first == len(expected)
        assert log.read(first) == [(first, b"four")]


def test_commit_persists_never_goes_back_and_retention_keeps_the_rest(tmp_path: Path) -> None:
    with SegmentLog(tmp_path, segment_bytes=256) as log:
        for i in range(100):
            log.append([b"record %03d" % i])
        log.commit(60)
        with pytest.raises(SegmentLogError):
            log.commit(50)
        assert log.retain() > 0
        with pytest.raises(SegmentLogError):
            log.read(0)
        assert log.read(60, 1) == [(60, b"record 060")]
    with SegmentLog(tmp_path, segment_bytes=256) as log:
        assert (log.committed, log.end, log.lag()) == (60, 100, 40)


def test_a_second_owner_is_refused(tmp_path: Path) -> None:
    with SegmentLog(tmp_path), pytest.raises(SegmentLogError, match="another process"):
        SegmentLog(tmp_path)


def test_concurrent_appends_get_unique_contiguous_offsets(tmp_path: Path) -> None:
    with SegmentLog(tmp_path, segment_bytes=4096) as log:

        def write(thread: int) -> None:
            for i in range(100):
                log.append([b"%d:%d:%d" % (thread, i, k) for k in range(5)])

        threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        got = log.read(0, 100_000)
    assert [offset for offset, _ in got] == list(range(4000))
    assert sorted(r for _, r in got) == sorted(
        b"%d:%d:%d" % (t, i, k) for t in range(8) for i in range(100) for k in range(5)
    )
    for thread in range(8):  # each writer's records in its own order
        mine = [r for _, r in got if r.startswith(b"%d:" % thread)]
        assert mine == [b"%d:%d:%d" % (thread, i, k) for i in range(100) for k in range(5)]


WRITER = """
import sys
from pathlib import Path
from vigil.store.segments import SegmentLog
log = SegmentLog(Path(sys.argv[1]), segment_bytes=1 << 16)
i = log.end
while True:
    first, last = log.append([b"record-%d" % n for n in range(i, i + 50)])
    print(first, last, flush=True)
    i = last + 1
"""


def test_acknowledged_appends_survive_sigkill(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)],
                             stdout=subprocess.PIPE, env=os.environ.copy())  # fmt: skip
    time.sleep(1.0)
    child.send_signal(signal.SIGKILL)
    output, _ = child.communicate()
    acknowledged = [tuple(map(int, line.split())) for line in output.decode().splitlines()]
    assert len(acknowledged) > 10
    last = acknowledged[-1][1]
    with SegmentLog(tmp_path) as log:
        got = log.read(0, last + 1_000)
    assert [r for _, r in got[: last + 1]] == [b"record-%d" % n for n in range(last + 1)]
    assert len({r for _, r in got}) == len(got)  # nothing twice
