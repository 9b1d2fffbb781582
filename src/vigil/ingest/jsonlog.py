"""JSON logs: JSON lines, JSON arrays and concatenated JSON documents, Windows shapes recognised."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from vigil.events import (
    Event,
    flatten_dotted,
    flatten_evtx_json,
    flatten_nxlog,
    flatten_winlogbeat,
    windows_shape,
)
from vigil.ingest.base import MAX_WHOLE_READ, FileReport, Input

NAME = "json"
BATCH = 2048

TIME_FIELDS = (
    "TimeCreated_SystemTime",
    "TimeCreated",
    "@timestamp",
    "timestamp",
    "eventTime",
    "time",
    "ts",
    "EventTime",
    "UtcTime",
)


def sniff(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return text[:1] in (b"{", b"[")


# (record number, decoded JSON value, the line it came from for JSON lines)
Raw = tuple[int, Any, bytes | None]


CHUNK = 1 << 22


def read(source: Input, report: FileReport) -> Iterator[list[Raw]]:
    """Records as (number, object). JSON lines stream; arrays and pretty-printed documents
    are decoded whole. Numbers are 1-based line numbers for JSON lines, item numbers otherwise."""
    with source.open() as stream:
        head = stream.read(CHUNK)
        if _is_json_lines(head):
            report.format = "jsonl"
            yield from _read_lines(head, stream, report)
        else:
            report.format = "json"
            rest = stream.read(MAX_WHOLE_READ + 1 - len(head))
            if len(head) + len(rest) > MAX_WHOLE_READ:
                report.reject(None, f"a JSON document larger than {MAX_WHOLE_READ >> 20} MiB")
                return
            yield from _read_documents(head + rest, report)
        Input.finish(stream, report)


SAMPLE_LINES = 16


def _is_json_lines(head: bytes) -> bool:
    """JSON lines when most of the first lines are JSON objects each on their own (so a
    malformed line among them does not change how the file is read); a pretty-printed or
    array document has lines that are not."""
    if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"[":
        return False
    lines = [line for line in head.split(b"\n", SAMPLE_LINES)[:SAMPLE_LINES] if line.strip()]
    objects = 0
    for line in lines:
        try:
            objects += type(orjson.loads(line)) is dict
        except orjson.JSONDecodeError:
            continue
    # one line of slack: the last sampled line may be cut short by the read boundary
    return objects > 0 and 2 * objects >= len(lines) - 1


# A line longer than this is set aside (and the reader moves on to the next line) rather than
# held in memory whole.
MAX_LINE = 64 << 20


def _lines(head: bytes, stream: Any, report: FileReport) -> Iterator[list[bytes]]:
    """Lines in large chunks (the last line of a chunk waits for the next chunk). A line over
    MAX_LINE becomes an empty line, its number kept, and is rejected."""
    pending = head
    number = 0  # lines handed out so far
    overlong = False  # inside a line already rejected as too long
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            if overlong:
                yield [b""]
            elif pending:
                yield pending.split(b"\n")
            return
        pending += chunk
        cut = pending.rfind(b"\n")
        if cut >= 0:
            lines = pending[:cut].split(b"\n")
            pending = pending[cut + 1 :]
            if overlong:
                lines[0] = b""
                overlong = False
            number += len(lines)
            yield lines
        if len(pending) > MAX_LINE:
            if not overlong:
                report.reject(number + 1, f"line longer than {MAX_LINE >> 20} MiB")
            overlong = True
            pending = b""


def _read_lines(head: bytes, stream: Any, report: FileReport) -> Iterator[list[Raw]]:
    batch: list[Raw] = []
    number = 0
    loads = orjson.loads
    for lines in _lines(head, stream, report):
        for line in lines:
            number += 1
            if not line.strip():
                continue
            try:
                batch.append((number, loads(line), line))
            except orjson.JSONDecodeError as exc:
                report.reject(number, f"invalid JSON: {exc}")
                continue
            if len(batch) >= BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


def _read_documents(data: bytes, report: FileReport) -> Iterator[list[Raw]]:
    """One JSON value, an array, or several values one after another (`{..}\\n{..}`)."""
    try:
        whole = orjson.loads(data)
    except orjson.JSONDecodeError:
        whole = None
        text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    else:
        text = ""
    if whole is not None or not text:
        values = whole if isinstance(whole, list) else [whole]
        yield from _batches(values)
        return
    decoder = json.JSONDecoder(parse_constant=_no_constant, parse_int=_int64)
    values = []
    pos, end = 0, len(text)
    while pos < end:
        while pos < end and text[pos] in " \t\r\n":
            pos += 1
        if pos >= end:
            break
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            report.reject(
                len(values) + 1,
                f"invalid JSON at line {exc.lineno} column {exc.colno}: "
                f"{exc.msg}; the rest of the file cannot be split into records",
            )
            break
        except (ValueError, RecursionError) as exc:  # NaN, nesting too deep
            report.reject(
                len(values) + 1,
                f"invalid JSON: {exc}; the rest of the file cannot be split into records",
            )
            break
        if isinstance(value, list):
            values.extend(value)
        else:
            values.append(value)
    yield from _batches(values)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _int64(text: str) -> int | str:
    """An integer as orjson reads it (64 bits); a longer one is kept as its text."""
    value = int(text)
    return value if -(1 << 63) <= value < (1 << 64) else text


def _batches(values: list[Any]) -> Iterator[list[Raw]]:
    for start in range(0, len(values), BATCH):
        yield [(start + i + 1, v, None) for i, v in enumerate(values[start : start + BATCH])]


FLATTENERS = {
    "evtx": flatten_evtx_json,
    "winlogbeat": flatten_winlogbeat,
    "nxlog": flatten_nxlog,
}


def to_event(
    value: Mapping[str, Any], source: str, number: int | str, raw: bytes | None = None
) -> Event:
    """One decoded JSON object as an Event; Windows shapes get EVTX field names."""
    shape = windows_shape(value)
    if shape is None:
        fields = flatten_dotted(value)
        product = None
    else:
        fields = FLATTENERS[shape](value)
        product = "windows"
    stamp = None
    for name in TIME_FIELDS:
        stamp = fields.get(name)
        if stamp is not None:
            break
    return Event(
        fields=fields,
        source=source,
        record=number,
        stamp=stamp,
        product=product,
        format=NAME,
        raw=raw,
    )


def to_events(records: list[Raw], report: FileReport) -> list[Event]:
    events = []
    for number, value, line in records:
        if type(value) is not dict:
            report.reject(number, f"a JSON {type(value).__name__}, not an object")
            continue
        try:
            events.append(to_event(value, report.path, number, line))
        except RecursionError:
            report.reject(number, "nested too deeply to flatten")
    return events
