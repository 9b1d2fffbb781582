"""The intake write-ahead log of `vigil serve`: a durable, append-only log of records in segments.

Records are opaque byte strings with global, consecutive offsets from 0. On disk each is a
frame `magic 0xA7 (u8) | payload length (u32 LE) | CRC32 of the payload (u32 LE) | payload`,
in segment files named by the offset of their first record (`00000000000000000000.seg`), so a
file's offsets are known from its name. A segment is rolled over before a batch that would
take it past `segment_bytes` (a batch is never split, so one larger than that makes a segment
of its own).

Durability. `append` returns once its records are on disk. Concurrent appends are written one
after the other under a lock and then share one `fdatasync` (group commit): the first to need
it syncs everything written so far while the others wait, and whoever writes during that sync
is covered by the next. A segment is synced completely before the next one is created, so only
the last segment can end in a torn write. Readers see only synced records, and `end` counts
only those.

Recovery on open. The last segment may end in a torn write (a frame cut short, a wrong magic
byte, a CRC mismatch: a crash mid-write). It is cut back to its last good frame. The bytes
cut off are kept in `<segment>.<position>.bad` next to it, and the cut is reported in
`recovered`. Nothing there was ever acknowledged unless the disk itself damaged synced data.
The cut bytes are kept so a person can check that case. Damage inside an older segment
cannot come from a crash. Open raises `SegmentCorruptError`, naming the file, byte position and
offset, rather than skip records that were acknowledged. Older segments that still hold
unprocessed records (at or past `committed`) are checked on open. Those wholly below it are
checked when first read.

The consumer's position (`commit`) is the decimal offset in `committed`, replaced atomically
(temporary file, fsync, rename, fsync of the folder). One process owns a folder: an
exclusive `flock` on its `lock` file.

    with SegmentLog(Path("vigil-data/intake")) as log:
        first, last = log.append([b'{"EventID": 1}', b'{"EventID": 4688}'])
        for offset, record in log.read(log.committed):
            ...
        log.commit(last + 1)
        log.retain()
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import threading
import zlib
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from itertools import accumulate
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, Self

from vigil.errors import VigilError

MAGIC = 0xA7  # the frame format's version: another format gets another byte
_FRAME = struct.Struct("<BII")
HEADER = _FRAME.size
SUFFIX = ".seg"
STRIDE = 128  # records between two entries of a segment's sparse index
_CHUNK = 1 << 20  # bytes read at a time when walking a segment
_COMMITTED = "committed"
_LOCK = "lock"
_NAME_DIGITS = 20

_sync_data = os.fdatasync if hasattr(os, "fdatasync") else os.fsync


class SegmentLogError(VigilError):
    """The segment log cannot do what was asked. The message names the folder or file."""


class SegmentLockedError(SegmentLogError):
    """Another process, or another `SegmentLog` in this one, owns the folder."""


class SegmentCorruptError(SegmentLogError):
    """A record that should be intact is damaged."""

    def __init__(self, path: Path, position: int, offset: int, reason: str) -> None:
        super().__init__(f"{path}: damaged record at byte {position} (offset {offset}): {reason}")
        self.path = path
        self.position = position
        self.offset = offset


class OffsetRetainedError(SegmentLogError):
    """The records asked for were deleted by `retain` (they were below the committed position)."""


class CommitError(SegmentLogError):
    """A commit that would move the consumer's position backwards or past the end."""


class _BadFrame(Exception):
    def __init__(self, position: int, reason: str) -> None:
        super().__init__(reason)
        self.position = position
        self.reason = reason


class _Segment:
    """One segment file. `index[k]` is the byte position of record `first + k * STRIDE`."""

    __slots__ = ("count", "fd", "first", "index", "path", "size")

    def __init__(self, first: int, path: Path) -> None:
        self.first = first
        self.path = path
        self.count = 0  # records in the file
        self.size = 0  # bytes of whole frames written
        self.index: list[int] | None = None  # built lazily for segments below `committed`
        self.fd = -1  # open for writing while this is the last segment


class SegmentLog:
    """A durable append-only log of byte records in one folder. Safe for many threads."""

    def __init__(self, folder: Path, *, segment_bytes: int = 64 << 20, fsync: bool = True) -> None:
        if segment_bytes < 1:
            raise ValueError(f"segment_bytes must be positive, not {segment_bytes}")
        self.folder = Path(folder)
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.recovered: dict[str, Any] = {"bytes": 0, "records": 0}
        """What opening cut off the last segment: `bytes` and `records` (frames begun in the
        cut bytes). When something was cut it also has `segment`, `position`, `reason` and
        `saved_as` (the `.bad` file that keeps the cut bytes)."""
        self.syncs = 0  # fsyncs done for appends (group commit: far fewer than appends)
        self._cond = threading.Condition(threading.Lock())
        self._index_lock = threading.Lock()
        self._commit_lock = threading.Lock()
        self._syncing = False  # a leader is in fdatasync, the lock released
        self._rolling = False  # an append waits to roll over: no new leader until it has
        self._closed = False
        self._failed: SegmentLogError | None = None
        created = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        if created and fsync:
            _sync_folder(self.folder.parent)
        self._lock_fd = self._take_lock()
        try:
            self._committed = self._read_committed()
            self._segments = self._open_segments()
            last = self._segments[-1]
            if last.fd < 0:
                last.fd = os.open(last.path, os.O_RDWR | os.O_CLOEXEC)
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._firsts = [segment.first for segment in self._segments]
        self._written = last.first + last.count  # next offset to write
        self._durable = self._written  # every record below is synced

    # --- opening -------------------------------------------------------------------------

    def _take_lock(self) -> int:
        fd = os.open(self.folder / _LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise SegmentLockedError(
                f"{self.folder}: segment log in use by another process (pid {holder}); "
                "one process at a time may own it"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def _read_committed(self) -> int:
        return load_position(self.folder / _COMMITTED)

    def _open_segments(self) -> list[_Segment]:
        for leftover in self.folder.glob(f"{_COMMITTED}.*.tmp"):
            leftover.unlink(missing_ok=True)  # a commit that crashed before its rename
        firsts = sorted(
            int(path.stem)
            for path in self.folder.glob("*" + SUFFIX)
            if len(path.stem) == _NAME_DIGITS and path.stem.isdigit()
        )
        if not firsts:
            if self._committed:
                raise SegmentLogError(
                    f"{self.folder}: no segment files, yet records below {self._committed} "
                    "were committed: the segments were removed"
                )
            return [self._create_segment(0)]
        if self._committed < firsts[0]:
            raise SegmentLogError(
                f"{self.folder}: records {self._committed} to {firsts[0] - 1} are missing: "
                f"not yet processed, but the first segment starts at {firsts[0]}"
            )
        segments = []
        for first, following in zip(firsts, [*firsts[1:], None], strict=True):
            segment = _Segment(first, self._path(first))
            if following is None:
                self._recover_tail(segment)
            else:
                segment.count = following - first
                if following > self._committed:  # holds unprocessed records: check them now
                    self._check_sealed(segment)
                else:
                    segment.size = segment.path.stat().st_size
            segments.append(segment)
        last = segments[-1]
        if self._committed > last.first + last.count:
            if last.fd >= 0:
                os.close(last.fd)
            raise SegmentLogError(
                f"{self.folder}: committed position {self._committed} is past the last record "
                f"({last.first + last.count - 1}): records were lost"
            )
        return segments

    def _check_sealed(self, segment: _Segment) -> None:
        """Walk a segment that is not the last one: every frame must be intact, and the
        count must match the next file's name."""
        index, count, good, bad = _scan(segment.path)
        if bad is not None:
            raise SegmentCorruptError(segment.path, bad.position, segment.first + count, bad.reason)
        if count != segment.count:
            raise SegmentCorruptError(
                segment.path,
                good,
                segment.first + count,
                f"the segment ends after {count} records, but the next segment starts at "
                f"offset {segment.first + segment.count}",
            )
        segment.index, segment.size = index, good

    def _recover_tail(self, segment: _Segment) -> None:
        index, count, good, bad = _scan(segment.path)
        segment.index, segment.count, segment.size = index, count, good
        if bad is None:
            return
        fd = os.open(segment.path, os.O_RDWR | os.O_CLOEXEC)
        try:
            tail = os.pread(fd, os.fstat(fd).st_size - good, good)
            saved = segment.path.with_name(f"{segment.path.name}.{good}.bad")
            saved_fd = os.open(saved, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                _write_all(saved_fd, tail, 0)
                if self.fsync:
                    os.fsync(saved_fd)
            finally:
                os.close(saved_fd)
            os.ftruncate(fd, good)
            if self.fsync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        segment.fd = fd  # the last segment: kept open for appends
        self._sync_dir()
        self.recovered = {
            "bytes": len(tail),
            "records": _frames_begun(tail),
            "segment": str(segment.path),
            "position": good,
            "reason": bad.reason,
            "saved_as": str(saved),
        }

    def _create_segment(self, first: int) -> _Segment:
        segment = _Segment(first, self._path(first))
        fd = os.open(segment.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            self._sync_dir()  # the file's name must survive a crash before its records do
        except BaseException:
            os.close(fd)
            raise
        segment.fd, segment.index = fd, []
        return segment

    def _path(self, first: int) -> Path:
        return self.folder / f"{first:0{_NAME_DIGITS}d}{SUFFIX}"

    def _sync_dir(self) -> None:
        if self.fsync:
            _sync_folder(self.folder)

    # --- writing -------------------------------------------------------------------------

    def append(self, records: Sequence[bytes]) -> tuple[int, int]:
        """Append records and return their (first, last) offsets once they are on disk.
        No records: nothing is written and the result is (end, end - 1)."""
        count = len(records)
        if not count:
            with self._cond:
                self._check_usable()
                return self._durable, self._durable - 1
        pack, crc32 = _FRAME.pack, zlib.crc32
        try:
            headers = [pack(MAGIC, len(record), crc32(record)) for record in records]
        except struct.error:
            raise ValueError("a record is longer than 4 GiB - 1 bytes") from None
        parts = [b""] * (2 * count)
        parts[::2] = headers
        parts[1::2] = records
        data = b"".join(parts)
        payload_ends = list(accumulate(map(len, records)))
        with self._cond:
            self._check_usable()
            segment = self._segments[-1]
            while segment.size and segment.size + len(data) > self.segment_bytes:
                self._roll_over()
                self._check_usable()
                segment = self._segments[-1]
            first, base = self._written, segment.size
            try:
                _write_all(segment.fd, data, base)
            except OSError as error:
                _truncate_quietly(segment.fd, base)
                raise SegmentLogError(f"{segment.path}: cannot write: {error}") from error
            index = segment.index
            assert index is not None
            for j in range(-(first - segment.first) % STRIDE, count, STRIDE):
                index.append(base + HEADER * j + (payload_ends[j - 1] if j else 0))
            segment.size = base + len(data)
            segment.count += count
            self._written = first + count
            if self.fsync:
                self._await_durable(self._written)
            else:
                self._durable = self._written
                self._cond.notify_all()
        return first, first + count - 1

    def _await_durable(self, target: int) -> None:
        """With the lock held: return once every record below `target` is synced. The first
        thread that finds no sync running syncs all that is written (the leader), the lock
        released meanwhile so others can write; the rest wait for it (group commit)."""
        while self._durable < target:
            if self._failed is not None:
                raise self._failed
            if self._syncing or self._rolling:
                self._cond.wait()
                continue
            self._syncing = True
            upto, fd = self._written, self._segments[-1].fd
            failure: OSError | None = None
            self._cond.release()
            try:
                _sync_data(fd)
            except OSError as error:
                failure = error
            finally:
                self._cond.acquire()
                self._syncing = False
                self._cond.notify_all()
            if failure is not None:
                self._fail(self._segments[-1].path, failure)
            self.syncs += 1
            self._durable = max(self._durable, upto)

    def _roll_over(self) -> None:
        """With the lock held: start a new segment, once no leader is syncing the last one.
        The old one is synced first, so a torn write can only be in the last segment. Returns
        without rolling if it had to wait. The caller checks again."""
        if self._syncing:
            self._rolling = True
            self._cond.wait()
            return
        old = self._segments[-1]
        try:
            if self.fsync:
                try:
                    _sync_data(old.fd)
                except OSError as error:
                    self._fail(old.path, error)
                self.syncs += 1
            new = self._create_segment(self._written)
        finally:
            self._rolling = False
            self._cond.notify_all()
        os.close(old.fd)
        old.fd = -1
        self._segments.append(new)
        self._firsts.append(new.first)
        self._durable = self._written

    def _fail(self, path: Path, error: OSError) -> NoReturn:
        # after a failed fsync the kernel may have dropped the pages: nothing written since the
        # last good sync can be trusted, so no append may be acknowledged any more
        self._failed = SegmentLogError(
            f"{path}: fsync failed ({error}); the log must be closed and opened again"
        )
        self._cond.notify_all()
        raise self._failed from error

    def _check_usable(self) -> None:
        if self._closed:
            raise SegmentLogError(f"{self.folder}: the segment log is closed")
        if self._failed is not None:
            raise self._failed

    # --- the consumer --------------------------------------------------------------------

    @property
    def end(self) -> int:
        """The next offset to be written: the number of records ever durably appended."""
        return self._durable

    @property
    def first(self) -> int:
        """The first offset still kept (records below were deleted by `retain`)."""
        with self._cond:
            return self._segments[0].first

    @property
    def committed(self) -> int:
        """The consumer's position: every record below it has been processed."""
        return self._committed

    def lag(self) -> int:
        """Records appended but not yet processed."""
        return self._durable - self._committed

    def wait(self, offset: int, timeout: float) -> bool:
        """Block until record `offset` can be read (`end > offset`), for at most `timeout` s."""
        with self._cond:
            self._cond.wait_for(lambda: self._durable > offset or self._closed, timeout)
            return self._durable > offset

    def read(
        self, start: int, max_records: int = 10_000, max_bytes: int = 16 << 20
    ) -> list[tuple[int, bytes]]:
        """Up to `max_records` (offset, record) pairs from `start` on, in order, only durable
        ones. Their payloads add up to at most `max_bytes`, but the first record is returned
        whatever its size. Empty when `start >= end`."""
        if start < 0 or max_records < 1 or max_bytes < 1:
            raise ValueError(f"read({start}, {max_records}, {max_bytes}): out of range")
        with self._cond:
            self._check_usable()
            durable = self._durable
            kept = self._segments[0].first
            if start < kept:
                raise self._retained(start, kept)
            if start >= durable:
                return []
            i = bisect_right(self._firsts, start) - 1
            chain = [(segment, segment.size) for segment in self._segments[i:]]
        out: list[tuple[int, bytes]] = []
        budget = max_bytes
        offset = start
        for segment, size in chain:
            if offset >= durable:
                break
            try:
                index = self._index_of(segment)
                fd = os.open(segment.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:  # retained since the lock was released
                raise self._retained(offset, self.first) from None
            k = (offset - segment.first) // STRIDE
            at = segment.first + k * STRIDE
            try:
                for _, payload in _walk(fd, index[k], size):
                    if at >= durable:
                        break
                    if at >= offset:
                        if out and len(payload) > budget:
                            return out
                        out.append((at, bytes(payload)))
                        budget -= len(payload)
                        if len(out) >= max_records:
                            return out
                    at += 1
            except _BadFrame as bad:
                raise SegmentCorruptError(segment.path, bad.position, at, bad.reason) from None
            finally:
                os.close(fd)
            offset = at
        return out

    def _index_of(self, segment: _Segment) -> list[int]:
        index = segment.index
        if index is None:
            with self._index_lock:
                if segment.index is None:
                    self._check_sealed(segment)
                index = segment.index
            assert index is not None
        return index

    def _retained(self, offset: int, kept: int) -> OffsetRetainedError:
        return OffsetRetainedError(
            f"{self.folder}: offset {offset} is no longer kept: the log starts at {kept} "
            f"(records below the committed position {self._committed} may be deleted)"
        )

    def commit(self, offset: int) -> None:
        """Record that every record below `offset` is processed, durably and atomically.
        The same position again is a no-op. A lower one, or one past `end`, raises."""
        with self._commit_lock:
            with self._cond:
                self._check_usable()
                committed, end = self._committed, self._durable
            if offset < committed:
                raise CommitError(
                    f"{self.folder}: commit {offset} would go back from the committed {committed}"
                )
            if offset > end:
                raise CommitError(f"{self.folder}: commit {offset} is past the end {end}")
            if offset == committed:
                return
            save_position(self.folder, _COMMITTED, offset, fsync=self.fsync)
            with self._cond:
                self._committed = offset

    def retain(self) -> int:
        """Delete the segment files whose records are all below `committed` (never the last
        one); return how many were deleted."""
        with self._cond:
            self._check_usable()
            count = max(0, bisect_right(self._firsts, self._committed) - 1)
            doomed = self._segments[:count]
            del self._segments[:count]
            del self._firsts[:count]
        for segment in doomed:
            segment.path.unlink(missing_ok=True)
        if doomed:
            self._sync_dir()
        return len(doomed)

    # --- closing -------------------------------------------------------------------------

    def close(self) -> None:
        """Sync what is written, close the files and release the folder. Calling it again
        does nothing."""
        with self._cond:
            if self._closed:
                return
            while self._syncing:
                self._cond.wait()
            self._closed = True
            last = self._segments[-1]
            try:
                if self.fsync and self._failed is None and self._written > self._durable:
                    try:
                        _sync_data(last.fd)
                    except OSError as error:
                        self._fail(last.path, error)
                    self.syncs += 1
                if self._failed is None:
                    self._durable = self._written
            finally:
                os.close(last.fd)
                last.fd = -1
                os.close(self._lock_fd)
                self._cond.notify_all()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _walk(fd: int, position: int, stop: int) -> Iterator[tuple[int, memoryview]]:
    """The frames of an open segment from byte `position` up to byte `stop`, as (position,
    payload). Raises `_BadFrame` at the first one that is cut short, has another magic byte
    or fails its CRC. Reads a chunk at a time. A payload is a view into that chunk."""
    chunk = memoryview(b"")
    base = position  # file position of chunk[0]
    while position < stop:
        at = position - base
        if at + HEADER > len(chunk):
            chunk, base, at = _load(fd, position, min(stop - position, _CHUNK)), position, 0
            if len(chunk) < HEADER:
                raise _BadFrame(position, f"frame header cut short ({len(chunk)} bytes)")
        magic, length, crc = _FRAME.unpack_from(chunk, at)
        if magic != MAGIC:
            raise _BadFrame(position, f"magic byte 0x{magic:02x}, not 0x{MAGIC:02x}")
        end = at + HEADER + length
        if end > len(chunk):
            if position + HEADER + length > stop:
                raise _BadFrame(position, f"payload of {length} bytes cut short")
            want = min(stop - position, max(_CHUNK, HEADER + length))
            chunk, base, at = _load(fd, position, want), position, 0
            end = HEADER + length
            if end > len(chunk):
                raise _BadFrame(position, f"payload of {length} bytes cut short")
        payload = chunk[at + HEADER : end]
        if zlib.crc32(payload) != crc:
            raise _BadFrame(position, "CRC32 of the payload does not match")
        yield position, payload
        position += HEADER + length


def _load(fd: int, position: int, size: int) -> memoryview:
    return memoryview(os.pread(fd, size, position))


def _scan(path: Path) -> tuple[list[int], int, int, _BadFrame | None]:
    """Walk a whole segment file: (sparse index, records, bytes of good frames, first damage)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        index: list[int] = []
        count = 0
        try:
            for position, _ in _walk(fd, 0, size):
                if count % STRIDE == 0:
                    index.append(position)
                count += 1
        except _BadFrame as bad:
            return index, count, bad.position, bad
        return index, count, size, None
    finally:
        os.close(fd)


def _frames_begun(tail: bytes) -> int:
    """How many frames were begun in bytes cut off a segment: those whose headers can be
    followed from the start, a partial header counting as one."""
    count = at = 0
    while at < len(tail) and tail[at] == MAGIC:
        count += 1
        if at + HEADER > len(tail):
            break
        _, length, _ = _FRAME.unpack_from(tail, at)
        at += HEADER + length
    return count


def load_position(path: Path) -> int:
    """A consumer's position as `save_position` wrote it (0 when there is none yet)."""
    try:
        text = path.read_text("ascii").strip()
    except FileNotFoundError:
        return 0
    except (OSError, UnicodeDecodeError) as error:
        raise SegmentLogError(f"{path}: cannot read the committed position: {error}") from None
    if not text.isdigit():
        raise SegmentLogError(f"{path}: not a committed position: {text[:40]!r}")
    return int(text)


def save_position(folder: Path, name: str, position: int, *, fsync: bool) -> None:
    """A consumer's position as the file `folder/name`, replaced atomically (a crash leaves
    the old one or the new one, and at most a `name.<pid>.tmp` to delete), durable on
    return with `fsync`."""
    temporary = folder / f"{name}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        _write_all(fd, f"{position}\n".encode("ascii"), 0)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, folder / name)
    if fsync:
        _sync_folder(folder)


def _write_all(fd: int, data: bytes, position: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, position)
        view = view[written:]
        position += written


def _truncate_quietly(fd: int, size: int) -> None:
    # a failed write may have left part of its frames behind: drop them, so the next write
    # starts at a frame boundary (and if this fails too, reopening cuts them as a torn tail)
    with contextlib.suppress(OSError):
        os.ftruncate(fd, size)


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = [
    "CommitError",
    "OffsetRetainedError",
    "SegmentCorruptError",
    "SegmentLockedError",
    "SegmentLog",
    "SegmentLogError",
    "load_position",
    "save_position",
]
