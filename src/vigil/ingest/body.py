"""Bodies sent to the HTTP ingest endpoint: NDJSON (one event per line) or JSON (one object
or an array of them), plain or gzip, split into one record per event.

One request may cost only a small multiple of its size in memory, whatever its shape:
the records are counted before they are split (`max_records`), a JSON body is decoded only
when the number of values it can hold is within budget (a decoded value costs tens of bytes
however few it takes in the text), and a gzip body is inflated in steps up to
`max_bytes`. A record nested deeper than `MAX_DEPTH` is set aside with its reason; the rest
of the request goes on.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import cast

import orjson

from vigil.errors import InputError, TooLarge, Unsupported
from vigil.ingest.base import MAX_DEPTH, Problem, too_deep

NDJSON_TYPES = frozenset(
    (
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/x-jsonlines",
        "application/jsonlines",
        "text/plain",
    )
)
JSON_TYPES = frozenset(("application/json",))
ENCODINGS = frozenset(("identity", "gzip", "x-gzip"))
# A decoded JSON value costs up to ~80 bytes (a dict and its slot) for as little as two
# bytes of text (`{}`): a body may hold one value per this many bytes of the limit, so that
# decoding it costs at most about five times the limit.
BYTES_PER_VALUE = 16


@dataclass(frozen=True)
class BodyLimits:
    max_bytes: int  # of the body, once inflated
    max_records: int  # events in one request
    max_depth: int = MAX_DEPTH


@dataclass
class Records:
    """A body split: one JSON text per event, and the records set aside (1-based number in
    the body, reason and text)."""

    records: list[bytes | bytearray] = field(default_factory=list)
    rejected: list[tuple[Problem, bytes | bytearray]] = field(default_factory=list)


def body_kind(content_type: str | None, content_encoding: str | None) -> tuple[str, bool]:
    """("ndjson" or "json", gzip?) for a request's headers; Unsupported for anything else.
    No content type at all is taken as NDJSON."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind in JSON_TYPES:
        shape = "json"
    elif kind in NDJSON_TYPES or not kind:
        shape = "ndjson"
    else:
        accepted = ", ".join(sorted(NDJSON_TYPES | JSON_TYPES))
        raise Unsupported(f"content type {kind!r} is not read here (send one of {accepted})")
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    unknown = [c for c in codings if c not in ENCODINGS]
    if unknown or len([c for c in codings if c != "identity"]) > 1:
        raise Unsupported(
            f"content encoding {content_encoding!r} is not read here (send gzip or identity)"
        )
    return shape, any(c in ("gzip", "x-gzip") for c in codings)


class Inflater:
    """Inflates gzip data as it arrives (every member, one after another) into a buffer,
    in steps of at most `STEP` bytes, refusing to give more than `max_bytes` in all: a
    small bomb costs no more than a large honest body."""

    STEP = 1 << 20

    def __init__(self, max_bytes: int, what: str = "the body") -> None:
        self.max_bytes = max_bytes
        self.what = what
        self.size = 0
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._started = False

    def feed(self, data: bytes | bytearray, into: bytearray) -> None:
        """Inflate `data` onto the end of `into`."""
        while data:
            self._started = True
            room = self.max_bytes - self.size + 1
            try:
                part = self._inflate.decompress(data, min(room, self.STEP))
            except zlib.error as exc:
                raise InputError(f"{self.what} is not readable gzip: {exc}") from None
            self.size += len(part)
            if self.size > self.max_bytes:
                raise TooLarge(f"{self.what} inflates to more than {self.max_bytes:,} bytes")
            into += part
            if self._inflate.unconsumed_tail:
                data = self._inflate.unconsumed_tail
            elif self._inflate.eof:
                data = self._inflate.unused_data
                self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._started = False
            else:
                data = b""

    def close(self) -> None:
        """The end of the data: a gzip member cut short is an error."""
        if self._started and not self._inflate.eof:
            raise InputError(f"{self.what} is gzip cut short (no end of stream)")


async def read_body(
    chunks: AsyncIterator[bytes], *, max_bytes: int, gzip: bool = False, what: str = "the body"
) -> bytearray:
    """A request body read as it streams (kept once, not copied), refused (TooLarge) past
    `max_bytes` sent or, for gzip, past `max_bytes` inflated."""
    body = bytearray()
    sent = 0
    inflater = Inflater(max_bytes, what) if gzip else None
    async for chunk in chunks:
        sent += len(chunk)
        if sent > max_bytes:
            raise TooLarge(f"{what} is larger than {max_bytes:,} bytes")
        if inflater is not None:
            inflater.feed(chunk, body)
        else:
            body += chunk
    if inflater is not None:
        inflater.close()
    return body


def gunzip(data: bytes | bytearray, max_bytes: int, what: str) -> bytes | bytearray:
    """Bytes inflated if they are gzip (every member), up to `max_bytes`; as they are if not."""
    if data[:2] != b"\x1f\x8b":
        return data
    inflater = Inflater(max_bytes, what)
    out = bytearray()
    inflater.feed(data, out)
    inflater.close()
    return out


def split_records(body: bytes | bytearray, shape: str, limits: BodyLimits) -> Records:
    """The events of a body, one JSON text each (TooLarge past the limits, InputError for a
    JSON body that is not JSON)."""
    if shape == "json":
        return _split_json(body, limits)
    return _split_lines(body, limits)


def _values(text: bytes | bytearray) -> int:
    """At least as many as the JSON values in `text` (each but the first follows one of
    these bytes, or is a key or an object's value)."""
    return 1 + sum(text.count(mark) for mark in (b",", b"[", b"{", b":"))


def _split_lines(body: bytes | bytearray, limits: BodyLimits) -> Records:
    lines = body.count(b"\n") + (0 if body.endswith(b"\n") else 1)
    if lines > limits.max_records:
        raise TooLarge(
            f"{lines:,} lines in one request; at most {limits.max_records:,} events per request"
        )
    out = Records()
    budget = max(1, limits.max_bytes // BYTES_PER_VALUE)
    # bytearray lines act as bytes here
    for number, line in enumerate(cast("list[bytes]", body.split(b"\n")), 1):
        if not line.strip():
            continue
        if line.count(b"{") + line.count(b"[") > limits.max_depth:
            # a line with many brackets: find out how deep they go (decoding it is within
            # budget, or the line is refused without decoding)
            if _values(line) > budget:
                out.rejected.append(
                    (Problem(number, f"more than {budget:,} JSON values in one event"), line)
                )
                continue
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                out.rejected.append((Problem(number, f"invalid JSON: {exc}"), line))
                continue
            if too_deep(value, None, limits.max_depth):
                problem = Problem(number, f"nested more than {limits.max_depth} levels deep")
                out.rejected.append((problem, line))
                continue
        out.records.append(line)
    return out


def _split_json(body: bytes | bytearray, limits: BodyLimits) -> Records:
    budget = max(1, limits.max_bytes // BYTES_PER_VALUE)
    values = _values(body)
    if values > budget:
        raise TooLarge(
            f"a JSON body with up to {values:,} values; at most {budget:,} in one request "
            "(send NDJSON, one event per line, or fewer events per request)"
        )
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"not JSON: {exc}") from None
    items = value if isinstance(value, list) else [value]
    if len(items) > limits.max_records:
        raise TooLarge(
            f"{len(items):,} events in one request; at most {limits.max_records:,} per request"
        )
    out = Records()
    for number, item in enumerate(items, 1):
        text: bytes
        try:
            text = orjson.dumps(item)
        except orjson.JSONEncodeError:  # nested past what the encoder writes
            text = b""
        if not text or too_deep(item, text, limits.max_depth):
            problem = Problem(number, f"nested more than {limits.max_depth} levels deep")
            out.rejected.append((problem, text or _text(item)))
            continue
        out.records.append(text)
    return out


def _text(value: object) -> bytes:
    """A value too deep for orjson as JSON text all the same, to keep it set aside."""
    try:
        return json.dumps(value, separators=(",", ":")).encode()
    except (RecursionError, ValueError, TypeError):
        return b"(not kept: nested too deeply to write back)"
