"""What every reader shares: the per-file report, rejects, and opened inputs."""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from isal import isal_zlib

from vigil.errors import InputError

T = TypeVar("T")
GZIP_MAGIC = b"\x1f\x8b"
# Inputs are read whole into memory only up to this size; larger inputs stream.
MAX_WHOLE_READ = 512 * 1024 * 1024
# Line-based inputs are read in chunks of this size.
CHUNK = 1 << 22
# How deep a JSON record may nest objects and arrays. Real logs stay under ten levels; a
# record past this is set aside at intake, before anything downstream (flattening, the
# Parquet writer, alert serialisation) has to walk it.
MAX_DEPTH = 64


@dataclass(slots=True)
class Problem:
    """A record set aside (reject) or a file-level finding (warning), with where and why."""

    record: int | str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"record": self.record, "reason": self.reason}


@dataclass
class FileReport:
    """What reading one file gave: counts, rejects with reasons, and file-level warnings."""

    path: str
    format: str = "unknown"
    records_read: int = 0
    records_rejected: int = 0
    rejects: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    detections: int = 0
    forced: str | None = None  # the format the user named, instead of detecting it
    keep_raw: bool = False  # keep each rejected record's text in `set_aside`
    set_aside: list[dict[str, Any]] = field(default_factory=list)

    # A hostile file could hold millions of bad records: count them all, keep the first ones.
    MAX_KEPT = 1000
    MAX_SET_ASIDE = 100_000

    def reject(
        self, record: int | str | None, reason: str, count: int = 1, raw: bytes | None = None
    ) -> None:
        """Set a record aside (or `count` records, e.g. a range lost together), with its text
        when the reader has it and `keep_raw` asks for it."""
        self.records_rejected += count
        if len(self.rejects) < self.MAX_KEPT:
            self.rejects.append(Problem(record, reason))
        if self.keep_raw:
            if len(self.set_aside) < self.MAX_SET_ASIDE:
                text = raw.decode("utf-8", "replace") if raw is not None else None
                self.set_aside.append(
                    {"file": self.path, "record": record, "reason": reason, "raw": text}
                )
            elif len(self.set_aside) == self.MAX_SET_ASIDE:
                self.set_aside.append(
                    {
                        "file": self.path,
                        "record": None,
                        "raw": None,
                        "reason": f"over {self.MAX_SET_ASIDE:,} rejects: the rest only counted",
                    }
                )

    def warn(self, where: int | str | None, reason: str) -> None:
        if len(self.warnings) < self.MAX_KEPT:
            self.warnings.append(Problem(where, reason))

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "records_read": self.records_read,
            "records_rejected": self.records_rejected,
            "rejects": [p.as_dict() for p in self.rejects],
            "warnings": [p.as_dict() for p in self.warnings],
            "detections": self.detections,
        }


def too_deep(value: Any, text: bytes | bytearray | None = None, limit: int = MAX_DEPTH) -> bool:
    """Whether a decoded JSON value nests objects and arrays more than `limit` deep. Given
    its `text`, a record with no more brackets than `limit` is passed without a walk."""
    if text is not None and text.count(b"{") + text.count(b"[") <= limit:
        return False
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is dict:
            children = item.values()
        elif kind is list:
            children = item
        else:
            continue
        if depth > limit:
            return True
        for child in children:
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1))
    return False


@dataclass(slots=True)
class Input:
    """One log stream to read: a file, a gzip'd file, or a member of a zip archive."""

    name: str
    opener: Callable[[], IO[bytes]]
    compressed: bool = False
    not_log: str | None = None  # why this input is known not to be a log, when it is

    def open(self) -> IO[bytes]:
        return self.opener()

    def read_all(self, report: FileReport | None = None) -> bytes:
        with self.open() as stream:
            data = _read_first(stream, MAX_WHOLE_READ + 1, whole=True)
            if report is not None:
                self.finish(stream, report)
        if len(data) > MAX_WHOLE_READ:
            raise InputError(
                f"{self.name}: larger than {MAX_WHOLE_READ >> 20} MiB once decompressed"
            )
        return data

    def head(self, size: int = 4096) -> bytes:
        with self.open() as stream:
            return _read_first(stream, size)

    @staticmethod
    def finish(stream: IO[bytes], report: FileReport) -> None:
        """Report what the decompressor noticed (truncation, trailing garbage) once read."""
        problem = getattr(getattr(stream, "raw", stream), "problem", None)
        if problem:
            report.warn(None, problem)


def file_input(path: Path) -> Input:
    """An `Input` for a path; gzip content (known by its magic, not its name) is gunzipped."""
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == GZIP_MAGIC:
        return Input(str(path), lambda: gunzipped(path.open("rb")), compressed=True)
    return Input(str(path), lambda: path.open("rb"))


def gunzipped(stream: IO[bytes]) -> IO[bytes]:
    """A reader of the decompressed content of a gzip stream (all members)."""
    return io.BufferedReader(_GzipReader(stream))


def maybe_gunzipped(stream: IO[bytes]) -> IO[bytes]:
    """The stream itself, or its decompressed content when it starts with the gzip magic."""
    buffered: Any = stream
    if not hasattr(buffered, "peek"):
        buffered = io.BufferedReader(buffered)
    if buffered.peek(2)[:2] == GZIP_MAGIC:
        return gunzipped(buffered)
    return buffered  # type: ignore[no-any-return]


def _read_first(stream: IO[bytes], size: int, *, whole: bool = False) -> bytes:
    """`stream.read(size)` of a stream just opened. Gzip content is inflated up to `size`
    bytes and no further, straight from the decompressor (not through the buffered reader's
    buffer, which would inflate a block more than a short read asks for). `whole`: the
    caller wants all of it (a whole file), so a clean gzip is inflated in one call."""
    raw = getattr(stream, "raw", None)
    if isinstance(raw, _GzipReader) and not raw.started:
        if whole:
            data = raw.inflate_whole(size)
            if data is not None:
                return data
        return raw.read_upto(size)
    return stream.read(size)


def _drain(stream: IO[bytes]) -> int:
    """How many bytes are left in a stream (read and dropped in blocks)."""
    total = 0
    while block := stream.read(1 << 16):
        total += len(block)
    return total


class _GzipReader(io.RawIOBase):
    """Streams gzip data; trailing garbage after the last member ends the stream instead of
    raising, so a gzip with a stray trailing byte still yields all of its data.

    Inflates no more than it is asked for: reading the first bytes of a file (to sniff its
    format) inflates a few KiB, not the whole first block of compressed data. The compressed
    data is read (and inflated) in blocks of STEP bytes, so a corrupt block loses at most
    what that block held."""

    STEP = 1 << 13

    def __init__(self, stream: IO[bytes]) -> None:
        self._file = stream
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._input = b""  # compressed data read but not inflated yet
        self._pending = b""  # inflated but not handed out yet (only what ends the stream)
        self._eof = False
        self.problem: str | None = None
        self._inflated = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._inflate_some(len(view))
        size = len(data)
        view[:size] = data
        return size

    @property
    def started(self) -> bool:
        """Whether anything was read yet (and may sit in a buffered reader's buffer)."""
        return self._inflated > 0 or self._eof or bool(self._input)

    def inflate_whole(self, limit: int) -> bytes | None:
        """All of the content at once, by ISA-L (about four times as fast as zlib here), when
        it is one gzip member shorter than `limit` bytes whose checksum holds; None otherwise,
        and the stream reads on from its start the careful way (damage, several members,
        trailing bytes and sizes past the limit are found and reported there)."""
        packed = self._file.read()
        self._file = io.BytesIO(packed)  # what the careful way reads, block by block
        try:
            inflate = isal_zlib.decompressobj(16 + zlib.MAX_WBITS)
            data = inflate.decompress(packed, limit)
        except Exception:  # isal_zlib.error (typed loosely); the careful way says what it is
            return None
        if not inflate.eof or inflate.unused_data or len(data) >= limit:
            return None
        self._eof = True
        self._inflated = len(data)
        return data

    def read_upto(self, limit: int) -> bytes:
        """The rest of the content, up to `limit` bytes (what lies past them is not
        inflated), in one piece."""
        first = self._inflate_some(limit)
        total = len(first)
        data = self._inflate_some(limit - total) if first and total < limit else b""
        if not data:
            return first
        whole = io.BytesIO()  # grows in place; its value is taken without a copy
        whole.write(first)
        while data:
            whole.write(data)
            total += len(data)
            data = self._inflate_some(limit - total) if total < limit else b""
        return whole.getvalue()

    def _inflate_some(self, limit: int) -> bytes:
        """At most `limit` more bytes of the content; none only at its end (or when asked
        for none: to zlib a `max_length` of 0 means no limit)."""
        if limit <= 0:
            return b""
        if self._pending:
            data, self._pending = self._pending[:limit], self._pending[limit:]
            return data
        while not self._eof:
            chunk = self._input or self._file.read(self.STEP)
            if not chunk:
                self._end_of_input()
                return self._inflate_some(limit)
            try:
                data = self._inflate.decompress(chunk, limit)
            except zlib.error as exc:
                self._corrupt(exc)
                return b""
            self._input = self._inflate.unconsumed_tail
            self._inflated += len(data)
            if self._inflate.eof:
                self._next_member()
            if data:
                return data
        return b""

    def _end_of_input(self) -> None:
        """The compressed data ended (all of it given to the inflater): what is left."""
        self._eof = True
        try:
            self._pending = self._inflate.flush()
        except zlib.error as exc:
            self._corrupt(exc)
            return
        self._inflated += len(self._pending)
        if not self._inflate.eof:
            self.problem = f"gzip stream truncated after {self._inflated} bytes; read up to there"

    def _corrupt(self, exc: zlib.error) -> None:
        self.problem = f"gzip data corrupt after {self._inflated} bytes ({exc}); read up to there"
        self._eof = True

    def _next_member(self) -> None:
        """End of one gzip member: another member may follow, or garbage, or nothing."""
        rest = self._inflate.unused_data
        if len(rest) < 2:  # the member ended at the end of what was read: look further
            rest += self._file.read(2 - len(rest))
            if not rest:
                self._eof = True
                return
        if rest[:2] != GZIP_MAGIC:
            extra = len(rest) + _drain(self._file)
            if rest.strip(b"\0") or extra > 1024:
                self.problem = f"{extra} byte(s) of trailing garbage after the gzip data (ignored)"
            self._eof = True
            return
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._input = rest

    def close(self) -> None:
        self._file.close()
        super().close()


# A line longer than this is set aside (and the reader moves on to the next line) rather than
# held in memory whole.
MAX_LINE = 64 << 20


def read_lines(head: bytes, stream: IO[bytes], report: FileReport) -> Iterator[list[bytes]]:
    """Lines in large chunks (the last line of a chunk waits for the next chunk). A line over
    MAX_LINE becomes an empty line, its number kept, and is rejected."""
    pending = head
    number = 0  # lines handed out so far
    overlong = False  # inside a line already rejected as too long

    def checked(lines: list[bytes], size: int) -> list[bytes]:
        if size > MAX_LINE and max(map(len, lines)) > MAX_LINE:
            for index, line in enumerate(lines):
                if len(line) > MAX_LINE:
                    report.reject(number + index + 1, f"line longer than {MAX_LINE >> 20} MiB")
                    lines[index] = b""
        return lines

    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            if overlong:
                yield [b""]
            elif pending:
                yield checked(pending.split(b"\n"), len(pending))
            return
        pending += chunk
        cut = pending.rfind(b"\n")
        if cut >= 0:
            lines = pending[:cut].split(b"\n")
            pending = pending[cut + 1 :]
            if overlong:  # the end of a line already rejected: not rejected again
                lines[0] = b""
                overlong = False
            lines = checked(lines, cut)
            number += len(lines)
            yield lines
        if len(pending) > MAX_LINE:
            if not overlong:
                report.reject(number + 1, f"line longer than {MAX_LINE >> 20} MiB")
            overlong = True
            pending = b""


def numbered_lines(source: Input, report: FileReport) -> Iterator[tuple[int, bytes]]:
    """The non-blank lines of a text input with their 1-based line numbers (blank lines
    count); what the decompressor noticed is reported once the input is read."""
    number = 0
    with source.open() as stream:
        for lines in read_lines(stream.read(CHUNK), stream, report):
            for line in lines:
                number += 1
                if line and not line.isspace():
                    yield number, line
        Input.finish(stream, report)


def batched(records: Iterable[T], size: int) -> Iterator[list[T]]:
    """Records in lists of `size` (the last may be shorter; none is empty)."""
    batch: list[T] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
