"""The intake log: offsets and reads across segments, records of any bytes, torn tails cut on
reopen, damage elsewhere reported, group commit, commits and retention, the folder lock, and
acknowledged appends surviving SIGKILL."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from vigil.bus import segments
from vigil.bus.segments import (
    HEADER,
    CommitError,
    OffsetRetainedError,
    SegmentCorruptError,
    SegmentLockedError,
    SegmentLog,
    SegmentLogError,
)


def record(offset: int) -> bytes:
    """A record whose bytes follow from its offset, of varying length."""
    return b"%d:" % offset + bytes([offset % 251]) * (offset % 97) + b"\n"


def files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.seg"))


def everything(log: SegmentLog) -> list[tuple[int, bytes]]:
    return log.read(log.first, max_records=10**9, max_bytes=1 << 40)


# --- offsets and reads ------------------------------------------------------------------


def test_offsets_are_consecutive_and_reads_cross_segment_boundaries(tmp_path: Path) -> None:
    with SegmentLog(tmp_path, segment_bytes=2048) as log:
        assert log.end == 0
        offset = 0
        while offset < 3000:
            size = 1 + offset % 37
            first, last = log.append([record(o) for o in range(offset, offset + size)])
            assert (first, last) == (offset, offset + size - 1)
            offset += size
        assert log.end == offset
        names = files(tmp_path)
        assert len(names) > 20
        assert all(int(path.stem) < offset for path in names)
        assert int(names[0].stem) == 0
        assert everything(log) == [(o, record(o)) for o in range(offset)]
        for start in (0, 1, 127, 128, 129, 255, 1000, int(names[5].stem) - 1, offset - 1):
            got = log.read(start, max_records=300)
            assert got == [(o, record(o)) for o in range(start, min(start + 300, offset))]
        assert log.read(offset) == []
        assert log.read(offset + 10) == []


def test_reads_stop_at_the_record_and_byte_limits(tmp_path: Path) -> None:
    with SegmentLog(tmp_path) as log:
        log.append([b"x" * 100] * 1000)
        assert len(log.read(0, max_records=7)) == 7
        assert [o for o, _ in log.read(500, max_bytes=350)] == [500, 501, 502]
        assert [o for o, _ in log.read(500, max_bytes=1)] == [500]  # one, whatever its size
        assert len(log.read(0)) == 1000
        with pytest.raises(ValueError):
            log.read(-1)


def test_the_sparse_index_finds_every_start_in_a_large_segment(tmp_path: Path) -> None:
    with SegmentLog(tmp_path) as log:
        for size in (1, 5, 300, 127, 128, 129, 1000):
            log.append([record(o) for o in range(log.end, log.end + size)])
        end = log.end
    with SegmentLog(tmp_path) as log:  # the index rebuilt on open
        assert log.end == end
        for start in range(0, end, 7):
            assert log.read(start, max_records=3) == [
                (o, record(o)) for o in range(start, min(start + 3, end))
            ]


def test_records_of_any_bytes_come_back_unchanged(tmp_path: Path) -> None:
    records = [
        b"",
        b"\n",
        b"a\nb\r\n",
        b"\0" * 10,
        bytes(range(256)),
        bytes([segments.MAGIC]) + b"\xff" * 8,  # looks like a frame header
        b"",
        os.urandom(3 << 20),  # larger than one read chunk
        b'{"EventID": 1}\n',
    ]
    with SegmentLog(tmp_path, segment_bytes=1024) as log:
        assert log.append(records[:4]) == (0, 3)
        for item in records[4:]:
            log.append([item])
        assert [r for _, r in everything(log)] == records
    with SegmentLog(tmp_path, segment_bytes=1024) as log:
        assert log.recovered == {"bytes": 0, "records": 0}
        assert [r for _, r in everything(log)] == records


def test_an_empty_append_writes_nothing(tmp_path: Path) -> None:
    with SegmentLog(tmp_path) as log:
        assert log.append([]) == (0, -1)
        log.append([b"a", b"b"])
        assert log.append([]) == (2, 1)
        assert log.end == 2
        assert files(tmp_path)[0].stat().st_size == 2 * HEADER + 2


def test_everything_appended_is_there_after_reopening_and_appends_go_on(tmp_path: Path) -> None:
    with SegmentLog(tmp_path, segment_bytes=4096) as log:
        log.append([record(o) for o in range(500)])
        for o in range(500, 700):
            log.append([record(o)])
    with SegmentLog(tmp_path, segment_bytes=4096) as log:
        assert log.end == 700
        assert log.append([record(700), record(701)]) == (700, 701)
        assert everything(log) == [(o, record(o)) for o in range(702)]


def test_without_fsync_the_log_works_the_same(tmp_path: Path) -> None:
    with SegmentLog(tmp_path, segment_bytes=512, fsync=False) as log:
        for o in range(300):
            log.append([record(o)])
        assert log.syncs == 0
        log.commit(100)
        assert log.retain() > 0
    with SegmentLog(tmp_path, fsync=False) as log:
        assert (log.end, log.committed) == (300, 100)
        assert log.read(100, 2) == [(100, record(100)), (101, record(101))]


# --- recovery ---------------------------------------------------------------------------


def flip(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x40
    path.write_bytes(bytes(data))


def cut_mid_payload(path: Path) -> None:
    os.truncate(path, path.stat().st_size - 3)


def cut_mid_header(path: Path) -> None:
    # the last record is `record(9)`: cut inside its header
    os.truncate(path, path.stat().st_size - len(record(9)) - HEADER + 4)


def add_garbage(path: Path) -> None:
    with path.open("ab") as handle:
        handle.write(b"\x13\x37 not a frame")


def add_half_a_frame(path: Path) -> None:
    with path.open("ab") as handle:
        handle.write(bytes([segments.MAGIC]) + (500).to_bytes(4, "little") + b"\0\0\0\0abc")


def add_zeros(path: Path) -> None:  # a file extended by a crash before its data blocks landed
    with path.open("ab") as handle:
        handle.write(b"\0" * 4096)


def flip_last_payload_byte(path: Path) -> None:
    flip(path, path.stat().st_size - 1)


@pytest.mark.parametrize(
    ("damage", "kept", "frames"),
    [
        (cut_mid_payload, 9, 1),
        (cut_mid_header, 9, 1),
        (add_garbage, 10, 0),
        (add_half_a_frame, 10, 1),
        (add_zeros, 10, 0),
        (flip_last_payload_byte, 9, 1),
    ],
)
def test_a_torn_tail_is_cut_on_reopen_kept_aside_and_appends_go_on(
    tmp_path: Path, damage: object, kept: int, frames: int
) -> None:
    with SegmentLog(tmp_path, segment_bytes=4096) as log:
        log.append([record(o) for o in range(1000, 1300)])  # a full first segment
        first_of_last = log.end
        log.append([record(o) for o in range(first_of_last, first_of_last + 10)])
    (path,) = [p for p in files(tmp_path) if int(p.stem) == first_of_last]
    good = path.read_bytes()
    assert callable(damage)
    damage(path)
    damaged = path.read_bytes()
    expected_end = first_of_last + kept
    with SegmentLog(tmp_path, segment_bytes=4096) as log:
        assert log.end == expected_end
        cut = log.recovered
        assert cut["segment"] == str(path)
        assert cut["records"] == frames
        assert cut["bytes"] == len(damaged) - cut["position"] > 0
        assert Path(cut["saved_as"]).read_bytes() == damaged[cut["position"] :]
        assert path.read_bytes() == good[: cut["position"]]
        assert log.read(first_of_last, 100) == [
            (o, record(o)) for o in range(first_of_last, expected_end)
        ]
        assert log.append([b"after"]) == (expected_end, expected_end)
    with SegmentLog(tmp_path, segment_bytes=4096) as log:
        assert log.recovered == {"bytes": 0, "records": 0}
        assert log.read(expected_end) == [(expected_end, b"after")]
        assert log.read(0, 1) == [(0, record(1000))]


def test_a_last_segment_cut_to_nothing_leaves_an_empty_log_that_works(tmp_path: Path) -> None:
    with SegmentLog(tmp_path) as log:
        log.append([b"only"])
    os.truncate(files(tmp_path)[0], 5)
    with SegmentLog(tmp_path) as log:
        assert (log.end, log.recovered["bytes"], log.recovered["records"]) == (0, 5, 1)
        assert log.append([b"again"]) == (0, 0)


def test_damage_inside_an_older_segment_is_an_error_naming_file_and_position(
    tmp_path: Path,
) -> None:
    with SegmentLog(tmp_path, segment_bytes=1024) as log:
        for o in range(200):
            log.append([record(o)])
    older = files(tmp_path)[2]
    first = int(older.stem)
    flip(older, HEADER + len(record(first)) + HEADER + 1)  # the second record's payload
    with pytest.raises(SegmentCorruptError) as caught:
        SegmentLog(tmp_path, segment_bytes=1024)
    assert caught.value.path == older
    assert caught.value.offset == first + 1
    assert caught.value.position == HEADER + len(record(first))
    assert str(older) in str(caught.value)
    assert "CRC" in str(caught.value)
    assert older.stat().st_size > 0  # nothing was cut or skipped


def test_damage_below_the_committed_position_is_reported_when_read(tmp_path: Path) -> None:
    with SegmentLog(tmp_path, segment_bytes=1024) as log:
        for o in range(200):
            log.append([record(o)])
        log.commit(150)
    older = files(tmp_path)[1]
    flip(older, HEADER + 2)
    with SegmentLog(tmp_path, segment_bytes=1024) as log:  # processed already: open goes on
        assert log.read(150, 1) == [(150, record(150))]
        with pytest.raises(SegmentCorruptError, match=older.name):
            log.read(int(older.stem))


def test_a_missing_segment_in_the_middle_is_an_error(tmp_path: Path) -> None:
    with SegmentLog(tmp_path, segment_bytes=1024) as log:
        for o in range(200):
            log.append([record(o)])
    names = files(tmp_path)
    names[3].unlink()
    with pytest.raises(SegmentCorruptError, match=names[2].name):
        SegmentLog(tmp_path, segment_bytes=1024)


# --- durability under SIGKILL -----------------------------------------------------------

WRITER = """
import sys, threading
from pathlib import Path
from vigil.bus.segments import SegmentLog

def record(offset):
    return b"%d:" % offset + bytes([offset % 251]) * (offset % 97) + b"\\n"

log = SegmentLog(Path(sys.argv[1]), segment_bytes=1 << 16)
threads, tag = int(sys.argv[2]), sys.argv[3].encode()
print("open", log.end, flush=True)
if threads == 1:
    while True:
        start = log.end
        first, last = log.append([record(o) for o in range(start, start + 1 + start % 50)])
        assert first == start
        print(first, last, flush=True)
else:
    lock = threading.Lock()
    def write(thread):
        seq = 0
        while True:
            count = 1 + seq % 20
            batch = [b"%s-t%d-%d" % (tag, thread, s) for s in range(seq, seq + count)]
            first, last = log.append(batch)
            with lock:
                print(thread, seq, first, last, flush=True)
            seq += count
    for t in range(threads):
        threading.Thread(target=write, args=(t,)).start()
"""


def run_and_kill(
    folder: Path, threads: int, out: Path, tag: str = "r"
) -> tuple[int, list[list[int]]]:
    """Start a writer, SIGKILL it at a random moment once it has acknowledged something;
    return the log's end when it opened it and its acknowledgements (complete lines only)."""
    with out.open("wb") as stdout:
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(folder), str(threads), tag], stdout=stdout
        )
        deadline = time.monotonic() + 30
        while out.read_bytes().count(b"\n") < 3:
            assert child.poll() is None, "the writer died"
            assert time.monotonic() < deadline, "the writer acknowledged nothing"
            time.sleep(0.01)
        time.sleep(random.uniform(0.0, 0.4))
        child.send_signal(signal.SIGKILL)
        child.wait()
    opened, *lines, _partial = out.read_bytes().split(b"\n")
    return int(opened.split()[1]), [[int(word) for word in line.split()] for line in lines]


def test_acknowledged_appends_survive_sigkill_exactly_once(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    expected = 0
    for round_ in range(3):  # the later rounds also recover what the previous kill left
        opened, acknowledged = run_and_kill(folder, 1, tmp_path / f"out{round_}")
        assert len(acknowledged) >= 2
        # the append in flight at the kill may be on disk without being acknowledged
        assert opened >= expected
        expected = opened
        for first, last in acknowledged:  # contiguous: nothing lost, nothing twice
            assert first == expected
            expected = last + 1
    with SegmentLog(folder) as log:
        assert log.end >= expected
        got = everything(log)
    assert got == [(o, record(o)) for o in range(len(got))]


def test_acknowledged_appends_of_many_threads_survive_sigkill(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    acknowledged: list[tuple[int, list[int]]] = []
    for round_ in range(2):
        _, lines = run_and_kill(folder, 4, tmp_path / f"out{round_}", f"r{round_}")
        acknowledged += [(round_, line) for line in lines]
    assert len(acknowledged) > 10
    with SegmentLog(folder) as log:
        got = dict(everything(log))
    assert sorted(got) == list(range(len(got)))
    for round_, (thread, seq, first, last) in acknowledged:
        assert [got[o] for o in range(first, last + 1)] == [
            b"r%d-t%d-%d" % (round_, thread, s) for s in range(seq, seq + last - first + 1)
        ]
    assert len(set(got.values())) == len(got)  # nothing twice
    for round_ in range(2):  # each writer thread's records in its own order, none missing
        for thread in range(4):
            mine = [r for r in got.values() if r.startswith(b"r%d-t%d-" % (round_, thread))]
            assert mine == [b"r%d-t%d-%d" % (round_, thread, s) for s in range(len(mine))]


# --- threads and group commit -----------------------------------------------------------


def test_concurrent_appends_get_unique_contiguous_offsets_in_each_threads_order(
    tmp_path: Path,
) -> None:
    with SegmentLog(tmp_path, segment_bytes=8192) as log:

        def write(thread: int) -> None:
            for i in range(150):
                first, last = log.append([b"%d:%d:%d" % (thread, i, k) for k in range(1 + i % 7)])
                assert last - first == i % 7
                returned[thread].append((first, last))

        returned: list[list[tuple[int, int]]] = [[] for _ in range(8)]
        threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        got = everything(log)
        total = 8 * sum(1 + i % 7 for i in range(150))
        assert log.end == total
    assert [offset for offset, _ in got] == list(range(total))
    assert len({r for _, r in got}) == total
    for t in range(8):
        mine = [r for _, r in got if r.startswith(b"%d:" % t)]
        assert mine == [b"%d:%d:%d" % (t, i, k) for i in range(150) for k in range(1 + i % 7)]
        for (first, last), (i, _) in zip(returned[t], enumerate(returned[t]), strict=True):
            assert [r for _, r in got[first : last + 1]] == [
                b"%d:%d:%d" % (t, i, k) for k in range(1 + i % 7)
            ]


def test_concurrent_appends_share_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = segments._sync_data

    def slow_sync(fd: int) -> None:
        time.sleep(0.003)
        real(fd)

    monkeypatch.setattr(segments, "_sync_data", slow_sync)
    with SegmentLog(tmp_path) as log:

        def write(thread: int) -> None:
            for i in range(40):
                log.append([b"%d:%d" % (thread, i)])

        threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert log.end == 320
        assert log.syncs <= 320 // 2


def test_records_are_not_readable_before_their_fsync_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, release = threading.Event(), threading.Event()
    real = segments._sync_data

    def held_sync(fd: int) -> None:
        entered.set()
        assert release.wait(10)
        real(fd)

    with SegmentLog(tmp_path) as log:
        log.append([b"synced"])
        monkeypatch.setattr(segments, "_sync_data", held_sync)
        writer = threading.Thread(target=log.append, args=([b"in flight"],))
        writer.start()
        assert entered.wait(10)
        assert log.end == 1
        assert log.read(0) == [(0, b"synced")]
        assert not log.wait(1, 0.05)
        release.set()
        assert log.wait(1, 10)
        writer.join()
        assert log.read(0) == [(0, b"synced"), (1, b"in flight")]


def test_a_failed_fsync_fails_the_append_and_every_later_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_sync(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    with SegmentLog(tmp_path) as log:
        log.append([b"fine"])
        monkeypatch.setattr(segments, "_sync_data", broken_sync)
        with pytest.raises(SegmentLogError, match="fsync failed"):
            log.append([b"lost"])
        monkeypatch.undo()
        with pytest.raises(SegmentLogError, match="fsync failed"):
            log.append([b"refused"])
        assert log.end == 1


def test_wait_returns_when_a_record_arrives_or_the_timeout_passes(tmp_path: Path) -> None:
    with SegmentLog(tmp_path) as log:
        started = time.monotonic()
        assert not log.wait(0, 0.05)
        assert time.monotonic() - started >= 0.04
        timer = threading.Timer(0.05, log.append, args=([b"late"],))
        timer.start()
        assert log.wait(0, 10)
        timer.join()
        assert log.wait(0, 0)
        assert not log.wait(1, 0)


# --- the consumer's position and retention ----------------------------------------------


def test_commit_persists_and_never_goes_back_or_past_the_end(tmp_path: Path) -> None:
    with SegmentLog(tmp_path) as log:
        assert log.committed == 0
        log.append([record(o) for o in range(100)])
        log.commit(60)
        log.commit(60)  # the same again is fine
        with pytest.raises(CommitError, match="back"):
            log.commit(59)
        with pytest.raises(CommitError, match="past the end"):
            log.commit(101)
        assert (log.committed, log.lag()) == (60, 40)
    assert (tmp_path / "committed").read_text() == "60\n"
    assert not list(tmp_path.glob("*.tmp"))
    with SegmentLog(tmp_path) as log:
        assert (log.committed, log.end, log.lag()) == (60, 100, 40)
        with pytest.raises(CommitError):
            log.commit(10)


def test_retain_deletes_only_segments_wholly_below_the_committed_position(
    tmp_path: Path,
) -> None:
    with SegmentLog(tmp_path, segment_bytes=512) as log:
        for o in range(300):
            log.append([record(o)])
        firsts = [int(p.stem) for p in files(tmp_path)]
        assert log.retain() == 0  # nothing committed yet
        committed = firsts[4] + 1  # inside the fifth segment
        log.commit(committed)
        assert log.retain() == 4
        assert [int(p.stem) for p in files(tmp_path)] == firsts[4:]
        assert log.first == firsts[4]
        assert log.read(firsts[4], 1) == [(firsts[4], record(firsts[4]))]
        with pytest.raises(OffsetRetainedError, match=f"offset {firsts[4] - 1} is no longer kept"):
            log.read(firsts[4] - 1)
        with pytest.raises(OffsetRetainedError):
            log.read(0)
        log.commit(300)
        assert log.retain() == len(firsts) - 5  # everything but the last segment
        assert files(tmp_path)[-1].stem == f"{firsts[-1]:020d}"
    with SegmentLog(tmp_path, segment_bytes=512) as log:
        assert (log.first, log.end, log.committed, log.lag()) == (firsts[-1], 300, 300, 0)
        assert log.append([b"next"]) == (300, 300)


def test_committed_records_that_are_gone_make_open_fail(tmp_path: Path) -> None:
    with SegmentLog(tmp_path, segment_bytes=512) as log:
        for o in range(100):
            log.append([record(o)])
        log.commit(10)
    files(tmp_path)[0].unlink()
    with pytest.raises(SegmentLogError, match="missing"):
        SegmentLog(tmp_path, segment_bytes=512)


# --- ownership and closing --------------------------------------------------------------


def test_a_second_owner_in_this_process_is_refused(tmp_path: Path) -> None:
    holder = f"another process \\(pid {os.getpid()}\\)"
    with SegmentLog(tmp_path), pytest.raises(SegmentLockedError, match=holder):
        SegmentLog(tmp_path)
    with SegmentLog(tmp_path) as log:  # free again once closed
        assert log.end == 0


def test_a_second_process_opening_the_folder_gets_a_clear_error(tmp_path: Path) -> None:
    opener = (
        "import sys; from pathlib import Path; from vigil.bus.segments import SegmentLog\n"
        "SegmentLog(Path(sys.argv[1]))"
    )
    with SegmentLog(tmp_path):
        result = subprocess.run(
            [sys.executable, "-c", opener, str(tmp_path)], capture_output=True, text=True
        )
    assert result.returncode != 0
    assert "SegmentLockedError" in result.stderr
    assert "in use by another process" in result.stderr


def test_a_closed_log_refuses_work_and_closing_twice_is_fine(tmp_path: Path) -> None:
    log = SegmentLog(tmp_path)
    log.append([b"a"])
    log.close()
    log.close()
    with pytest.raises(SegmentLogError, match="closed"):
        log.append([b"b"])
    with pytest.raises(SegmentLogError, match="closed"):
        log.read(0)
