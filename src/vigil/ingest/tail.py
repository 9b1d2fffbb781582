"""Following a growing log file: complete lines in batches, a durable read position, rotation."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import os
import stat
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from vigil.errors import InputError

STATE_VERSION = 1
# How many of a file's first bytes identify it: a file replaced or truncated in place keeps
# its inode but (almost always) not its first line.
HEAD = 256
READ_SIZE = 64 * 1024
MAX_LINE = 1 << 20
POLL = 0.25
# Rotated copies we cannot read as text.
COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".lzma", ".z", ".zip", ".br")

COUNTERS = ("rotations", "truncations", "long_lines", "missing_on_resume")

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TailLine:
    """One line of the file, without its newline."""

    data: bytes
    offset: int  # where the line starts in its file
    inode: int  # which file: after a rotation, lines of two files follow each other


@dataclass(frozen=True, slots=True)
class Position:
    """Where reading goes on: the byte after the last line handed out."""

    inode: int
    device: int
    offset: int


class _Open:
    """A file being read, by descriptor: it stays readable after being renamed or deleted."""

    __slots__ = ("device", "file", "head", "inode", "offset")

    def __init__(self, file: io.FileIO, offset: int) -> None:
        info = os.fstat(file.fileno())
        self.file = file
        self.inode = info.st_ino
        self.device = info.st_dev
        self.offset = offset
        self.head = os.pread(file.fileno(), HEAD, 0)

    @classmethod
    def at(cls, path: Path, offset: int = 0, *, strict: bool = False) -> _Open | None:
        """`path` opened, or None when it does not exist. A file that exists but cannot be
        read is an `InputError` when `strict` (the log itself), else None (a sibling)."""
        try:
            file = io.FileIO(path, "r")
        except FileNotFoundError:
            return None
        except OSError as exc:
            if strict:
                raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
            return None
        try:
            return cls(file, offset)
        except OSError as exc:
            file.close()
            if strict:
                raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
            return None

    def size(self) -> int:
        return os.fstat(self.file.fileno()).st_size

    def same(self, info: os.stat_result | None) -> bool:
        return info is not None and (info.st_ino, info.st_dev) == (self.inode, self.device)

    def close(self) -> None:
        self.file.close()


def _fingerprint(head: bytes) -> str:
    return hashlib.sha256(head).hexdigest()


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except OSError:
        return None


class FileTail:
    """Complete lines appended to `path`, in batches, with the read position saved in
    `state_file` by `commit()`.

        tail = FileTail("/var/log/auth.log", "/var/lib/vigil/auth.log.state")
        tail.commit()  # on a first start: keeps the file it starts with
        while running:
            batch = tail.read_batch(1000)
            process(batch)  # store, forward, ...
            tail.commit()  # only now is the batch done: a crash before this re-reads it

    Delivery is at-least-once up to `commit()`: a new `FileTail` on the same state file
    continues right after the last committed line, so lines read but not committed are read
    again. A consumer that writes its own output makes that exactly-once by saving its
    output position with the read position, in the same atomic write
    (`commit(extra={"output_offset": n})`), and on restart cutting its output back to
    `tail.extra["output_offset"]`. Without a state file, reading starts at the first byte of
    the file at `path` when the `FileTail` is made. A log that exists but cannot be read is
    an `InputError`; one that does not exist yet gives empty batches until it does.

    Rotation, noticed by polling (no inotify):
    - rename and create (logrotate's default): the old file is read to its end, through the
      descriptor kept open, before the new one from its start. The old file's last line is
      delivered even without its newline, since nothing can complete it any more. The
      switch waits until the new file has data: a writer still appending to the renamed
      file, until told to reopen, loses nothing.
    - copytruncate (same file, now shorter than the position, or with other first bytes):
      read again from offset 0, counted in `counters["truncations"]`; what was not read yet
      is read first from the copy, a sibling starting with the same bytes. Lines written
      between the copy and the truncation are in neither; a file truncated before anything
      of it was read cannot be told from one that grew.
    - while the reader was down: the saved file is looked for by inode and device (and its
      first bytes) among the siblings, its rest read first, then each later file in rotation
      order (by modification time, then `path.2` before `path.1` before `path`). A saved
      file found nowhere (deleted, compressed) is counted in `counters["missing_on_resume"]`
      and reading starts at the start of `path`.

    Siblings are the regular files named `path.*` or `path-*` in the same folder (compressed
    ones and the state file left out), taken to be rotations of this log. A line longer than
    `max_line` is handed over in pieces of `max_line` bytes (`counters["long_lines"]`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        state_file: str | os.PathLike[str],
        *,
        max_line: int = MAX_LINE,
    ) -> None:
        if max_line < 1:
            raise InputError(f"{path}: max_line must be positive")
        self.path = Path(os.path.abspath(path))
        self.state_file = Path(os.path.abspath(state_file))
        self.max_line = max_line
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.extra: dict[str, Any] = {}
        """What the caller saved with the last commit (`commit(extra=...)`)."""
        self._current: _Open | None = None
        saved = self._load()
        if saved is not None and "inode" in saved:
            self._resume(saved)
        else:
            # The file at `path` now is where reading starts: a commit right away keeps it so
            # even if it is rotated before anything is read.
            self._current = _Open.at(self.path, strict=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the files (without committing)."""
        if self._current is not None:
            self._current.close()
        self._current = None

    @property
    def position(self) -> Position | None:
        """Where the next line starts; None before the file was first seen."""
        cur = self._current
        return None if cur is None else Position(cur.inode, cur.device, cur.offset)

    # --- reading ---------------------------------------------------------------------------

    def read_batch(self, max_lines: int = 1000) -> list[TailLine]:
        """Up to `max_lines` complete lines from where the last batch ended (or the last
        commit, for a new `FileTail`); an empty list when there is nothing new."""
        out: list[TailLine] = []
        while len(out) < max_lines:
            cur = self._current
            if cur is None:
                cur = self._current = _Open.at(self.path, strict=True)
                if cur is None:
                    break
            self._check_rewritten(cur)
            if self._current is not cur:
                continue  # reading the rest of its copy first
            if cur.same(_stat(self.path)):
                self._read(cur, out, max_lines, final=False)
                break
            # `cur` is not the file at `path` any more: rotated away, or a copy. What comes
            # next is looked for before reading `cur` to its end, so that whatever the writer
            # put in `cur` before starting the next file is read.
            after = self._successor(cur)
            # The file at `path` is only next once it has data: until then the writer may
            # still be appending to `cur`.
            ready = after is not None and (not after.same(_stat(self.path)) or after.size() > 0)
            drained = self._read(cur, out, max_lines, final=ready)
            if not (drained and ready) or after is None:
                if after is not None:
                    after.close()
                break
            self.counters["rotations"] += 1
            log.info("%s: finished a rotated file; reading on in the next one", self.path)
            cur.close()
            self._current = after
        return out

    def _read(self, src: _Open, out: list[TailLine], max_lines: int, final: bool) -> bool:
        """Appends `src`'s complete lines to `out`; True when its end was reached. `final`
        also hands out the last line without a newline."""
        fd, limit = src.file.fileno(), self.max_line
        buf = bytearray()
        start = src.offset  # the file offset of buf[0]
        drained = False
        while len(out) < max_lines:
            chunk = os.pread(fd, READ_SIZE, start + len(buf))
            if not chunk:
                drained = True
                break
            buf += chunk
            pos = 0
            while len(out) < max_lines:
                newline = buf.find(b"\n", pos, pos + limit + 1)
                if newline >= 0:
                    out.append(TailLine(bytes(buf[pos:newline]), start + pos, src.inode))
                    pos = newline + 1
                elif len(buf) - pos > limit:
                    out.append(TailLine(bytes(buf[pos : pos + limit]), start + pos, src.inode))
                    self.counters["long_lines"] += 1
                    pos += limit
                else:
                    break
            del buf[:pos]
            start += pos
        if drained and final and buf:
            out.append(TailLine(bytes(buf), start, src.inode))
            start += len(buf)
        src.offset = start
        return drained

    def _check_rewritten(self, cur: _Open) -> None:
        """copytruncate: the same file, but shorter than what was read, or new first bytes."""
        head = os.pread(cur.file.fileno(), HEAD, 0)
        if cur.offset and (cur.size() < cur.offset or not head.startswith(cur.head)):
            self.counters["truncations"] += 1
            copy = self._find_copy(_fingerprint(cur.head), len(cur.head), cur.offset, cur)
            log.warning(
                "%s: truncated in place; reading again from its start%s",
                self.path,
                ", after the rest of its copy" if copy else "",
            )
            cur.offset = 0
            if copy is not None:
                # The copy's rest first; the truncated file comes after it in rotation order.
                cur.close()
                self._current = copy
                return
        cur.head = head

    async def follow(
        self, max_lines: int = 1000, poll: float = POLL
    ) -> AsyncIterator[list[TailLine]]:
        """Batches as lines arrive, checking every `poll` seconds when there is nothing new.
        Commit after processing each batch; reading waits until the next one is asked for.

            async for batch in tail.follow():
                await store(batch)
                tail.commit()
        """
        while True:
            batch = await asyncio.to_thread(self.read_batch, max_lines)
            if batch:
                yield batch
            else:
                await asyncio.sleep(poll)

    # --- finding files -----------------------------------------------------------------------

    def _siblings(self) -> list[tuple[Path, os.stat_result]]:
        """Regular, uncompressed files named like rotations of `path` (not the state file)."""
        name = self.path.name
        found: list[tuple[Path, os.stat_result]] = []
        try:
            entries = list(os.scandir(self.path.parent))
        except OSError:
            return []
        for entry in entries:
            other = entry.name
            if not other.startswith((name + ".", name + "-")):
                continue
            if other.lower().endswith(COMPRESSED):
                continue
            if Path(entry.path).parent == self.state_file.parent and other.startswith(
                self.state_file.name
            ):
                continue
            try:
                info = entry.stat()
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                found.append((Path(entry.path), info))
        return found

    def _rotation_key(self, name: str, mtime_ns: int) -> tuple[int, int, int, str]:
        """Orders files of this log from oldest to newest: by last write, then by name, as
        logrotate numbers them (`path.2` before `path.1` before `path`)."""
        if name == self.path.name:
            return (mtime_ns, 3, 0, "")
        suffix = name[len(self.path.name) + 1 :]
        if suffix.isdigit():
            return (mtime_ns, 2, -int(suffix), "")
        return (mtime_ns, 1, 0, name)

    def _successor(self, cur: _Open) -> _Open | None:
        """The file written after `cur`, opened at its start."""
        files = self._siblings()
        info = _stat(self.path)
        if info is not None:
            files.append((self.path, info))
        own = os.fstat(cur.file.fileno()).st_mtime_ns
        # A file deleted since it was opened sorts before any file with its time.
        key = (own, 0, 0, "")
        for path, info in files:
            if cur.same(info):
                key = self._rotation_key(path.name, own)
        later = sorted(
            (self._rotation_key(path.name, info.st_mtime_ns), path, info)
            for path, info in files
            if not cur.same(info)
        )
        for candidate, path, info in later:
            if candidate <= key:
                continue
            opened = _Open.at(path)
            if opened is None:
                continue
            if opened.same(info):
                return opened
            opened.close()  # renamed between listing and opening: look again next time
            return None
        return None

    def _find_copy(
        self, fingerprint: str, size: int, offset: int, exclude: _Open | None
    ) -> _Open | None:
        """The newest sibling starting with the same `size` bytes and at least `offset`
        long, opened at `offset`: what copytruncate copied the file to."""
        if size == 0:
            return None  # an empty head matches anything
        for path, info in sorted(self._siblings(), key=lambda f: -f[1].st_mtime_ns):
            if info.st_size < offset or (exclude is not None and exclude.same(info)):
                continue
            opened = _Open.at(path, offset)
            if opened is None:
                continue
            if _fingerprint(opened.head[:size]) == fingerprint and opened.size() >= offset:
                return opened
            opened.close()
        return None

    # --- state ---------------------------------------------------------------------------------

    def commit(self, extra: Mapping[str, Any] | None = None) -> None:
        """Save the position after the last line read, durably and atomically (a crash
        leaves the previous state or this one). `extra` (JSON values) is saved with it and
        read back as `self.extra` by the next `FileTail` on this state file."""
        if extra is not None:
            self.extra = dict(extra)
        state: dict[str, Any] = {
            "version": STATE_VERSION,
            "path": str(self.path),
            "extra": self.extra,
        }
        cur = self._current
        if cur is not None:
            state.update(
                inode=cur.inode,
                device=cur.device,
                offset=cur.offset,
                fingerprint=_fingerprint(cur.head),
                fingerprint_size=len(cur.head),
            )
        data = json.dumps(state, sort_keys=True).encode()
        folder = self.state_file.parent
        fd, temp = tempfile.mkstemp(prefix=self.state_file.name + ".", suffix=".tmp", dir=folder)
        try:
            with open(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, self.state_file)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        # The rename itself is only durable once the folder is.
        folder_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(folder_fd)
        finally:
            os.close(folder_fd)

    def _load(self) -> dict[str, Any] | None:
        try:
            raw = self.state_file.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise InputError(f"{self.state_file}: cannot read tail state: {exc}") from exc
        try:
            state = json.loads(raw)
            if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
                raise ValueError("not a tail state of this version")
            if state.get("path") != str(self.path):
                raise ValueError(f"it is the state of {state.get('path')!r}")
            extra = state.get("extra", {})
            if not isinstance(extra, dict):
                raise ValueError("extra is not an object")
            if "inode" in state:
                for key in ("inode", "device", "offset", "fingerprint_size"):
                    if not isinstance(state.get(key), int) or state[key] < 0:
                        raise ValueError(f"{key} is not a count")
                if not isinstance(state.get("fingerprint"), str):
                    raise ValueError("fingerprint is not text")
        except ValueError as exc:  # json.JSONDecodeError included
            raise InputError(f"{self.state_file}: unusable tail state: {exc}") from exc
        except RecursionError as exc:
            raise InputError(f"{self.state_file}: unusable tail state: nested too deeply") from exc
        self.extra = extra
        return state

    def _resume(self, saved: dict[str, Any]) -> None:
        inode: int = saved["inode"]
        device: int = saved["device"]
        offset: int = saved["offset"]
        fingerprint: str = saved["fingerprint"]
        size: int = saved["fingerprint_size"]

        def matches(opened: _Open) -> bool:
            return (
                _fingerprint(opened.head[:size]) == fingerprint
                and len(opened.head) >= size
                and opened.size() >= offset
            )

        info = _stat(self.path)
        if info is not None and (info.st_ino, info.st_dev) == (inode, device):
            at_path = _Open.at(self.path, offset, strict=True)
            if at_path is not None and at_path.same(info):
                if matches(at_path):
                    self._current = at_path
                    return
                # Truncated (copytruncate) or replaced while we were down.
                self.counters["truncations"] += 1
                at_path.offset = 0
                copy = self._find_copy(fingerprint, size, offset, at_path)
                log.warning(
                    "%s: truncated or replaced since the last commit; reading from its start%s",
                    self.path,
                    ", after the rest of its copy" if copy else "",
                )
                if copy is None:
                    self._current = at_path
                else:
                    # The truncated file follows its copy in rotation order.
                    at_path.close()
                    self._current = copy
                return
            if at_path is not None:
                at_path.close()
        for path, info in self._siblings():
            if (info.st_ino, info.st_dev) != (inode, device):
                continue
            opened = _Open.at(path, offset)
            if opened is not None and opened.same(info) and matches(opened):
                self._current = opened
                return
            if opened is not None:
                opened.close()
        self.counters["missing_on_resume"] += 1
        log.warning(
            "%s: the file last read (inode %d) is gone; reading from the start of %s",
            self.state_file,
            inode,
            self.path,
        )


__all__ = ["COUNTERS", "FileTail", "Position", "TailLine"]
