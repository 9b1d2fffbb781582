"""Reading logs: one reader per format, format detection, directories and archives."""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vigil.errors import InputError
from vigil.events import Event
from vigil.ingest import auditd, evtx, jsonlog, syslog, weblog, zeek
from vigil.ingest.base import FileReport, Input, Problem, file_input, maybe_gunzipped
from vigil.ingest.shapes import BY_NAME as JSON_SHAPES


@dataclass(frozen=True)
class Reader:
    name: str
    sniff: Callable[[bytes], bool]
    read: Callable[[Input, FileReport], Iterator[list[Any]]]
    to_events: Callable[[list[Any], FileReport], list[Event]]


# In the order formats are tried on a file's first bytes.
READERS: dict[str, Reader] = {
    module.NAME: Reader(module.NAME, module.sniff, module.read, module.to_events)
    for module in (evtx, jsonlog, zeek, auditd, weblog, syslog)
}
# What `--log-format` accepts: a reader, or a JSON shape (read as JSON, every record taken as
# that shape).
FORMATS = (*READERS, *JSON_SHAPES)

ZIP_MAGIC = b"PK\x03\x04"
# Members of archives that are metadata, not logs.
_ARCHIVE_JUNK = ("__MACOSX/", ".DS_Store")
_KNOWN_NOT_LOGS = {
    b"\xd4\xc3\xb2\xa1": "pcap capture",
    b"\xa1\xb2\xc3\xd4": "pcap capture",
    b"\x0a\x0d\x0d\x0a": "pcapng capture",
}


def detect_format(head: bytes) -> str | None:
    """The reader for content starting with `head` (already decompressed), or None."""
    for reader in READERS.values():
        if reader.sniff(head):
            return reader.name
    return None


def discover(paths: Iterable[str | Path]) -> list[Input]:
    """Every log input under the given paths: files, directories (recursed, sorted) and zip
    members. A missing path is an `InputError`."""
    inputs: list[Input] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputError(f"no such file or directory: {path}")
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            inputs.extend(_expand(file))
    return inputs


def _expand(path: Path) -> list[Input]:
    try:
        source = file_input(path)
        if source.compressed:  # a gzip'd zip is read as what it is, not opened as a zip
            return [source]
        head = source.head(4)
    except OSError as exc:
        return [Input(str(path), _raiser(exc))]
    if head != ZIP_MAGIC:
        return [source]
    try:
        with zipfile.ZipFile(path) as archive:
            names = [i.filename for i in archive.infolist() if not i.is_dir()]
    except zipfile.BadZipFile:
        return [source]  # zip magic but no archive: read (and reported) as what it is
    except (OSError, EOFError, ValueError, NotImplementedError) as exc:
        # a damaged directory, names that are not UTF-8, an unsupported zip feature
        return [Input(str(path), _raiser(exc))]
    if "[Content_Types].xml" in names:
        return [Input(str(path), source.opener, not_log="an Office Open XML document, not a log")]
    return [_member(path, name) for name in names]


class _OpenArchive:
    """The zip archive members are being read from, kept open while its members are read in
    turn (opening an archive reads its whole directory: once per member would be quadratic).
    One per process: a forked worker opens its own."""

    path: Path | None = None
    pid = 0
    archive: zipfile.ZipFile | None = None

    @classmethod
    def get(cls, path: Path) -> zipfile.ZipFile:
        if cls.archive is None or cls.path != path or cls.pid != os.getpid():
            if cls.archive is not None and cls.pid == os.getpid():
                cls.archive.close()
            cls.archive, cls.path, cls.pid = zipfile.ZipFile(path), path, os.getpid()
        return cls.archive


def _member(path: Path, name: str) -> Input:
    def opener() -> Any:
        return maybe_gunzipped(_OpenArchive.get(path).open(name))

    return Input(f"{path}/{name}", opener, compressed=True)


def _raiser(exc: Exception) -> Callable[[], Any]:
    def opener() -> Any:
        raise exc

    return opener


def read_events(source: Input, report: FileReport) -> Iterator[list[Event]]:
    """Events of one input in batches. Problems go to `report`; nothing raises but bugs."""
    name = source.name
    if source.not_log:
        report.format = "skipped"
        report.warn(None, source.not_log)
        return
    if any(part in name for part in _ARCHIVE_JUNK):
        report.format = "skipped"
        report.warn(None, "archive metadata (macOS resource fork), not a log")
        return
    try:
        head = source.head(4096)
    except (OSError, RuntimeError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        # unreadable file, encrypted or damaged archive member, unsupported zip feature
        report.format = "unreadable"
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        report.reject(None, f"cannot read: {reason}")
        return
    forced = report.forced
    if forced is not None and forced not in READERS and forced not in JSON_SHAPES:
        raise InputError(f"unknown log format {forced!r} (one of {', '.join(FORMATS)})")
    fmt = forced if forced in READERS else ("json" if forced else detect_format(head))
    if fmt is None:
        report.format = "unknown"
        kind = _KNOWN_NOT_LOGS.get(head[:4])
        report.warn(
            None,
            f"not a log format Vigil reads ({kind})"
            if kind
            else "format not recognised (not EVTX, JSON, Zeek, audit or syslog); skipped",
        )
        return
    reader = READERS[fmt]
    report.format = fmt
    try:
        for records in reader.read(source, report):
            events = reader.to_events(records, report)
            report.records_read += len(events)
            yield events
    except (
        OSError,
        EOFError,
        RuntimeError,
        ValueError,
        InputError,
        zipfile.BadZipFile,
        zlib.error,
    ) as exc:
        # A file the reader cannot go on with: what was read stays read.
        report.reject(None, f"reading stopped: {exc}")


__all__ = [
    "FORMATS",
    "READERS",
    "FileReport",
    "Input",
    "Problem",
    "Reader",
    "detect_format",
    "discover",
    "read_events",
]
