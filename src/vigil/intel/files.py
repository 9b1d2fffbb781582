"""Reading intelligence files: plain or gzip, JSON decoded, with the errors importers report."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

import orjson

from vigil.errors import InputError


def read_bytes(path: Path) -> bytes:
    """The file's bytes as stored; InputError (with the reason) if it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None


def gunzip(data: bytes) -> bytes:
    """The bytes, decompressed if they are gzip; ValueError if the gzip is damaged."""
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"damaged gzip: {exc}") from None


def decode_json(data: bytes) -> Any:
    """A JSON document from bytes (gunzipped first if gzip); ValueError if damaged."""
    data = gunzip(data)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
