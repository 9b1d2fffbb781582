"""A recording's records as Vigil's HTTP intake takes them, one JSON text each: an EVTX file
(plain or gzip'd) as evtx-rs JSON documents (what SigmaHQ's samples hold), JSON lines as
they are, a JSON array or a CloudTrail file (`{"Records": [...]}`) element by element, a zip
archive (OTRF's Security Datasets) member by member.

`shifted` moves a recording's time stamps so its last record is now (an EVTX record's
`SystemTime`, CloudTrail's `eventTime`, Zeek's `ts`, a flat record's `@timestamp` and
kin), its spacing kept: a replay then
looks like an attack happening, to correlation windows and risk that decays with time."""

from __future__ import annotations

import gzip
import io
import zipfile
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from vigil.errors import Invalid
from vigil.events import parse_time

MAX_RECORDING_BYTES = 256 << 20  # inflated


def _bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as inflated:
                data = inflated.read(MAX_RECORDING_BYTES + 1)
    except (OSError, EOFError) as exc:
        raise Invalid(f"{path}: cannot read: {exc}") from None
    if len(data) > MAX_RECORDING_BYTES:
        raise Invalid(f"{path}: larger than {MAX_RECORDING_BYTES:,} bytes")
    return data


def records(path: Path) -> list[bytes]:
    """The recording's records, in order (Invalid when it is none of the kinds read); a zip
    archive's (as OTRF's Security Datasets come), member after member."""
    data = _bytes(path)
    if data[:4] == b"PK\x03\x04":
        return [r for member in _members(path, data) for r in _records(path, member)]
    return _records(path, data)


def _members(path: Path, data: bytes) -> list[bytes]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = [
                i.filename
                for i in archive.infolist()
                if not i.is_dir() and not i.filename.startswith("__MACOSX/")
            ]
            if sum(archive.getinfo(n).file_size for n in names) > MAX_RECORDING_BYTES:
                raise Invalid(f"{path}: inflates past {MAX_RECORDING_BYTES:,} bytes")
            return [archive.read(name) for name in sorted(names)]
    # unsupported compression (NotImplementedError), encrypted (RuntimeError), corrupt
    except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError, EOFError,
            zlib.error) as exc:  # fmt: skip
        raise Invalid(f"{path}: not a readable zip archive: {exc}") from None


def _records(path: Path, data: bytes) -> list[bytes]:
    if data[:8] == b"ElfFile\x00":
        from evtx import PyEvtxParser

        try:
            parser = PyEvtxParser(io.BytesIO(data))
            found = parser.records_json()
            return [orjson.dumps(orjson.loads(str(r["data"]))) for r in found if r is not None]
        except (RuntimeError, OSError, orjson.JSONDecodeError) as exc:
            raise Invalid(f"{path}: not a readable EVTX file: {exc}") from None
    text = data.lstrip()
    if text[:1] in (b"{", b"["):
        try:
            whole = orjson.loads(text)
        except orjson.JSONDecodeError:
            whole = None  # JSON lines
        if isinstance(whole, dict) and isinstance(whole.get("Records"), list):
            return [orjson.dumps(r) for r in whole["Records"]]
        if isinstance(whole, list):
            return [orjson.dumps(r) for r in whole]
        if isinstance(whole, dict):
            return [orjson.dumps(whole)]
    lines = [line for line in data.splitlines() if line.strip()]
    if not lines:
        raise Invalid(f"{path}: no records")
    return lines


# Flat records (Mordor's, Winlogbeat's, NXLog's): every time stamp they carry, moved alike
FLAT_TIMES = ("@timestamp", "TimeCreated", "EventTime", "EventReceivedTime", "timestamp")


def _stamps(doc: dict[str, Any]) -> list[tuple[dict[str, Any], str, str]]:
    """Where a record holds its time, the one read first: (the dict, the key, the kind: iso
    or epoch) each."""
    system = doc.get("Event", {}).get("System") if isinstance(doc.get("Event"), dict) else None
    if isinstance(system, dict):
        created = system.get("TimeCreated", {}).get("#attributes")
        if isinstance(created, dict) and isinstance(created.get("SystemTime"), str):
            return [(created, "SystemTime", "iso")]
    if isinstance(doc.get("eventTime"), str):
        return [(doc, "eventTime", "iso")]
    if isinstance(doc.get("ts"), int | float) and not isinstance(doc.get("ts"), bool):
        return [(doc, "ts", "epoch")]
    return [(doc, key, "iso") for key in FLAT_TIMES if isinstance(doc.get(key), str)]


def latest(lines: list[bytes]) -> float | None:
    """The latest time stamp of the records, if they carry any."""
    known = [t for t in _times([orjson.loads(line) for line in lines]) if t is not None]
    return max(known) if known else None


def _times(docs: list[Any]) -> list[float | None]:
    places = [_stamps(d) if isinstance(d, dict) else [] for d in docs]
    return [parse_time(place[0][0][place[0][1]]) if place else None for place in places]


def shifted(lines: list[bytes], now: float, last: float | None = None) -> list[bytes]:
    """The records with their time stamps moved so the latest is `now` (or so that `last`,
    the latest of several recordings replayed together, is: their timeline kept); records
    without a time stamp Vigil reads are left as they are."""
    docs = [orjson.loads(line) for line in lines]
    places = [_stamps(d) if isinstance(d, dict) else [] for d in docs]
    known = [t for t in _times(docs) if t is not None]
    if not known:
        return lines
    delta = now - (max(known) if last is None else last)
    out = []
    for doc, place in zip(docs, places, strict=True):
        for holder, key, kind in place:
            when = parse_time(holder[key])
            if when is None:
                continue
            moved = when + delta
            holder[key] = (
                moved
                if kind == "epoch"
                else datetime.fromtimestamp(moved, UTC).isoformat().replace("+00:00", "Z")
            )
        out.append(orjson.dumps(doc))
    return out


__all__ = ["latest", "records", "shifted"]
