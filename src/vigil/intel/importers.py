"""`vigil intel import`: any file, folder or URL of indicators to the right importer, chosen by
content (a STIX bundle, a MISP event, a MISP feed folder, a plain or CSV list)."""

from __future__ import annotations

import gzip
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from vigil.errors import InputError
from vigil.intel import lists, misp, stix
from vigil.intel.files import DownloadTooLarge, decode_json, fetch, http_client, safe_url
from vigil.intel.model import ImportResult

# Files that sit beside indicator lists but hold none.
NOT_INDICATORS = ("license", "licence", "readme", "source.txt", "labels.jsonl", "copying")


@dataclass
class Imported:
    """One source read: which importer (`kind`), from where, and what it gave. A file that
    holds no indicators has kind "skipped", an empty result and the `reason`."""

    location: str
    kind: str
    result: ImportResult
    reason: str = ""


def import_path(target: str | Path, cursors: dict[str, str] | None = None) -> Iterator[Imported]:
    """Every source under `target` (a file, a folder, recursed, or an http(s) URL), imported.
    Files that are not indicators come as kind "skipped" with the reason. `cursors` (source
    name -> cursor) make MISP feeds incremental."""
    text = str(target)
    if text.startswith(("http://", "https://")):
        yield from _import_url(text, cursors or {})
        return
    path = Path(text)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        yield from _import_folder(path, cursors or {})
    else:
        yield _import_file(path)


def _import_folder(folder: Path, cursors: dict[str, str]) -> Iterator[Imported]:
    if misp.is_misp_feed(folder):
        source = f"misp:{folder.name}"
        yield Imported(
            str(folder), "misp-feed", misp.import_feed(folder, source, cursors.get(source))
        )
        return
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir():
            yield from _import_folder(path, cursors)
        else:
            yield _import_file(path)


def _import_file(path: Path) -> Imported:
    lowered = path.name.lower()
    if lowered.startswith(NOT_INDICATORS) or lowered.endswith((".md", ".html", ".pdf")):
        return _skipped(path, "not an indicator file (licence, readme or labels)")
    try:
        head = _head(path)
    except OSError as exc:
        return _skipped(path, f"cannot read: {exc.strerror or exc}")
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped[:1] in (b"{", b"["):
        doc = _json(path)
        if doc is None:
            return _skipped(path, "JSON that cannot be read")
        if stix.is_stix(doc):
            return Imported(str(path), "stix", stix.import_bundle(path))
        if misp.is_misp_event(doc):
            return Imported(str(path), "misp-event", misp.import_event(path))
        return _skipped(path, "JSON that is neither a STIX bundle nor a MISP event")
    if b"\0" in head:
        return _skipped(path, "a binary file")
    return Imported(str(path), "list", lists.import_list(path))


def _skipped(path: Path, reason: str) -> Imported:
    return Imported(str(path), "skipped", ImportResult(source=f"skipped:{path.name}"), reason)


def _head(path: Path) -> bytes:
    with path.open("rb") as stream:
        head = stream.read(4096)
    if head[:2] == b"\x1f\x8b":
        with gzip.open(path, "rb") as stream:
            head = stream.read(4096)
    return head


def _json(path: Path) -> Any:
    try:
        return decode_json(path.read_bytes())
    except (OSError, ValueError):
        return None


def _import_url(url: str, cursors: dict[str, str]) -> Iterator[Imported]:
    """A MISP feed (a URL ending in `/` or `manifest.json`), or one file downloaded and read
    as a local one would be."""
    parts = urlsplit(url)
    if parts.path.endswith("/") or parts.path.endswith("/manifest.json"):
        base = url.removesuffix("manifest.json")
        source = f"misp:{parts.netloc}{parts.path.removesuffix('manifest.json')}"
        yield Imported(url, "misp-feed", misp.import_feed(base, source, cursors.get(source)))
        return
    name = Path(parts.path).name or "download"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        _download(url, path)
        imported = _import_file(path)
        imported.location = url
        yield imported


def _download(url: str, path: Path) -> None:
    """The file at `url` written to `path` as it comes; InputError with the reason for an
    HTTP status other than 2xx, no answer, or a file past MAX_DOWNLOAD."""
    with path.open("wb") as out:
        try:
            with http_client() as client:
                fetch(client, url, out.write)
        except DownloadTooLarge as exc:
            raise InputError(f"{safe_url(url)}: {exc}") from None
        except OSError as exc:
            raise InputError(f"{safe_url(url)}: cannot download: {exc}") from None
