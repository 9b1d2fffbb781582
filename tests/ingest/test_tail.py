"""File tailing over real files: batches, commits and restarts, rotation by rename and by
copytruncate (live and while the reader was down), and a reader process killed mid-stream."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vigil.errors import InputError
from vigil.ingest.tail import FileTail

WAIT = 20.0


class Log:
    """A log file written, rotated and truncated the way services and logrotate do it,
    remembering every line written in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[bytes] = []
        self.partial: bytes | None = None  # written without its newline yet
        path.touch()

    def write(self, count: int = 1) -> None:
        with self.path.open("ab") as out:
            if self.partial is not None:
                out.write(b"\n")
                self.lines.append(self.partial)
                self.partial = None
            for _ in range(count):
                line = b"line %06d" % len(self.lines)
                self.lines.append(line)
                out.write(line + b"\n")

    def write_partial(self) -> None:
        """Starts a line without ending it (a writer caught mid-write)."""
        if self.partial is None:
            self.partial = b"line %06d partial" % len(self.lines)
            with self.path.open("ab") as out:
                out.write(self.partial)

    def _shift(self) -> None:
        numbers = sorted(
            (int(p.name.rsplit(".", 1)[1]) for p in self.path.parent.glob(self.path.name + ".*")
             if p.name.rsplit(".", 1)[1].isdigit()),
            reverse=True,
        )  # fmt: skip
        for n in numbers:
            os.rename(f"{self.path}.{n}", f"{self.path}.{n + 1}")

    def _end_partial(self) -> None:
        # Nothing will complete it: the reader hands it over as it is.
        if self.partial is not None:
            self.lines.append(self.partial)
            self.partial = None

    def rotate(self) -> None:
        """logrotate's default: rename to .1 (older ones shifted), create a new file."""
        self._end_partial()
        self._shift()
        os.rename(self.path, f"{self.path}.1")
        self.path.touch()

    def copytruncate(self) -> None:
        self._end_partial()
        self._shift()
        shutil.copyfile(self.path, f"{self.path}.1")
        os.truncate(self.path, 0)


class Consumer:
    """Reads like a service: a line counts as processed once committed; a crash forgets
    what was read since the last commit."""

    def __init__(self, path: Path, state: Path) -> None:
        self.path, self.state = path, state
        self.tail: FileTail | None = FileTail(path, state)
        self.committed: list[bytes] = []
        self.pending: list[bytes] = []
        self.tail.commit()  # where it starts, kept even if the file is rotated before a read

    def read(self, max_lines: int = 1000) -> int:
        assert self.tail is not None
        batch = self.tail.read_batch(max_lines)
        self.pending.extend(line.data for line in batch)
        return len(batch)

    def commit(self) -> None:
        assert self.tail is not None
        self.tail.commit()
        self.committed.extend(self.pending)
        self.pending.clear()

    def crash(self) -> None:
        assert self.tail is not None
        self.tail.close()
        self.tail = None
        self.pending.clear()

    def restart(self) -> FileTail:
        if self.tail is not None:
            self.crash()
        self.tail = FileTail(self.path, self.state)
        return self.tail

    def close(self) -> None:
        if self.tail is not None:
            self.crash()

    def drain(self) -> list[bytes]:
        while self.read():
            pass
        self.commit()
        return self.committed


@pytest.fixture
def log(tmp_path: Path) -> Log:
    (tmp_path / "logs").mkdir()
    return Log(tmp_path / "logs" / "app.log")


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "app.log.state"


@pytest.fixture
def make_reader(log: Log, state: Path) -> Iterator[Callable[[], Consumer]]:
    """`make_reader()`: a consumer of `log` with `state`, closed when the test ends."""
    made: list[Consumer] = []

    def make() -> Consumer:
        made.append(Consumer(log.path, state))
        return made[-1]

    yield make
    for consumer in made:
        consumer.close()


def test_only_complete_lines_are_read_and_a_partial_line_waits_for_its_newline(
    log: Log, state: Path
) -> None:
    log.path.write_bytes(b"first\nsecond\nthi")
    with FileTail(log.path, state) as tail:
        batch = tail.read_batch()
        assert [(line.data, line.offset) for line in batch] == [(b"first", 0), (b"second", 6)]
        assert {line.inode for line in batch} == {log.path.stat().st_ino}
        assert tail.read_batch() == []
        with log.path.open("ab") as out:
            out.write(b"rd\n")
        assert [(line.data, line.offset) for line in tail.read_batch()] == [(b"third", 13)]
        assert tail.position is not None and tail.position.offset == 19


def test_batches_hold_at_most_max_lines(log: Log, state: Path) -> None:
    log.write(25)
    with FileTail(log.path, state) as tail:
        sizes = [len(tail.read_batch(10)) for _ in range(4)]
    assert sizes == [10, 10, 5, 0]


def test_restart_continues_after_the_last_commit_and_reads_uncommitted_lines_again(
    log: Log, make_reader: Callable[[], Consumer]
) -> None:
    log.write(100)
    reader = make_reader()
    reader.read(30)
    reader.commit()
    reader.read(20)
    reader.crash()  # the 20 were never committed: they come again
    tail = reader.restart()
    assert tail.read_batch(1)[0].data == b"line 000030"
    reader.crash()
    reader.restart()
    log.write(10)
    assert reader.drain() == log.lines


def test_renamed_file_is_read_to_its_end_then_the_new_file_from_its_start(
    log: Log, make_reader: Callable[[], Consumer]
) -> None:
    log.write(50)
    reader = make_reader()
    reader.read(20)
    old = log.path.with_name("app.log.1")
    os.rename(log.path, old)
    with old.open("ab") as out:
        out.write(b"late 1\n")
    # logrotate creates the new file, then tells the writer to reopen: in between, the old
    # file is older than the new, empty one, and the writer still appends to the old one.
    written = old.stat().st_mtime_ns - 10**9
    os.utime(old, ns=(written, written))
    log.path.touch()
    assert reader.read() == 31
    with old.open("ab") as out:
        out.write(b"late 2\nlate, never ended")
    assert reader.read() == 1  # the partial line waits: the new file is still empty
    assert reader.pending[-1] == b"late 2"
    log.lines += [b"late 1", b"late 2", b"late, never ended"]
    log.write(30)
    reader.drain()
    assert reader.committed == log.lines
    assert reader.tail is not None and reader.tail.counters["rotations"] == 1


def test_copytruncate_reads_again_from_the_start_and_counts_it(
    log: Log, make_reader: Callable[[], Consumer]
) -> None:
    log.write(50)
    reader = make_reader()
    reader.drain()
    log.copytruncate()
    log.write(80)  # already longer than where the reader was: the first bytes tell
    assert reader.drain() == log.lines
    assert reader.tail is not None and reader.tail.counters["truncations"] == 1


def test_copytruncate_while_behind_reads_the_rest_from_the_copy_first(
    log: Log, make_reader: Callable[[], Consumer]
) -> None:
    log.write(50)
    reader = make_reader()
    reader.read(20)
    log.copytruncate()
    log.write(10)
    assert reader.drain() == log.lines
    assert reader.tail is not None and reader.tail.counters["truncations"] == 1


def test_rotations_while_down_are_read_in_order_after_restart(
    log: Log, make_reader: Callable[[], Consumer]
) -> None:
    log.write(40)
    reader = make_reader()
    reader.read(15)
    reader.commit()
    reader.read(5)
    reader.crash()
    log.write(10)
    log.rotate()
    log.write(30)
    log.rotate()
    log.write_partial()
    log.rotate()
    log.write(20)
    reader.restart()
    assert reader.drain() == log.lines


def test_copytruncate_while_down_reads_the_rest_from_the_copy_first(
    log: Log, make_reader: Callable[[], Consumer]
) -> None:
    log.write(40)
    reader = make_reader()
    reader.read(15)
    reader.commit()
    reader.crash()
    log.write(10)
    log.copytruncate()
    log.write(5)
    log.copytruncate()
    log.write(7)
    tail = reader.restart()
    assert reader.drain() == log.lines
    assert tail.counters["truncations"] == 1


def test_a_saved_file_found_nowhere_is_counted_and_reading_starts_at_the_start(
    log: Log, make_reader: Callable[[], Consumer]
) -> None:
    log.write(10)
    reader = make_reader()
    reader.drain()
    reader.crash()
    log.rotate()
    os.unlink(f"{log.path}.1")  # as if compressed away
    log.write(5)
    tail = reader.restart()
    assert reader.drain()[10:] == log.lines[10:]
    assert tail.counters["missing_on_resume"] == 1


def test_a_line_longer_than_max_line_is_handed_over_in_pieces(log: Log, state: Path) -> None:
    log.path.write_bytes(b"x" * 2500 + b"\nshort\n")
    with FileTail(log.path, state, max_line=1000) as tail:
        batch = tail.read_batch()
    assert [(line.data, line.offset) for line in batch] == [
        (b"x" * 1000, 0),
        (b"x" * 1000, 1000),
        (b"x" * 500, 2000),
        (b"short", 2501),
    ]
    assert tail.counters["long_lines"] == 2


def test_commit_saves_position_and_fingerprint_atomically(log: Log, state: Path) -> None:
    log.write(3)
    with FileTail(log.path, state) as tail:
        tail.read_batch()
        tail.commit(extra={"output_offset": 42})
    saved = json.loads(state.read_bytes())
    info = log.path.stat()
    assert (saved["inode"], saved["device"], saved["offset"]) == (info.st_ino, info.st_dev, 36)
    assert saved["fingerprint_size"] == 36
    assert len(saved["fingerprint"]) == 64
    assert saved["extra"] == {"output_offset": 42}
    assert sorted(p.name for p in state.parent.iterdir()) == ["app.log.state", "logs"]
    with FileTail(log.path, state) as again:
        assert again.extra == {"output_offset": 42}


def test_a_state_file_beside_the_log_is_not_taken_for_a_rotation(log: Log) -> None:
    state = log.path.with_name("app.log.state")
    log.write(5)
    reader = Consumer(log.path, state)
    reader.drain()
    reader.crash()
    log.rotate()
    log.write(5)
    reader.restart()
    assert reader.drain()[5:] == log.lines[5:]
    reader.close()


def test_the_state_of_another_file_or_a_damaged_state_is_refused(
    log: Log, state: Path, tmp_path: Path
) -> None:
    with FileTail(tmp_path / "other.log", state) as tail:
        tail.commit()
    with pytest.raises(InputError, match=r"other\.log"):
        FileTail(log.path, state)
    state.write_text("{not json")
    with pytest.raises(InputError, match="unusable tail state"):
        FileTail(log.path, state)


def test_a_log_path_that_cannot_be_read_is_an_error_not_an_empty_file(
    state: Path, tmp_path: Path
) -> None:
    with pytest.raises(InputError, match="cannot read"):
        FileTail(tmp_path, state)
    with FileTail(tmp_path / "not-yet.log", state) as tail:
        assert tail.read_batch() == []


def test_follow_yields_batches_as_lines_arrive(log: Log, state: Path) -> None:
    async def main() -> list[bytes]:
        got: list[bytes] = []
        with FileTail(log.path, state) as tail:
            log.write(5)
            async for batch in tail.follow(max_lines=3, poll=0.01):
                got.extend(line.data for line in batch)
                tail.commit()
                if len(got) == 5:
                    log.rotate()
                    log.write(4)
                if len(got) == 9:
                    break
        return got

    assert asyncio.run(asyncio.wait_for(main(), WAIT)) == [b"line %06d" % i for i in range(9)]


@pytest.mark.parametrize("seed", range(6))
def test_random_run_of_writes_rotations_and_crashes_delivers_every_line_once(
    log: Log, seed: int, make_reader: Callable[[], Consumer]
) -> None:
    rng = random.Random(seed)
    reader = make_reader()
    up = True
    for _ in range(400):
        step = rng.random()
        if step < 0.35:
            log.write(rng.randint(1, 30))
        elif step < 0.40:
            log.write_partial()
        elif step < 0.47:
            log.rotate()
        elif not up:
            if step < 0.60:
                reader.restart()
                up = True
        elif step < 0.75:
            reader.read(rng.randint(1, 60))
        elif step < 0.88:
            reader.commit()
        elif step < 0.92:
            reader.crash()
            up = False
        # else: idle
    if not up:
        reader.restart()
    log.write(1)  # ends the partial line, and gives the newest file data
    assert reader.drain() == log.lines


READER = """
import os, sys, time
from vigil.ingest.tail import FileTail

log_path, state_path, out_path, stop_path = sys.argv[1:5]
tail = FileTail(log_path, state_path)
written = int(tail.extra.get("output_offset", 0))
out = os.open(out_path, os.O_WRONLY | os.O_CREAT, 0o644)
# Output past the last commit belongs to lines that will be read again: cut it off.
os.ftruncate(out, written)
os.fsync(out)
tail.commit(extra={"output_offset": written})  # on a first start: the file it starts with
while True:
    batch = tail.read_batch(50)
    if not batch:
        if os.path.exists(stop_path):
            break
        time.sleep(0.001)
        continue
    data = b"".join(line.data + b"\\n" for line in batch)
    os.pwrite(out, data, written)
    os.fsync(out)
    written += len(data)
    # Output first, then the position with the output offset in one atomic write.
    tail.commit(extra={"output_offset": written})
"""

LINE = 12  # b"line 000000\n"


class Writer(threading.Thread):
    """Appends numbered lines, rotating by rename every `every` lines like a service that
    reopens its log; stops at each line number in `holds` until that event is set."""

    def __init__(self, path: Path, total: int, every: int, holds: dict[int, threading.Event]):
        super().__init__(daemon=True)
        self.path, self.total, self.every, self.holds = path, total, every, holds
        self.written = 0
        self.failed: BaseException | None = None

    def run(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            for i in range(self.total):
                if i in self.holds:
                    assert self.holds[i].wait(WAIT)
                if i and i % self.every == 0:
                    os.close(fd)
                    for n in range(i // self.every - 1, 0, -1):
                        os.rename(f"{self.path}.{n}", f"{self.path}.{n + 1}")
                    os.rename(self.path, f"{self.path}.1")
                    fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.write(fd, b"line %06d\n" % i)
                self.written = i + 1
                if i % 25 == 0:
                    time.sleep(0.0005)
            os.close(fd)
        except BaseException as exc:
            self.failed = exc


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


def test_reader_killed_mid_stream_while_the_file_rotates_delivers_every_line_exactly_once(
    tmp_path: Path,
) -> None:
    (tmp_path / "logs").mkdir()
    path = tmp_path / "logs" / "app.log"
    script, state = tmp_path / "reader.py", tmp_path / "app.log.state"
    output, stop, errors = tmp_path / "out.txt", tmp_path / "stop", tmp_path / "stderr.txt"
    script.write_text(READER)
    total = 6000
    kill_1, second_reading, kill_2 = threading.Event(), threading.Event(), threading.Event()
    # The writer waits at 2500 and 4500 until a reader is killed, so that rotations (every
    # 1000th line) happen while it is down, and at 3300 until the second reader reads, so
    # that it is still appending when that one is killed.
    holds = {2500: kill_1, 3300: second_reading, 4500: kill_2}
    writer = Writer(path, total, 1000, holds)

    def processed() -> int:
        return output.stat().st_size // LINE if output.exists() else 0

    def start() -> subprocess.Popen[bytes]:
        with errors.open("ab") as err:
            return subprocess.Popen(
                [sys.executable, str(script), str(path), str(state), str(output), str(stop)],
                stderr=err,
                cwd=tmp_path,
            )

    def kill(reader: subprocess.Popen[bytes]) -> None:
        assert reader.poll() is None, errors.read_text()
        reader.send_signal(signal.SIGKILL)
        reader.wait(WAIT)

    path.touch()
    reader = start()
    try:
        wait_until(state.exists, "the first reader to start")
        writer.start()
        wait_until(lambda: processed() >= 1200, "the first reader")
        kill(reader)
        kill_1.set()
        wait_until(lambda: writer.written >= 3200, "a rotation while down")
        reader = start()
        wait_until(lambda: processed() >= 2700, "the second reader")
        second_reading.set()
        wait_until(lambda: processed() >= 3600, "the second reader to go on")
        kill(reader)
        kill_2.set()
        wait_until(lambda: writer.written >= 5200, "another rotation while down")
        reader = start()
        writer.join(WAIT)
        assert writer.failed is None
        stop.touch()
        assert reader.wait(WAIT) == 0, errors.read_text()
    finally:
        for hold in holds.values():
            hold.set()
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert output.read_bytes().split(b"\n")[:-1] == [b"line %06d" % i for i in range(total)]
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "app.log",
        *(f"app.log.{n}" for n in range(1, 6)),
    ]
