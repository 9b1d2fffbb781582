"""Alerts raised by other tools, read as `AlertIn`: Wazuh alerts (alerts.json, one JSON
object per line), Suricata EVE alerts (JSON lines or a JSON array) and any CSV or JSON
lines with a field mapping. A record that cannot be read is counted and set aside with its
reason; the rest goes on.

    alerts, report = read_alerts(path, "csv", mapping=AIT_MAPPING)
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from vigil.correlate.model import ENTITY_KINDS, AlertIn
from vigil.detect.detection import tactics_of
from vigil.errors import InputError
from vigil.events.entities import entities_in, entity_values
from vigil.events.model import parse_time
from vigil.events.records import Entity
from vigil.ingest import FileReport
from vigil.ingest.body import gunzip


@dataclass(frozen=True)
class Mapping:
    """Which column holds what, for CSV or generic JSON alerts. `entities` maps an entity
    kind to the columns naming it; `labels` are columns kept as they are (ground truth)."""

    time: str
    rule: str
    title: str | None = None
    level: str | None = None
    entities: dict[str, tuple[str, ...]] = field(default_factory=dict)
    tactics: str | None = None
    labels: tuple[str, ...] = ()
    source: str = "csv"


# The AIT Alert Data Set (Landauer et al.): Wazuh, Suricata and AMiner alerts as CSV.
AIT_MAPPING = Mapping(
    time="time",
    rule="short",
    title="name",
    entities={"host": ("host",), "ip": ("ip",)},
    labels=("time_label", "event_label"),
    source="ait",
)


def mapping_from_pairs(pairs: list[str], source: str = "csv") -> Mapping:
    """A mapping from `KEY=COLUMN` pairs (time, rule, title, level, label and the entity
    kinds; entity kinds and label may repeat)."""
    given: dict[str, list[str]] = {}
    for pair in pairs:
        key, sep, column = pair.partition("=")
        if not sep or not column:
            raise InputError(f"a mapping is KEY=COLUMN, not {pair!r}")
        given.setdefault(key.strip(), []).append(column.strip())
    if "time" not in given or "rule" not in given:
        raise InputError("csv/json alerts need a mapping of time=COLUMN and rule=COLUMN")
    entity_kinds = ENTITY_KINDS
    known = {"time", "rule", "title", "level", "label", *entity_kinds}
    unknown = set(given) - known
    if unknown:
        raise InputError(
            f"a mapping knows {', '.join(sorted(known))}, not {', '.join(sorted(unknown))}"
        )
    return Mapping(
        time=given["time"][0],
        rule=given["rule"][0],
        title=given.get("title", [None])[0],
        level=given.get("level", [None])[0],
        entities={k: tuple(given[k]) for k in entity_kinds if k in given},
        labels=tuple(given.get("label", [])),
        source=source,
    )


@dataclass
class AlertReport(FileReport):
    """What reading one alert file gave (`FileReport`'s counts and caps). The records set
    aside are kept: an upload has nowhere else to go."""

    keep_raw: bool = True

    @property
    def read(self) -> int:
        return self.records_read

    @property
    def rejected(self) -> int:
        return self.records_rejected


def read_alerts(
    path: Path, kind: str, mapping: Mapping | None = None
) -> tuple[list[AlertIn], AlertReport]:
    """Every alert of one file (`kind`: wazuh, suricata, csv, json; `.gz` is read too)."""
    return _read(Source(path.name, lambda: _open_file(path), str(path)), kind, mapping)


MAX_UNPACKED = 1 << 30  # an uploaded .gz may unpack to this much at most, by default


def parse_alerts(
    name: str,
    data: bytes,
    kind: str,
    mapping: Mapping | None = None,
    *,
    max_unpacked: int = MAX_UNPACKED,
) -> tuple[list[AlertIn], AlertReport]:
    """The alerts of a file's content (an upload), gzip-compressed (every member read) or
    not; one that unpacks past `max_unpacked` bytes is refused (TooLarge) as it unpacks."""
    raw = gunzip(data, max_unpacked, name)

    def opened() -> io.TextIOBase:
        return io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8", errors="replace")

    return _read(Source(name, opened, name), kind, mapping)


@dataclass(frozen=True)
class Source:
    name: str  # the file's name (part of each alert's id)
    open: Callable[[], io.TextIOBase]
    where: str  # for messages


def _read(source: Source, kind: str, mapping: Mapping | None) -> tuple[list[AlertIn], AlertReport]:
    reader = READERS.get(kind)
    if reader is None:
        raise InputError(
            f"{source.where}: unknown alert format {kind!r} (one of {', '.join(READERS)})"
        )
    if kind in ("csv", "json") and mapping is None:
        raise InputError(f"{source.where}: {kind} alerts need a field mapping")
    report = AlertReport(source.where)
    alerts = list(reader(source, mapping, report))
    return alerts, report


def _open_file(path: Path) -> io.TextIOBase:
    try:
        if path.suffix == ".gz":
            return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
        return open(path, encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc


def _json_records(source: Source, report: AlertReport) -> Iterator[tuple[int, dict[str, Any]]]:
    """JSON lines, or one JSON array (Suricata samples come that way)."""
    with source.open() as handle:
        text = handle.read()
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            values = orjson.loads(stripped)
        except orjson.JSONDecodeError as exc:
            report.reject(0, f"invalid JSON array: {exc}")
            return
        lines: Iterator[tuple[int, Any]] = enumerate(values, 1)
    else:
        lines = ((n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip())
    for number, item in lines:
        value = item
        if isinstance(item, str):
            try:
                value = orjson.loads(item)
            except orjson.JSONDecodeError as exc:
                report.reject(number, f"invalid JSON: {exc}")
                continue
        if not isinstance(value, dict):
            report.reject(number, f"a JSON {type(value).__name__}, not an object")
            continue
        yield number, value


def _get(record: dict[str, Any], dotted: str) -> Any:
    if dotted in record:
        return record[dotted]
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _alert_id(tool: str, source: Source, number: int, record: Any) -> str:
    body = orjson.dumps(record, option=orjson.OPT_SORT_KEYS, default=str)
    digest = hashlib.sha256(f"{tool}\0{source.name}\0{number}\0".encode() + body).hexdigest()
    return f"{tool}-{digest[:20]}"


# --- Wazuh -------------------------------------------------------------------------------


# Wazuh rule levels 0–15 to Vigil levels.
def _wazuh_level(level: Any) -> str:
    try:
        number = int(level)
    except (TypeError, ValueError):
        return "medium"
    if number >= 13:
        return "critical"
    if number >= 10:
        return "high"
    if number >= 6:
        return "medium"
    if number >= 3:
        return "low"
    return "informational"


def _wazuh(source: Source, _: Mapping | None, report: AlertReport) -> Iterator[AlertIn]:
    for number, record in _json_records(source, report):
        rule = record.get("rule")
        when = parse_time(record.get("timestamp"))
        if not isinstance(rule, dict) or when is None:
            report.reject(number, "a Wazuh alert has `rule` and `timestamp`")
            continue
        view = {  # the alert's ECS view
            "host.name": _get(record, "agent.name"),
            "host.ip": _get(record, "agent.ip"),
            "source.ip": _get(record, "data.srcip"),
            "destination.ip": _get(record, "data.dstip"),
            "user.name": _get(record, "data.dstuser") or _get(record, "data.srcuser"),
        }
        mitre = rule.get("mitre")
        mitre = mitre if isinstance(mitre, dict) else {}
        tactics = [f"attack.{str(t).lower().replace(' ', '-')}" for t in mitre.get("tactic", [])]
        report.records_read += 1
        yield AlertIn(
            id=_alert_id("wazuh", source, number, record),
            time=when,
            rule=f"wazuh:{rule.get('id', '?')}",
            title=str(rule.get("description") or rule.get("id") or "Wazuh alert"),
            level=_wazuh_level(rule.get("level")),
            source="wazuh",
            entities=entities_in(view),
            tactics=tactics_of(tactics),
            record=record,
        )


# --- Suricata ------------------------------------------------------------------------------

_SURICATA_LEVEL = {1: "high", 2: "medium", 3: "low", 4: "informational"}


def _suricata(source: Source, _: Mapping | None, report: AlertReport) -> Iterator[AlertIn]:
    for number, record in _json_records(source, report):
        if record.get("event_type") != "alert":
            continue  # flows, DNS, ... are events, not alerts
        alert = record.get("alert")
        when = parse_time(record.get("timestamp"))
        if not isinstance(alert, dict) or when is None:
            report.reject(number, "a Suricata alert has `alert` and `timestamp`")
            continue
        view = {"source.ip": record.get("src_ip"), "destination.ip": record.get("dest_ip")}
        if record.get("host"):
            view["host.name"] = record["host"]
        metadata = alert.get("metadata")
        metadata = metadata if isinstance(metadata, dict) else {}
        tactics = [f"attack.{t}" for t in metadata.get("mitre_tactic_name", []) or []]
        report.records_read += 1
        yield AlertIn(
            id=_alert_id("suricata", source, number, record),
            time=when,
            rule=f"suricata:{alert.get('gid', 1)}:{alert.get('signature_id', '?')}",
            title=str(alert.get("signature") or "Suricata alert"),
            level=_SURICATA_LEVEL.get(alert.get("severity"), "medium"),  # type: ignore[arg-type]
            source="suricata",
            record=record,
            entities=entities_in(view),
            tactics=tactics_of([t.lower().replace("_", "-") for t in tactics]),
        )


# --- CSV and generic JSON ------------------------------------------------------------------


def _mapped(
    number: int, record: dict[str, Any], mapping: Mapping, source: Source, report: AlertReport
) -> AlertIn | None:
    when = _when(_get(record, mapping.time))
    rule = _get(record, mapping.rule)
    if when is None or rule in (None, ""):
        report.reject(number, f"no time in `{mapping.time}` or no rule in `{mapping.rule}`")
        return None
    entities: list[Entity] = []
    for kind, columns in mapping.entities.items():
        for column in columns:
            for value in entity_values(kind, _get(record, column)):
                if (kind, value) not in entities:
                    entities.append((kind, value))
    level = str(_get(record, mapping.level) or "medium").lower() if mapping.level else "medium"
    tactics = _get(record, mapping.tactics) if mapping.tactics else None
    report.records_read += 1
    return AlertIn(
        id=_alert_id(mapping.source, source, number, record),
        time=when,
        rule=str(rule),
        title=str(_get(record, mapping.title) or rule) if mapping.title else str(rule),
        level=level,
        source=mapping.source,
        entities=tuple(entities),
        tactics=tactics_of([f"attack.{t}" for t in str(tactics or "").split(",") if t]),
        labels={name: _get(record, name) for name in mapping.labels},
        record=dict(record),
    )


def _when(value: Any) -> float | None:
    """A time stamp, or epoch seconds (or milliseconds) written as text, as CSV has them."""
    if isinstance(value, str) and value.replace(".", "", 1).isdigit():
        return parse_time(float(value))
    return parse_time(value)


def _csv(source: Source, mapping: Mapping | None, report: AlertReport) -> Iterator[AlertIn]:
    assert mapping is not None
    with source.open() as handle:
        rows = csv.DictReader(handle)
        missing = {mapping.time, mapping.rule} - set(rows.fieldnames or ())
        if missing:
            raise InputError(f"{source.where}: the CSV has no column {', '.join(sorted(missing))}")
        for number, row in enumerate(rows, 2):
            if None in row:  # more values than columns
                report.reject(number, "more values than the header has columns")
                continue
            alert = _mapped(number, row, mapping, source, report)
            if alert is not None:
                yield alert


def _json(source: Source, mapping: Mapping | None, report: AlertReport) -> Iterator[AlertIn]:
    assert mapping is not None
    for number, record in _json_records(source, report):
        alert = _mapped(number, record, mapping, source, report)
        if alert is not None:
            yield alert


READERS: dict[str, Callable[[Source, Mapping | None, AlertReport], Iterator[AlertIn]]] = {
    "wazuh": _wazuh,
    "suricata": _suricata,
    "csv": _csv,
    "json": _json,
}
