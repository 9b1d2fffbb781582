"""Events from live sources: syslog messages off the network and lines from tailed files, in
batches, read by the same parsers as files (`syslog`, `shapes`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import orjson

from vigil.events import Event
from vigil.ingest import syslog
from vigil.ingest.base import FileReport
from vigil.ingest.jsonlog import TIME_FIELDS
from vigil.ingest.shapes import TRUNCATED_MARK, Classifier

NAME = "live"


def syslog_events(messages: Iterable[tuple[bytes, str, float]], report: FileReport) -> list[Event]:
    """Syslog messages (data, sender, time received) as events; the time received stands in
    for a message without a time stamp. A message that is no syslog is rejected whole."""
    now = datetime.now(UTC)
    events = []
    for number, (data, sender, received) in enumerate(messages, report.records_read + 1):
        text = data.decode("utf-8", "replace").rstrip("\r\n\x00")
        fields, when = syslog.parse_line(text, now)
        if "message" not in fields:
            report.reject(f"{sender}#{number}", "not a syslog message", raw=data)
            continue
        fields.setdefault("hostname", sender.rsplit(":", 1)[0])
        kind = syslog.enrich(fields)
        event = Event(
            fields=fields,
            source=report.path,
            record=number,
            time=when if when is not None else received,
            format=NAME,
            raw=None,
        )
        syslog.tag(event, kind)
        events.append(event)
    report.records_read += len(events)
    return events


def line_events(lines: Iterable[tuple[bytes, int]], report: FileReport) -> list[Event]:
    """Lines of a tailed file (data, offset) as events: JSON objects by their shape, anything
    else as syslog. The record number is the line's byte offset in the file."""
    classifier = Classifier(report.forced)
    now = datetime.now(UTC)
    events = []
    for data, offset in lines:
        stripped = data.strip()
        if not stripped:
            continue
        if stripped[:1] == b"{":
            try:
                value = orjson.loads(stripped)
            except orjson.JSONDecodeError as exc:
                report.reject(offset, f"invalid JSON: {exc}", raw=data)
                continue
            if type(value) is not dict:
                report.reject(offset, "a JSON value that is not an object", raw=data)
                continue
            fields, dataset = classifier.build(value, report.path)
            fields.pop(TRUNCATED_MARK, None)
            stamp = next((fields[n] for n in TIME_FIELDS if fields.get(n) is not None), None)
            events.append(
                Event(
                    fields=fields,
                    source=report.path,
                    record=offset,
                    stamp=stamp,
                    format=NAME,
                    raw=stripped,
                    dataset=dataset,
                    product="windows" if dataset == "windows" else None,
                )
            )
            continue
        fields, when = syslog.parse_line(stripped.decode("utf-8", "replace"), now)
        if "message" not in fields:
            report.reject(offset, "neither JSON nor syslog", raw=data)
            continue
        kind = syslog.enrich(fields)
        event = Event(fields=fields, source=report.path, record=offset, time=when, format=NAME)
        syslog.tag(event, kind, from_auth_log="auth.log" in report.path)
        events.append(event)
    report.records_read += len(events)
    return events
