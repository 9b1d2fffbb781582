"""Syslog text: RFC 5424, RFC 3164 (with or without `<PRI>`, as in `/var/log/auth.log`), CEF
(alone or inside a syslog message) and Sysmon for Linux (its event XML inside the message).

Fields use syslog's own terms: `facility`, `severity`, `hostname`, `program` (APP-NAME or the
3164 tag), `pid`, `msgid`, `structured_data`, `message`. A CEF message adds its header
(`DeviceVendor`, `DeviceProduct`, `DeviceVersion`, `DeviceEventClassID`, `Name`, `Severity`)
and extension keys (`src`, `dst`, `suser`, ...); a Sysmon for Linux message adds the event's
fields by their EVTX names (`EventID`, `Image`, `CommandLine`, ...).

What well-known programs' messages hold is added too: sshd's login attempts (`outcome`,
`user`, `src_ip`, `src_port`), dnsmasq's query log (`query`, `record_type`, `src_ip`: Sigma's
dns category) and netfilter packet logs, from the kernel or ulogd (`src_ip`, `dst_ip`,
`src_port`, `dst_port`, `protocol`, `tcp_flags`, `prefix`: Sigma's firewall category).

RFC 3164 time stamps have no year: the year is the current one, or the one before when that
would put the time more than a day in the future (a December log read in January).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from vigil.events import Event
from vigil.events.ecs import sshd_login
from vigil.events.model import parse_time
from vigil.ingest.base import FileReport, Input, batched, numbered_lines

NAME = "syslog"
BATCH = 2048

FACILITIES = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "audit",
    "alert",
    "clock",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
]
SEVERITIES = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]
MONTHS = {
    m: i
    for i, m in enumerate(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1
    )
}
CEF_HEADER = (
    "Version",
    "DeviceVendor",
    "DeviceProduct",
    "DeviceVersion",
    "DeviceEventClassID",
    "Name",
    "Severity",
)
# Programs whose names are Sigma services of product linux.
LINUX_SERVICES = {
    "sshd": "sshd",
    "sudo": "sudo",
    "cron": "cron",
    "crond": "cron",
    "vsftpd": "vsftpd",
    "clamd": "clamav",
    "freshclam": "clamav",
    "guacd": "guacamole",
    "su": "auth",
    "login": "auth",
    "systemd-logind": "auth",
}

# All bounded or linear: no nested quantifiers over untrusted text.
_RFC3164_TIME = re.compile(r"([A-Z][a-z]{2}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))? ")
_TAG = re.compile(r"([^\s:\[]{1,64})(?:\[([^\]]{0,32})\])?: ?")
_CEF_KEY = re.compile(r"(?:^|(?<=\s))([A-Za-z0-9_.\[\]-]{1,64})=")
# dnsmasq's query log (log-queries): `[serial peer/port ]query[A] name from 10.0.0.1`. The
# name is the client's: the asker is the address dnsmasq writes first (log-queries=extra) or
# last, never one inside the name (`evil from 10.0.0.9`). Bounded, one backtrack at most.
_DNSMASQ_QUERY = re.compile(
    r"(?:\d{1,10} ([0-9A-Fa-f.:]{2,45})/\d{1,5} )?query\[([A-Za-z0-9]{1,16})\] "
    r"(.{1,1100}) from ([0-9A-Fa-f.:]{2,45})$"
)
# Programs whose messages are netfilter packet logs: the kernel's, ulogd's (LOGEMU lines have
# no tag: the rule's prefix stands where a program would); not any program's text that
# looks like one (an application logging what a client sent)
_PACKET_LOGGERS = {None, "kernel", "ulogd"}
_TCP_FLAGS = frozenset({"SYN", "ACK", "FIN", "RST", "PSH", "URG", "ECE", "CWR"})
# A netfilter packet log line's keys (the kernel's `log` and ulogd's LOGEMU write the same)
_NETFILTER_KEYS = {
    "IN": "in_interface",
    "OUT": "out_interface",
    "SRC": "src_ip",
    "DST": "dst_ip",
    "PROTO": "protocol",
    "SPT": "src_port",
    "DPT": "dst_port",
    "LEN": "length",
    "TTL": "ttl",
}
_NETFILTER_NUMBERS = {"src_port", "dst_port", "length", "ttl"}
MAX_PACKET_LOG = 4096


def sniff(head: bytes) -> bool:
    line = head.split(b"\n", 1)[0]
    if line.startswith(b"<") and b">" in line[:6]:
        return line[1 : line.index(b">")].isdigit()
    if line.startswith(b"CEF:"):
        return True
    return _RFC3164_TIME.match(line.decode("latin-1")) is not None


def _pri(text: str, out: dict[str, Any]) -> str:
    if not text.startswith("<"):
        return text
    close = text.find(">", 1, 6)
    digits = text[1:close]
    # ASCII digits only: `²` is a digit to str.isdigit() but not to int()
    if close < 0 or not (digits.isascii() and digits.isdigit()):
        return text
    pri = int(text[1:close])
    facility, severity = divmod(pri, 8)
    out["facility"] = FACILITIES[facility] if facility < len(FACILITIES) else str(facility)
    out["severity"] = SEVERITIES[severity]
    return text[close + 1 :]


def _year_for(month: int, day: int, now: datetime) -> int:
    year = now.year
    try:
        if datetime(year, month, day, tzinfo=UTC).timestamp() > now.timestamp() + 86400:
            year -= 1
    except ValueError:
        pass
    return year


def _rfc5424(rest: str, out: dict[str, Any]) -> float | None:
    # VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD [SP MSG]
    parts = rest.split(" ", 6)
    if len(parts) < 6:
        return None
    _, stamp, host, app, procid, msgid = parts[:6]
    remainder = parts[6] if len(parts) > 6 else ""
    for name, value in (("hostname", host), ("program", app), ("pid", procid), ("msgid", msgid)):
        if value != "-":
            out[name] = value
    if remainder.startswith("["):
        end = _sd_end(remainder)
        out["structured_data"] = remainder[:end]
        remainder = remainder[end:].lstrip(" ")
    elif remainder.startswith("- ") or remainder == "-":
        remainder = remainder[2:]
    out["message"] = remainder.removeprefix("\ufeff")
    return parse_time(stamp) if stamp != "-" else None


def _sd_end(text: str) -> int:
    """Where the STRUCTURED-DATA elements end (quoted values may hold `]`)."""
    position, quoted, escaped = 0, False, False
    for position, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "]" and not quoted and not text.startswith("[", position + 1):
            return position + 1
    return position + 1


def _rfc3164(rest: str, out: dict[str, Any], now: datetime) -> float | None:
    found = _RFC3164_TIME.match(rest)
    when: float | None = None
    if found:
        month = MONTHS.get(found.group(1))
        if month:
            day = int(found.group(2))
            try:
                stamp = datetime(
                    _year_for(month, day, now),
                    month,
                    day,
                    int(found.group(3)),
                    int(found.group(4)),
                    int(found.group(5)),
                    int((found.group(6) or "0").ljust(6, "0")),
                    tzinfo=UTC,
                )
                when = stamp.timestamp()
            except ValueError:
                when = None
        rest = rest[found.end() :]
    elif rest[:4].isdigit() and "T" in rest[:11]:  # rsyslog's high-precision ISO stamp
        stamp_text, _, rest = rest.partition(" ")
        when = parse_time(stamp_text)
    host, _, body = rest.partition(" ")
    if host and not host.endswith(":"):
        out["hostname"] = host
    else:
        body = rest
    tag = None if body.startswith("CEF:") else _TAG.match(body)
    if tag:
        out["program"] = tag.group(1)
        if tag.group(2):
            out["pid"] = tag.group(2)
        body = body[tag.end() :]
    out["message"] = body
    return when


def parse_cef(text: str, out: dict[str, Any]) -> bool:
    """A `CEF:Version|Vendor|Product|Version|ID|Name|Severity|ext` text into fields."""
    start = text.find("CEF:")
    if start < 0:
        return False
    parts: list[str] = []
    current: list[str] = []
    position = start + 4
    end = len(text)
    while position < end and len(parts) < 7:
        char = text[position]
        if char == "\\" and position + 1 < end:
            current.append(text[position + 1])
            position += 2
            continue
        if char == "|":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        position += 1
    if len(parts) < 7:
        return False
    out.update(zip(CEF_HEADER, parts, strict=True))
    extension = text[position:]
    keys = list(_CEF_KEY.finditer(extension))
    for index, key in enumerate(keys):
        stop = keys[index + 1].start() if index + 1 < len(keys) else len(extension)
        value = extension[key.end() : stop].rstrip(" ")
        out[key.group(1)] = (
            value.replace("\\=", "=")
            .replace("\\n", "\n")
            .replace("\\r", "\r")
            .replace("\\\\", "\\")
        )
    return True


# Sysmon for Linux writes `&lt unknown process&gt ` (entities without their semicolon).
_BARE_ENTITY = re.compile(r"&(lt|gt|amp|quot|apos)(?![;a-z])")
# What can be read of an event whose XML was cut short (syslog relays truncate long messages).
_SALVAGE = re.compile(r'<Data Name="([^"<>]{1,128})">([^<]{0,65536})</Data>')
_SALVAGE_SYSTEM = re.compile(r"<(EventID|Computer|Channel|EventRecordID)>([^<]{0,256})</\1>")


def _is_number(text: str) -> bool:
    """ASCII digits (`²` is a digit to str.isdigit() but not to int()), ten at most."""
    return text.isascii() and text.isdigit() and len(text) <= 10


def parse_sysmon_xml(text: str) -> tuple[dict[str, Any], bool] | None:
    """The fields of a Sysmon for Linux `<Event>` XML (EVTX names) and whether the XML was
    whole; None when the text is no such event. From XML cut short, the complete elements
    before the cut are read."""
    start = text.find("<Event")
    if start < 0:
        return None
    xml = _BARE_ENTITY.sub(r"&\1;", text[start:])
    try:
        root = ElementTree.fromstring(xml)
    except (ElementTree.ParseError, DefusedXmlException, ValueError):
        out: dict[str, Any] = {}
        for name, value in _SALVAGE_SYSTEM.findall(xml):
            out[name] = int(value) if name == "EventID" and _is_number(value) else value
        if "EventID" not in out:
            return None
        for name, value in _SALVAGE.findall(xml):
            out[name] = value.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        return out, False
    out = {}
    for section in root:
        tag = section.tag.rsplit("}", 1)[-1]
        if tag == "System":
            for item in section:
                name = item.tag.rsplit("}", 1)[-1]
                for attribute, value in item.attrib.items():
                    out[f"{name}_{attribute}"] = value
                if item.text and item.text.strip():
                    value = item.text.strip()
                    out[name] = int(value) if name == "EventID" and _is_number(value) else value
        elif tag in ("EventData", "UserData"):
            for item in section:
                name = item.attrib.get("Name") or item.tag.rsplit("}", 1)[-1]
                out[name] = item.text or ""
    return out, True


def parse_line(text: str, now: datetime | None = None) -> tuple[dict[str, Any], float | None]:
    """The fields and time of one syslog line (any of the forms this module reads)."""
    out: dict[str, Any] = {}
    now = now or datetime.now(UTC)
    rest = _pri(text, out)
    if rest.startswith("1 ") and "facility" in out:
        when = _rfc5424(rest, out)
    elif rest.startswith("CEF:"):
        when = None
        out["message"] = rest
    else:
        when = _rfc3164(rest, out, now)
    return out, when


def enrich(fields: dict[str, Any]) -> str | None:
    """Add what the message holds (CEF, Sysmon XML) to the fields; the kind found, or None."""
    message = fields.get("message")
    if type(message) is not str:
        return None
    if "CEF:" in message[:64] and parse_cef(message, fields):
        return "cef"
    if message.startswith("<Event"):
        sysmon = parse_sysmon_xml(message)
        if sysmon is not None:
            fields.update(sysmon[0])
            return "sysmon" if sysmon[1] else "sysmon-truncated"
    program = fields.get("program")
    if program == "sshd":
        login = sshd_login(message)
        if login is not None:  # who tried to log in from where, for rules to count by
            outcome, user, peer, port = login
            fields.update(outcome=outcome, user=user, src_ip=peer)
            if port is not None:
                fields["src_port"] = port
        return None
    if program == "dnsmasq":
        query = _DNSMASQ_QUERY.match(message[:1400])
        if query is None:
            return None
        peer, record_type, name, asker = query.groups()
        fields.update(record_type=record_type, query=name, src_ip=peer or asker)
        return "dns"
    if program in _PACKET_LOGGERS and "IN=" in message and " SRC=" in message:
        return "netfilter" if parse_netfilter(message, fields) else None
    return None


def parse_netfilter(message: str, out: dict[str, Any]) -> bool:
    """A netfilter packet log line (`PREFIX IN=eth0 OUT= SRC=... DST=... PROTO=TCP SPT=...
    DPT=... SYN`, from the kernel or ulogd): its addresses, ports, protocol, TCP flags and
    the rule's log prefix. False when it holds no source address."""
    at = message.find("IN=")
    prefix = message[:at].strip()
    if prefix.startswith("[") and "]" in prefix:  # the kernel's uptime stamp
        prefix = prefix[prefix.index("]") + 1 :].strip()
    found: dict[str, Any] = {}
    flags = []
    for token in message[at : at + MAX_PACKET_LOG].split():
        key, equals, value = token.partition("=")
        if equals:
            name = _NETFILTER_KEYS.get(key)
            if name is None or name in found:
                continue
            if name in _NETFILTER_NUMBERS:
                if value.isdigit():
                    found[name] = int(value)
            elif name == "protocol":
                found[name] = value.lower()
            elif value:
                found[name] = value
        elif token in _TCP_FLAGS:
            flags.append(token)
    if "src_ip" not in found or "protocol" not in found:
        return False
    out.update(found)
    if prefix:
        out["prefix"] = prefix
    if flags and found["protocol"] == "tcp":  # not the IP header's (DF, CE, MF)
        out["tcp_flags"] = " ".join(flags)
    return True


def tag(event: Event, kind: str | None, from_auth_log: bool = False) -> None:
    """Logsource and dataset of a syslog event."""
    fields = event.fields
    if kind == "cef":
        event.dataset = "cef"
        event.product = None
        return
    event.product = "linux"
    if kind in ("sysmon", "sysmon-truncated"):
        event.dataset = "linux.sysmon"
        event.service = "sysmon"
        return
    if kind == "dns":  # a resolver's query log
        event.dataset = "linux.dnsmasq"
        event.service = ("syslog", "dnsmasq")
        return
    if kind == "netfilter":  # the firewall's packet log
        event.dataset = "linux.netfilter"
        event.service = ("syslog", "netfilter")
        return
    services = ["syslog"]
    program = str(fields.get("program") or "").lower()
    service = LINUX_SERVICES.get(program)
    if service:
        services.append(service)
    if (
        from_auth_log
        or fields.get("facility") in ("auth", "authpriv")
        or service
        in (
            "sshd",
            "sudo",
        )
    ):
        services.append("auth")
    event.service = tuple(dict.fromkeys(services))
    event.dataset = "linux.auth" if "auth" in services else "syslog"


TRUNCATED = "Sysmon event XML cut short (by a syslog relay?): fields read up to the cut"

# (line number, fields, time)
Raw = tuple[int, dict[str, Any], float | None]


def read(source: Input, report: FileReport) -> Iterator[list[Raw]]:
    return batched(_records(source, report), BATCH)


def _records(source: Input, report: FileReport) -> Iterator[Raw]:
    now = datetime.now(UTC)
    for number, raw in numbered_lines(source, report):
        fields, when = parse_line(raw.decode("utf-8", "replace").rstrip("\r\x00"), now)
        if "message" not in fields:
            report.reject(number, "not a syslog line", raw=raw)
            continue
        yield number, fields, when


def to_events(records: list[Raw], report: FileReport) -> list[Event]:
    auth_log = "auth.log" in report.path or report.path.endswith("/secure")
    return [line_event(fields, when, number, report, auth_log) for number, fields, when in records]


def line_event(
    fields: dict[str, Any],
    when: float | None,
    number: int | str,
    report: FileReport,
    from_auth_log: bool = False,
    format: str = NAME,
) -> Event:
    """A parsed syslog line as an event, with what its message holds (CEF, Sysmon XML)."""
    kind = enrich(fields)
    if kind == "sysmon-truncated":
        report.warn(number, TRUNCATED)
    event = Event(fields=fields, source=report.path, record=number, time=when, format=format)
    tag(event, kind, from_auth_log)
    return event
