"""Events from live sources: syslog messages off the network and lines from tailed files, in
batches, read by the same parsers as files (`syslog`, `jsonlog`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import orjson

from vigil.events import Event
from vigil.ingest import syslog, weblog
from vigil.ingest.base import FileReport
from vigil.ingest.jsonlog import record_event
from vigil.ingest.shapes import Classifier

NAME = "live"


def syslog_events(messages: Iterable[tuple[bytes, str, float]], report: FileReport) -> list[Event]:
    """Syslog messages (data, sender, time received) as events; the time received stands in
    for a message without a time stamp. A message that is no syslog is rejected whole."""
    now = datetime.now(UTC)
    events = []
    for number, (data, sender, received) in enumerate(messages, report.records_read + 1):
        fields, when = syslog.parse_line(data.decode("utf-8", "replace").rstrip("\r\n\x00"), now)
        if "message" not in fields:
            report.reject(f"{sender}#{number}", "not a syslog message", raw=data)
            continue
        fields.setdefault("hostname", sender.rsplit(":", 1)[0])
        time = when if when is not None else received
        events.append(syslog.line_event(fields, time, number, report, format=NAME))
    report.records_read += len(events)
    return events


def line_events(lines: Iterable[tuple[bytes, int]], report: FileReport) -> list[Event]:
    """Lines of a tailed file (data, offset) as events: JSON objects by their shape, web
    access log lines (common or combined format) as requests, anything else as syslog. The
    record number is the line's byte offset in the file."""
    classifier = Classifier(report.forced)
    now = datetime.now(UTC)
    auth_log = "auth.log" in report.path
    events = []
    for data, offset in lines:
        stripped = data.strip()
        if not stripped:
            continue
        event: Event | None
        if stripped[:1] == b"{":
            try:
                value = orjson.loads(stripped)
            except orjson.JSONDecodeError as exc:
                report.reject(offset, f"invalid JSON: {exc}", raw=data)
                continue
            event = record_event(classifier, value, offset, stripped, report, format=NAME)
        elif (
            request := weblog.parse_line(text := stripped.decode("utf-8", "replace"))
        ) is not None:
            event = weblog.line_event(*request, offset, report, format=NAME)
        else:
            fields, when = syslog.parse_line(text, now)
            if "message" not in fields:
                report.reject(offset, "neither JSON nor syslog", raw=data)
                continue
            event = syslog.line_event(fields, when, offset, report, auth_log, format=NAME)
        if event is not None:
            events.append(event)
    report.records_read += len(events)
    return events
