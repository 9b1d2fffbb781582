"""JSON logs: JSON lines, arrays, concatenated documents and CloudTrail `Records` files; what
each record is comes from `shapes`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson

from vigil.events import Event
from vigil.ingest import syslog
from vigil.ingest.base import (
    CHUNK,
    MAX_DEPTH,
    MAX_WHOLE_READ,
    FileReport,
    Input,
    read_lines,
    too_deep,
)
from vigil.ingest.shapes import TRUNCATED_MARK, Classifier, is_panther_fixture

NAME = "json"
BATCH = 2048


def sniff(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return text[:1] in (b"{", b"[")


# (record number, decoded JSON value, the line it came from for JSON lines)
Raw = tuple[int, Any, bytes | None]


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


def _read_lines(head: bytes, stream: Any, report: FileReport) -> Iterator[list[Raw]]:
    batch: list[Raw] = []
    number = 0
    loads = orjson.loads
    for lines in read_lines(head, stream, report):
        for line in lines:
            number += 1
            if not line.strip():
                continue
            try:
                batch.append((number, loads(line), line))
            except orjson.JSONDecodeError as exc:
                report.reject(number, f"invalid JSON: {exc}", raw=line)
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
        if isinstance(whole, dict) and isinstance(whole.get("Records"), list):
            whole = whole["Records"]  # CloudTrail's own file layout
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


# Where records keep their time, most specific first (the first present is used).
TIME_FIELDS = (
    "TimeCreated_SystemTime",
    "TimeCreated",
    "UtcTime",
    "@timestamp",
    "eventTime",
    "published",
    "time",
    "ts",
    "timestamp",
    "TimeGenerated",
    "EventTime",
    "CreationTime",
    "createdDateTime",
    "requestReceivedTimestamp",
    "receiveTimestamp",
    "id.time",
    "messageTime",
    "clickTime",
    "created_at",
)


def to_events(records: list[Raw], report: FileReport) -> list[Event]:
    """Decoded JSON objects as events (see `record_event`)."""
    classifier = Classifier(report.forced)
    events = []
    for number, value, line in records:
        event = record_event(classifier, value, number, line, report)
        if event is not None:
            events.append(event)
    return events


def record_event(
    classifier: Classifier,
    value: Any,
    number: int | str,
    line: bytes | None,
    report: FileReport,
    format: str = NAME,
) -> Event | None:
    """One decoded JSON value as an event: its shape (see `shapes`) gives its fields and
    dataset. A value that is not an object, is empty or is nested too deeply is rejected."""
    if type(value) is not dict:
        report.reject(number, f"a JSON {type(value).__name__}, not an object", raw=line)
        return None
    if too_deep(value, line):
        report.reject(number, f"nested more than {MAX_DEPTH} levels deep", raw=line)
        return None
    try:
        fields, dataset = classifier.build(value, report.path)
    except RecursionError:
        report.reject(number, "nested too deeply to flatten", raw=line)
        return None
    if not fields:
        report.reject(number, "an empty record", raw=line)
        return None
    if fields.pop(TRUNCATED_MARK, False):
        report.warn(number, syslog.TRUNCATED)
    stamp = None
    for field_name in TIME_FIELDS:
        stamp = fields.get(field_name)
        if stamp is not None:
            break
    return Event(
        fields=fields,
        source=report.path,
        record=number,
        stamp=stamp,
        product="windows" if dataset == "windows" else None,
        format=format,
        # a fixture's own line holds its wrapper's text too: keywords must not see that
        raw=None if is_panther_fixture(value) else line,
        dataset=dataset,
    )
