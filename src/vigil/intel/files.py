"""Reading intelligence files: plain or gzip, JSON decoded, with the errors importers report;
and fetching them over HTTP(S) (files and MISP feeds), size-capped."""

from __future__ import annotations

import gzip
import ssl
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
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


MAX_DOWNLOAD = 512 << 20
TIMEOUT = 60  # seconds to connect, and for each read
MAX_REDIRECTS = 10  # followed (as many as urllib, what files were fetched with before, did)


class DownloadTooLarge(OSError):
    """A file past MAX_DOWNLOAD (the rest is not fetched)."""


def http_client() -> httpx.Client:
    """What files and feeds are fetched with: the system's certificate authorities,
    redirects followed, the body as sent (`identity`)."""
    return httpx.Client(
        headers={"User-Agent": "vigil", "Accept-Encoding": "identity"},
        timeout=TIMEOUT,
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        verify=ssl.create_default_context(),
    )


def fetch(client: httpx.Client, url: str, write: Callable[[bytes], object]) -> None:
    """The body at `url` handed to `write` as it comes; OSError with the reason for an HTTP
    status other than 2xx or no answer, DownloadTooLarge past MAX_DOWNLOAD."""
    size = 0
    try:
        with client.stream("GET", url) as response:
            if not response.is_success:
                raise OSError(f"HTTP Error {response.status_code}: {response.reason_phrase}")
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_DOWNLOAD:
                    raise DownloadTooLarge(f"larger than {MAX_DOWNLOAD >> 20} MiB")
                write(chunk)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise OSError(str(exc) or type(exc).__name__) from None


def safe_url(url: str) -> str:
    """A URL without credentials, for messages."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"
