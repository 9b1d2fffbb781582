"""A recording's records as Vigil's HTTP intake takes them, one JSON text each: an EVTX file
(plain or gzip'd) as evtx-rs JSON documents (what SigmaHQ's samples hold), JSON lines as
they are, a JSON array or a CloudTrail file (`{"Records": [...]}`) element by element."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import orjson

from vigil.errors import Invalid

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
    """The recording's records, in order (Invalid when it is none of the kinds read)."""
    data = _bytes(path)
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


__all__ = ["records"]
