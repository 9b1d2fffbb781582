"""Web server access logs in the NCSA common and combined formats (Apache's and nginx's
defaults): one request per line,

    10.0.0.1 - alice [03/Dec/2026:16:13:01 +0000] "GET /a.php?cmd=id HTTP/1.1" 200 512 "-" "curl/8"

read into the Sigma webserver taxonomy's W3C names: `c-ip`, `cs-username`, `cs-method`,
`cs-uri-stem`, `cs-uri-query` (without its `?`), `cs-version`, `sc-status`, `sc-bytes`,
`cs-referer`, `cs-user-agent`; the time is the request's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from vigil.events import Event
from vigil.events.model import parse_time
from vigil.ingest.base import FileReport, Input, batched, numbered_lines
from vigil.ingest.syslog import MONTHS

NAME = "weblog"
DATASET = "webserver.access"
BATCH = 2048
MAX_LINE = 16 * 1024

# Linear: a quoted field is the unrolled loop `[^"\\]*(?:\\.[^"\\]*)*`; every part is bounded.
_QUOTED = r'"([^"\\]*(?:\\.[^"\\]*)*)"'
_LINE = re.compile(
    r"(\S{1,255}) (\S{1,255}) (\S{1,255}) \[([^\]]{10,64})\] "
    + _QUOTED
    + r" (\d{3}|-) (\d{1,20}|-)"
    + rf"(?: {_QUOTED} {_QUOTED})?"
)


def sniff(head: bytes) -> bool:
    line = head.split(b"\n", 1)[0][:MAX_LINE].decode("utf-8", "replace").rstrip("\r")
    return parse_line(line) is not None


def parse_line(text: str) -> tuple[dict[str, Any], float | None] | None:
    """The fields and time of one access log line, or None when it is not one."""
    if len(text) > MAX_LINE:
        return None
    found = _LINE.match(text)
    if found is None:
        return None
    client, _, user, stamp, request, status, size, referer, agent = found.groups()
    fields: dict[str, Any] = {"c-ip": client}
    if user != "-":
        fields["cs-username"] = user
    method, _, rest = request.partition(" ")
    target, _, version = rest.rpartition(" ") if " HTTP/" in rest else (rest, "", "")
    if method and target:
        fields["cs-method"] = method
        stem, question, query = target.partition("?")
        fields["cs-uri-stem"] = stem
        if question:
            fields["cs-uri-query"] = query
        if version:
            fields["cs-version"] = version
    else:  # a request line that is no request (a scanner's garbage): kept as it was sent
        fields["cs-request"] = request
    if status != "-":
        fields["sc-status"] = int(status)
    if size != "-":
        fields["sc-bytes"] = int(size)
    if referer is not None and referer != "-":
        fields["cs-referer"] = referer
    if agent is not None and agent != "-":
        fields["cs-user-agent"] = agent
    return fields, _time(stamp)


def _time(stamp: str) -> float | None:
    """`03/Dec/2026:16:13:01 +0100` (month names in English whatever the locale), read by
    the one time parser (its range checks); None when it is not one."""
    if len(stamp) != 26 or stamp[2] != "/" or stamp[6] != "/" or stamp[20] != " ":
        return None
    month = MONTHS.get(stamp[3:6])
    if month is None:
        return None
    zone = stamp[21:]
    iso = f"{stamp[7:11]}-{month:02d}-{stamp[:2]}T{stamp[12:20]}{zone[:3]}:{zone[3:]}"
    return parse_time(iso)


# (line number, fields, time)
Raw = tuple[int, dict[str, Any], float | None]


def read(source: Input, report: FileReport) -> Iterator[list[Raw]]:
    return batched(_records(source, report), BATCH)


def _records(source: Input, report: FileReport) -> Iterator[Raw]:
    for number, raw in numbered_lines(source, report):
        parsed = parse_line(raw.decode("utf-8", "replace").rstrip("\r"))
        if parsed is None:
            report.reject(number, "not an access log line (common or combined format)", raw=raw)
            continue
        yield number, *parsed


def to_events(records: list[Raw], report: FileReport) -> list[Event]:
    return [line_event(fields, when, number, report) for number, fields, when in records]


def line_event(
    fields: dict[str, Any],
    when: float | None,
    number: int | str,
    report: FileReport,
    format: str = NAME,
) -> Event:
    return Event(
        fields=fields,
        source=report.path,
        record=number,
        time=when,
        category="webserver",
        format=format,
        dataset=DATASET,
    )
