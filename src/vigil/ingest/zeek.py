"""Zeek logs: the TSV format with its `#fields`/`#types` header, and Zeek's JSON records.

Every log type is read the same way; the type (`conn`, `dns`, `http`, ...) comes from `#path`
(TSV), `_path` or `@stream` (JSON), or else the file name (`NASHUA_dns.log`, `dns.json.gz`).
Events carry Zeek's own field names with dots (`id.orig_h`); JSON that writes them with
underscores (`id_orig_h`, as some exporters do) is renamed to the dotted form Sigma rules use.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from vigil.events import Event, parse_time
from vigil.ingest.base import FileReport, Input, batched, numbered_lines

NAME = "zeek"
BATCH = 2048

# Zeek's connection id fields, as JSON exporters that cannot write dots name them.
UNDERSCORED = {
    "id_orig_h": "id.orig_h",
    "id_orig_p": "id.orig_p",
    "id_resp_h": "id.resp_h",
    "id_resp_p": "id.resp_p",
}
# Log types whose events are also Sigma's generic network categories.
CATEGORIES = {"dns": "dns", "http": "proxy", "conn": "firewall"}

# Zeek's log types (several hold an underscore, so a file name's prefix cannot be cut there).
LOG_TYPES = frozenset(
    [
        "analyzer",
        "capture_loss",
        "conn",
        "dce_rpc",
        "dhcp",
        "dnp3",
        "dns",
        "dpd",
        "files",
        "ftp",
        "http",
        "intel",
        "irc",
        "kerberos",
        "known_certs",
        "known_hosts",
        "known_modbus",
        "known_services",
        "ldap",
        "ldap_search",
        "loaded_scripts",
        "modbus",
        "mqtt_connect",
        "mqtt_publish",
        "mqtt_subscribe",
        "mysql",
        "notice",
        "ntlm",
        "ntp",
        "ocsp",
        "openflow",
        "packet_filter",
        "pe",
        "quic",
        "radius",
        "rdp",
        "reporter",
        "signatures",
        "sip",
        "smb_files",
        "smb_mapping",
        "smtp",
        "snmp",
        "socks",
        "software",
        "ssh",
        "ssl",
        "stats",
        "syslog",
        "traceroute",
        "tunnel",
        "weird",
        "x509",
    ]
)


def sniff(head: bytes) -> bool:
    return head.startswith(b"#separator")


def log_type_from_name(name: str) -> str | None:
    """`conn` for `.../conn.log`, `NASHUA_dns.log`, `dns.json.gz`, `conn.log.labeled`,
    `labeled-conn.log`, `dce_rpc.log`; None when the name holds no Zeek log type."""
    stem = name.replace("\\", "/").rsplit("/", 1)[-1].lower().split(".", 1)[0]
    if stem in LOG_TYPES:
        return stem
    for size in range(len(stem) - 1, 0, -1):
        if stem[-size - 1] in "_-" and stem[-size:] in LOG_TYPES:
            return stem[-size:]
    return None


def tag(event: Event, log_type: str | None) -> None:
    """Logsource and dataset of a Zeek event of this log type."""
    event.product = "zeek"
    if log_type:
        event.service = log_type
        event.category = CATEGORIES.get(log_type)
        event.dataset = f"zeek.{log_type}"
    else:
        event.dataset = "zeek"


def normalise_json(doc: dict[str, Any]) -> dict[str, Any]:
    """A Zeek JSON record with the dotted id names (in place)."""
    if "id_orig_h" in doc or "id_resp_h" in doc:
        for old, new in UNDERSCORED.items():
            if old in doc:
                doc[new] = doc.pop(old)
    return doc


def json_log_type(doc: dict[str, Any]) -> str | None:
    value = doc.get("_path") or doc.get("@stream")
    return str(value) if value else None


def looks_like_json(doc: dict[str, Any]) -> bool:
    """A Zeek JSON record: a `ts` and Zeek's uid or id fields, or a Zeek path marker."""
    if "_path" in doc or ("@stream" in doc and "@proc" in doc):
        return True
    return "ts" in doc and ("uid" in doc or "id.orig_h" in doc or "id_orig_h" in doc)


# --- TSV ------------------------------------------------------------------------------------


@dataclass
class Header:
    separator: bytes = b"\t"
    text_separator: str | None = "\t"  # the separator as text; None when it is no UTF-8
    set_separator: str = ","
    empty: str = "(empty)"
    unset: str = "-"
    path: str | None = None
    names: list[str] = field(default_factory=list)
    converters: list[Callable[[str], Any]] = field(default_factory=list)

    def split(self, line: bytes) -> list[str]:
        """The values of a line (decoded), cut at the separator."""
        if self.text_separator is not None:
            return line.decode("utf-8", "replace").split(self.text_separator)
        # a separator byte that is no UTF-8 could not be found again once decoded
        return [value.decode("utf-8", "replace") for value in line.split(self.separator)]


def _bool(text: str) -> Any:
    return text == "T" if text in ("T", "F") else text


def _number(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            return text

    return convert


_SCALARS: dict[str, Callable[[str], Any]] = {
    "count": _number(int),
    "int": _number(int),
    "port": _number(int),
    "double": _number(float),
    "time": _number(float),
    "interval": _number(float),
    "bool": _bool,
}


def _converter(zeek_type: str, header: Header) -> Callable[[str], Any]:
    if zeek_type.startswith(("set[", "vector[", "table[")):
        inner = _SCALARS.get(zeek_type[zeek_type.index("[") + 1 : -1], str)
        separator = header.set_separator

        def items(text: str) -> Any:
            if text == header.empty:
                return []
            return [inner(part) for part in text.split(separator)]

        return items
    return _SCALARS.get(zeek_type, str)


# Zeek writes the separator as `\xHH`; `\t` and `\\` are taken too, anything else as it is.
_ESCAPE = re.compile(rb"\\(x[0-9A-Fa-f]{2}|t|\\)")


def _unescape(found: re.Match[bytes]) -> bytes:
    code = found.group(1)
    return b"\t" if code == b"t" else b"\\" if code == b"\\" else bytes([int(code[1:], 16)])


def _directive(line: bytes, header: Header) -> str | None:
    """Take one header line into `header`; what is wrong with the line, if anything (the
    header then keeps what it had)."""
    if line.startswith(b"#separator"):
        value = line[len(b"#separator") :].strip()
        separator = _ESCAPE.sub(_unescape, value) if value else b"\t"
        header.separator = separator
        try:
            header.text_separator = separator.decode()
        except UnicodeDecodeError:
            header.text_separator = None
        return None
    name, *values = header.split(line[1:])
    values = values or [""]
    rest = (header.text_separator or header.separator.decode("utf-8", "replace")).join(values)
    if name == "set_separator":
        if not rest:
            return f"empty #set_separator; the set separator stays {header.set_separator!r}"
        header.set_separator = rest
    elif name == "empty_field":
        header.empty = rest
    elif name == "unset_field":
        header.unset = rest
    elif name == "path":
        header.path = rest
    elif name == "fields":
        header.names = values
        header.converters = [str] * len(values)
    elif name == "types":
        if header.names and len(values) != len(header.names):
            header.converters = [str] * len(header.names)
            return (
                f"#types names {len(values)} types for {len(header.names)} #fields; "
                "values are read as text"
            )
        header.converters = [_converter(t, header) for t in values]
    return None


# (line number, fields, log type)
Raw = tuple[int, dict[str, Any], str | None]


def read(source: Input, report: FileReport) -> Iterator[list[Raw]]:
    """Records of a Zeek TSV log as (line number, fields, log type). Several logs concatenated
    (each with its own header) are read alike; a line with another number of columns than
    its header is rejected."""
    return batched(_records(source, report), BATCH)


def _records(source: Input, report: FileReport) -> Iterator[Raw]:
    header = Header()
    fallback = log_type_from_name(source.name)
    for number, line in numbered_lines(source, report):
        if line[:1] == b"#":
            if not line.startswith((b"#open", b"#close")):
                problem = _directive(line.rstrip(b"\r"), header)
                if problem:
                    report.warn(number, problem)
            continue
        if not header.names:
            report.reject(number, "data line before the #fields header", raw=line)
            continue
        values = header.split(line.rstrip(b"\r"))
        if len(values) != len(header.names):
            report.reject(
                number,
                f"{len(values)} columns where the header names {len(header.names)}",
                raw=line,
            )
            continue
        unset = header.unset
        fields = {
            name: convert(value)
            for name, convert, value in zip(header.names, header.converters, values, strict=True)
            if value != unset
        }
        yield number, fields, header.path or fallback


def to_events(records: list[Raw], report: FileReport) -> list[Event]:
    events = []
    for number, fields, log_type in records:
        event = Event(fields=fields, source=report.path, record=number, format=NAME)
        ts = fields.get("ts")
        # `nan`, `inf` and `1e999` are floats too: no time rather than one out of range
        event.time = parse_time(ts) if type(ts) is float else None
        tag(event, log_type)
        events.append(event)
    return events
