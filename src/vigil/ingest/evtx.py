"""Windows EVTX through pyevtx-rs, with chunk integrity checks and per-chunk loss accounting."""

from __future__ import annotations

import io
import re
import struct
import zlib
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from evtx import PyEvtxParser

from vigil.events import Event, flatten_evtx_json
from vigil.ingest.base import FileReport, Input

NAME = "evtx"
MAGIC = b"ElfFile\x00"
CHUNK_MAGIC = b"ElfChnk\x00"
HEADER_SIZE = 4096
CHUNK_SIZE = 65536
BATCH = 2048
# A record takes at least 24 bytes of a chunk's 65,024 bytes of record space; a header that claims
# more records than fit is damaged, and its range is not used to count lost records.
MAX_CHUNK_RECORDS = (CHUNK_SIZE - 512) // 24
_ZERO_CHUNK = bytes(CHUNK_SIZE)

_CHUNK_ERROR = re.compile(r"chunk number (\d+)")


def sniff(head: bytes) -> bool:
    return head.startswith(MAGIC)


@dataclass(slots=True)
class Chunk:
    index: int
    first_record: int
    last_record: int
    problems: list[str] = field(default_factory=list)
    cut: bool = False  # the file ends inside this chunk: the parser reads none of it


@dataclass
class Layout:
    """What the file's own headers say: chunks in use, their record ranges, checksum failures."""

    chunk_count: int = 0
    chunks: dict[int, Chunk] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)
    slack: list[int] = field(default_factory=list)
    # File offsets of string-table links that close a loop, to be cut before parsing.
    loops: list[int] = field(default_factory=list)


def inspect(data: bytes) -> Layout:
    """Check the file header and every chunk against their CRC32 checksums.

    pyevtx-rs skips checksums by default (and reading with validation would drop whole
    chunks), so records are read regardless and a mismatch is reported as a finding.
    """
    layout = Layout()
    if len(data) < HEADER_SIZE:
        layout.problems.append(("file", f"file is {len(data)} bytes, shorter than the EVTX header"))
        return layout
    (stored,) = struct.unpack_from("<I", data, 124)
    layout.chunk_count = struct.unpack_from("<H", data, 42)[0]
    if zlib.crc32(data[:120]) != stored:
        layout.problems.append(("file header", "file header CRC32 mismatch"))
    count = (len(data) - HEADER_SIZE) // CHUNK_SIZE
    for index in range(count):
        start = HEADER_SIZE + index * CHUNK_SIZE
        chunk = data[start : start + CHUNK_SIZE]
        where = f"chunk {index} (offset {start:#x})"
        if chunk[:8] != CHUNK_MAGIC:
            if chunk == _ZERO_CHUNK[: len(chunk)]:
                continue  # never used
            if index >= layout.chunk_count:
                # Past the chunks the header counts and not a chunk: unallocated slack space.
                layout.slack.append(index)
            else:
                layout.problems.append((where, "chunk signature missing (expected ElfChnk)"))
            continue
        first, last = struct.unpack_from("<QQ", chunk, 24)
        entry = Chunk(index, first, last)
        layout.chunks[index] = entry
        if not 0 <= last - first < MAX_CHUNK_RECORDS:
            entry.problems.append(f"chunk header claims records {first}-{last}, more than fit")
        free = struct.unpack_from("<I", chunk, 48)[0]
        records_crc, header_crc = (
            struct.unpack_from("<I", chunk, 52)[0],
            struct.unpack_from("<I", chunk, 124)[0],
        )
        if zlib.crc32(chunk[:120] + chunk[128:512]) != header_crc:
            entry.problems.append(
                "chunk header CRC32 mismatch (string/template tables may be damaged)"
            )
        if 512 <= free <= CHUNK_SIZE and zlib.crc32(chunk[512:free]) != records_crc:
            entry.problems.append("event records CRC32 mismatch")
        loops = _string_loops(chunk)
        if loops:
            entry.problems.append(
                f"string table links loop back ({len(loops)} loop(s), cut before parsing)"
            )
            layout.loops.extend(start + offset for offset in loops)
        for problem in entry.problems:
            layout.problems.append((where, problem))
    _inspect_cut(data, count, layout)
    return layout


# A chunk's common string table: 64 offsets of the first name of each hash bucket; each name
# starts with the offset of the next name of its bucket (0 ends the list).
STRING_TABLE = struct.Struct("<64I")
STRING_TABLE_AT = 128


def _string_loops(chunk: bytes) -> list[int]:
    """The offsets (in the chunk) of the links that close a loop in the string table's lists.

    pyevtx-rs follows these lists without noticing a loop (other than a name linking to
    itself) and never returns: a damaged chunk must not hang the reader."""
    loops: list[int] = []
    done: set[int] = set()  # names on lists already followed to their end
    limit = len(chunk) - 4
    for head in STRING_TABLE.unpack_from(chunk, STRING_TABLE_AT):
        path: set[int] = set()
        offset = head
        while 0 < offset <= limit and offset not in done:
            path.add(offset)
            (following,) = struct.unpack_from("<I", chunk, offset)
            if following in path:
                loops.append(offset)
                break
            offset = following
        done |= path
    return loops


def _inspect_cut(data: bytes, index: int, layout: Layout) -> None:
    """A chunk cut short by the end of the file (a log copied while written, a truncated
    download): the parser skips it, so its records, when its header says which, are lost."""
    start = HEADER_SIZE + index * CHUNK_SIZE
    rest = data[start:]
    if not rest or rest == _ZERO_CHUNK[: len(rest)]:
        return
    where = f"chunk {index} (offset {start:#x})"
    layout.problems.append(
        (where, f"chunk cut short: the file ends {len(rest)} bytes into it (truncated?)")
    )
    if rest[:8] == CHUNK_MAGIC and len(rest) >= 40:
        first, last = struct.unpack_from("<QQ", rest, 24)
        layout.chunks[index] = Chunk(index, first, last, cut=True)


def read(source: Input, report: FileReport) -> Iterator[list[dict[str, Any]]]:
    """Raw records (pyevtx-rs dicts) in batches; every record the parser can read is read."""
    data = source.read_all(report)
    layout = inspect(data)
    for where, problem in layout.problems:
        report.warn(where, problem)
    if layout.loops:
        patched = bytearray(data)
        for offset in layout.loops:
            patched[offset : offset + 4] = bytes(4)  # the list ends there instead
        data = bytes(patched)
    parser = PyEvtxParser(io.BytesIO(data))
    records = parser.records_json()
    seen: dict[int, int] = {}
    errors: list[str] = []
    batch: list[dict[str, Any]] = []
    while True:
        try:
            record = next(records)
        except StopIteration:
            break
        except RuntimeError as exc:  # the parser goes on with the next chunk after this
            errors.append(_one_line(str(exc)))
            continue
        if record is None:
            continue
        seen[record["event_record_id"]] = 1
        batch.append(record)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch
    _account(layout, seen, errors, report)


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _account(layout: Layout, seen: dict[int, int], errors: list[str], report: FileReport) -> None:
    """Turn parser errors and records missing from chunks into rejects that say where and why."""
    chunk_errors: dict[int, list[str]] = {}
    loose: list[str] = []
    for message in errors:
        found = _CHUNK_ERROR.search(message)
        if found and int(found.group(1)) not in layout.chunks:
            index = int(found.group(1))
            if index in layout.slack:
                continue
            where = f"chunk {index} (offset {HEADER_SIZE + index * CHUNK_SIZE:#x})"
            report.reject(where, f"chunk unreadable, its records are lost: {message}")
        elif found:
            chunk_errors.setdefault(int(found.group(1)), []).append(message)
        else:
            loose.append(message)
    ordered = sorted(seen)
    for index, chunk in sorted(layout.chunks.items()):
        if not 0 <= chunk.last_record - chunk.first_record < MAX_CHUNK_RECORDS:
            continue  # a damaged header, reported as such
        missing = _gaps(chunk.first_record, chunk.last_record, ordered)
        if not missing:
            continue
        if chunk.cut:
            why = "the file ends inside this chunk (truncated?)"
        else:
            reasons = chunk_errors.pop(index, []) or loose[:1]
            if loose and reasons == loose[:1]:
                loose.pop(0)
            why = reasons[0] if reasons else "not returned by the parser"
        where = f"chunk {index} (offset {HEADER_SIZE + index * CHUNK_SIZE:#x})"
        for first, last in missing:
            span = f"{first}-{last}" if first != last else str(first)
            report.reject(f"{where} records {span}", f"unreadable: {why}", last - first + 1)
    for message in loose:
        report.reject(None, message)
    for index, messages in chunk_errors.items():
        report.reject(f"chunk {index}", messages[0])


def _gaps(first: int, last: int, ordered: list[int]) -> list[tuple[int, int]]:
    """The ranges of record numbers in first..last that are not in `ordered` (sorted)."""
    gaps: list[tuple[int, int]] = []
    expected = first
    for rid in ordered[bisect_left(ordered, first) : bisect_right(ordered, last)]:
        if rid > expected:
            gaps.append((expected, rid - 1))
        expected = rid + 1
    if expected <= last:
        gaps.append((expected, last))
    return gaps


def to_events(records: list[dict[str, Any]], report: FileReport) -> list[Event]:
    events: list[Event] = []
    append = events.append
    loads = orjson.loads
    flatten = flatten_evtx_json
    name = report.path
    for record in records:
        data = record["data"]
        try:
            fields = flatten(loads(data))
        except orjson.JSONDecodeError as exc:
            report.reject(record.get("event_record_id"), f"parser gave invalid JSON: {exc}")
            continue
        except RecursionError:
            report.reject(record.get("event_record_id"), "nested too deeply to flatten")
            continue
        record_id = fields.get("EventRecordID")
        if not isinstance(record_id, int):
            try:
                record_id = int(record_id) if record_id is not None else record["event_record_id"]
            except (TypeError, ValueError, OverflowError):  # text, NaN, infinity
                record_id = record["event_record_id"]
        stamp = fields.get("TimeCreated_SystemTime") or record.get("timestamp")
        append(
            Event(
                fields=fields,
                source=name,
                record=record_id,
                stamp=stamp,
                raw=data,
                product="windows",
                dataset="windows",  # as the Windows JSON shapes: its ECS table is windows'
                format=NAME,
            )
        )
    return events
