"""A durable, append-only segment log: the intake write-ahead log of `vigil serve`.

Records are opaque byte strings with global, consecutive offsets from 0. Each is framed as
`magic (1 byte) | length (u32) | CRC32 (u32) | payload` in segment files named by their first
offset (`00000000000000000000.seg`). `append` returns once the records are on disk (fsync):
concurrent appends share one fsync (group commit). The consumer's position (`commit`) is kept
in `committed` (written to a temporary file, fsync'd, renamed). On open, a torn tail of the
last segment (a record cut short or failing its CRC, from a crash mid-write) is cut off and
reported in `recovered`; a damaged record inside an older segment raises, naming the file and
position. One process owns a folder (an exclusive lock).
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
import zlib
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from vigil.errors import VigilError

MAGIC = 0xA7
_FRAME = struct.Struct("<BII")
SUFFIX = ".seg"


class SegmentLogError(VigilError):
    """The log cannot be used: locked by another process, damaged, or asked for records it
    no longer keeps."""


class _Segment:
    __slots__ = ("first", "path", "positions", "size")

    def __init__(self, first: int, path: Path) -> None:
        self.first = first
        self.path = path
        self.positions: list[int] = []  # byte position of each record
        self.size = 0


class SegmentLog:
    def __init__(self, folder: Path, *, segment_bytes: int = 64 << 20, fsync: bool = True) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self._lock_file = (self.folder / "lock").open("w")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            raise SegmentLogError(f"{self.folder}: used by another process") from None
        self.recovered: dict[str, int] = {"bytes": 0}
        self._segments: list[_Segment] = []
        self._load()
        self._committed = self._read_committed()
        self._durable = self._end  # records up to here are fsync'd
        self._write = threading.Lock()  # one writer of the file at a time
        self._changed = threading.Condition()
        self._syncing = False
        last = self._segments[-1]
        self._file = open(last.path, "ab")  # noqa: SIM115 - kept open for appends

    # --- opening ---------------------------------------------------------------------------

    def _load(self) -> None:
        files = sorted(self.folder.glob("*" + SUFFIX))
        for index, path in enumerate(files):
            segment = _Segment(int(path.stem), path)
            data = path.read_bytes()
            position = 0
            while position < len(data):
                if position + _FRAME.size > len(data):
                    break
                magic, length, crc = _FRAME.unpack_from(data, position)
                end = position + _FRAME.size + length
                if magic != MAGIC or end > len(data):
                    break
                if zlib.crc32(memoryview(data)[position + _FRAME.size : end]) != crc:
                    break
                segment.positions.append(position)
                position = end
            if position < len(data):
                if index != len(files) - 1:
                    raise SegmentLogError(f"{path}: damaged record at byte {position}")
                with path.open("r+b") as handle:
                    handle.truncate(position)
                    os.fsync(handle.fileno())
                self.recovered["bytes"] += len(data) - position
            segment.size = position
            expected = (
                self._segments[-1].first + len(self._segments[-1].positions)
                if (self._segments)
                else segment.first
            )
            if segment.first != expected:
                raise SegmentLogError(f"{path}: expected a segment starting at {expected}")
            self._segments.append(segment)
        if not self._segments:
            self._segments.append(self._new_segment(0))
        last = self._segments[-1]
        self._end = last.first + len(last.positions)

    def _new_segment(self, first: int) -> _Segment:
        path = self.folder / f"{first:020d}{SUFFIX}"
        path.touch()
        self._sync_dir()
        return _Segment(first, path)

    def _sync_dir(self) -> None:
        if self.fsync:
            descriptor = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)

    def _read_committed(self) -> int:
        path = self.folder / "committed"
        try:
            return int(path.read_text().strip() or 0)
        except FileNotFoundError:
            return 0
        except ValueError:
            raise SegmentLogError(f"{path}: damaged") from None

    # --- writing ---------------------------------------------------------------------------

    def append(self, records: Sequence[bytes]) -> tuple[int, int]:
        if not records:
            return self._end, self._end - 1
        frames = []
        for record in records:
            frames.append(_FRAME.pack(MAGIC, len(record), zlib.crc32(record)))
            frames.append(record)
        data = b"".join(frames)
        with self._write:
            segment = self._segments[-1]
            if segment.size and segment.size + len(data) > self.segment_bytes:
                self._file.flush()
                if self.fsync:
                    os.fsync(self._file.fileno())
                self._file.close()
                segment = self._new_segment(self._end)
                self._segments.append(segment)
                self._file = open(segment.path, "ab")  # noqa: SIM115
            position = segment.size
            for record in records:
                segment.positions.append(position)
                position += _FRAME.size + len(record)
            self._file.write(data)
            segment.size = position
            first = self._end
            self._end += len(records)
            self._file.flush()
        self._sync(first + len(records))
        return first, first + len(records) - 1

    def _sync(self, target: int) -> None:
        """Make every record before `target` durable: one thread (the leader) fsyncs for all
        the appends written so far, the others wait for it (group commit)."""
        with self._changed:
            while self._durable < target and self._syncing:
                self._changed.wait()
            if self._durable >= target:
                return
            self._syncing = True
        upto = self._durable
        try:
            with self._write:
                upto = self._end
                self._file.flush()
                descriptor = os.dup(self._file.fileno())
            try:
                if self.fsync:
                    os.fsync(descriptor)
            finally:
                os.close(descriptor)
        finally:
            with self._changed:
                self._syncing = False
                self._durable = max(self._durable, upto)
                self._changed.notify_all()

    def commit(self, offset: int) -> None:
        if offset < self._committed:
            raise SegmentLogError(f"commit {offset} is before the committed {self._committed}")
        if offset > self._durable:
            raise SegmentLogError(f"commit {offset} is past the end {self._durable}")
        path = self.folder / "committed"
        temporary = path.with_suffix(".tmp")
        with temporary.open("w") as handle:
            handle.write(str(offset))
            handle.flush()
            if self.fsync:
                os.fsync(handle.fileno())
        os.replace(temporary, path)
        self._sync_dir()
        self._committed = offset

    def retain(self) -> int:
        """Delete segments wholly below the committed position; how many were deleted."""
        deleted = 0
        with self._write:
            while len(self._segments) > 1:
                segment, following = self._segments[0], self._segments[1]
                if following.first > self._committed:
                    break
                segment.path.unlink()
                self._segments.pop(0)
                deleted += 1
        return deleted

    # --- reading ---------------------------------------------------------------------------

    @property
    def end(self) -> int:
        return self._durable

    @property
    def committed(self) -> int:
        return self._committed

    def lag(self) -> int:
        return self._durable - self._committed

    def wait(self, offset: int, timeout: float) -> bool:
        with self._changed:
            if self._durable > offset:
                return True
            self._changed.wait(timeout)
            return self._durable > offset

    def read(
        self, start: int, max_records: int = 10_000, max_bytes: int = 16 << 20
    ) -> list[tuple[int, bytes]]:
        end = min(self._durable, start + max_records)
        if start >= end:
            return []
        with self._write:
            segments = list(self._segments)
        if start < segments[0].first:
            raise SegmentLogError(f"offset {start} is no longer kept (from {segments[0].first})")
        out: list[tuple[int, bytes]] = []
        size = 0
        for segment in segments:
            stop = segment.first + len(segment.positions)
            if stop <= start or segment.first >= end:
                continue
            with segment.path.open("rb") as handle:
                offset = max(start, segment.first)
                handle.seek(segment.positions[offset - segment.first])
                last = min(end, stop)
                begin = segment.positions[offset - segment.first]
                finish = (
                    segment.positions[last - segment.first]
                    if last - segment.first < len(segment.positions)
                    else segment.size
                )
                data = handle.read(finish - begin)
            position = 0
            while offset < last and position < len(data):
                _, length, _ = _FRAME.unpack_from(data, position)
                payload = data[position + _FRAME.size : position + _FRAME.size + length]
                out.append((offset, payload))
                size += len(payload)
                position += _FRAME.size + length
                offset += 1
                if size >= max_bytes:
                    return out
            start = offset
        return out

    def close(self) -> None:
        with self._write:
            if not self._file.closed:
                self._file.flush()
                if self.fsync:
                    os.fsync(self._file.fileno())
                self._file.close()
        self._lock_file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
