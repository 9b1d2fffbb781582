"""Plain and CSV indicator lists: one indicator a line (maltrail trails, blocklists), or one
a CSV row under a header that names the columns.

Plain lists: `#` starts a comment, on a line of its own or after whitespace behind an entry
(`1.2.3.4 # scanner.example.org`); blank lines are skipped. Each entry's type is guessed
(see `guess`) unless `kind` forces it. Provenance of each indicator:

    source       `list:<file name>` unless given
    reference    `<file name>:<line number>`
    description  the entry's trailing comment, else the text of the latest
                 `# Reference: ...` line above it (maltrail writes one or more before each
                 block of entries; the nearest is kept)
    tags         `maltrail` when the file's header comments name it, the folder when it is
                 one of maltrail's categories (`malware`, `suspicious`, `malicious`), and the
                 list's name (the file name without its suffixes, e.g. `simda`)
    actors       the list's name when the folder is `malware` (maltrail keeps one file per
                 malware family there); none otherwise

An entry that is a URL path without a host (maltrail's `/neam.meow`: "this path on any
host") is Unsupported, since no indicator type holds it; an entry that is nothing valid is
Rejected with its line.

CSV lists: the first line that is not a comment (or, as URLhaus writes it, the comment line
just before the first row: `# id,dateadded,url,...`) is a header naming a value column
(`VALUE_COLUMNS`: `value`, `indicator`, `ioc`, `domain`, `ip`, `url`, `md5`, `sha256`, ...)
and perhaps `type`, `confidence`, `tags`, `actors`, `first_seen`, `last_seen`,
`valid_until`, `description`; other columns are ignored. A typed column (`domain`, `md5`,
...) gives that type; a generic one (`value`, `indicator`, `ioc`) takes `kind` if given,
else the row's `type` cell, else the guess. Every non-empty value cell of a row is one
indicator. A row with a malformed confidence or time is Rejected whole.
"""

from __future__ import annotations

import csv
import ipaddress
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vigil.errors import InputError
from vigil.events import parse_time
from vigil.intel.files import gunzip, read_bytes
from vigil.intel.model import (
    TYPES,
    ImportResult,
    Indicator,
    IndicatorValueError,
    Rejected,
    Unsupported,
    canonical,
    canonical_domain,
)

# CSV columns that hold indicator values -> their type; None: the type comes from `kind`,
# the row's `type` cell or the guess. Header names are compared in lower case with spaces
# and `-` as `_`.
VALUE_COLUMNS: dict[str, str | None] = {
    "value": None,
    "indicator": None,
    "ioc": None,
    "observable": None,
    "host": None,
    "domain": "domain",
    "hostname": "domain",
    "fqdn": "domain",
    "ip": "ipv4",
    "ip_address": "ipv4",
    "ipv4": "ipv4",
    "ipv6": "ipv6",
    "dst_ip": "ipv4",
    "cidr": "cidr",
    "network": "cidr",
    "ip_port": "ip-port",
    "url": "url",
    "md5": "md5",
    "md5_hash": "md5",
    "sha1": "sha1",
    "sha1_hash": "sha1",
    "sha256": "sha256",
    "sha256_hash": "sha256",
    "sha512": "sha512",
    "email": "email",
    "filename": "filename",
    "file_name": "filename",
    "ja3": "ja3",
    "ja3_md5": "ja3",
}
# Values of a `type` cell (lower case) -> indicator type: Vigil's own names, and those of
# MISP, STIX and OTX exports.
TYPE_NAMES: dict[str, str] = {name: name for name in TYPES} | {
    "ip": "ipv4",
    "ip-src": "ipv4",
    "ip-dst": "ipv4",
    "ipv4-addr": "ipv4",
    "ipv6-addr": "ipv6",
    "ip-dst|port": "ip-port",
    "hostname": "domain",
    "domain-name": "domain",
    "fqdn": "domain",
    "uri": "url",
    "sha-1": "sha1",
    "sha-256": "sha256",
    "sha-512": "sha512",
    "filehash-md5": "md5",
    "filehash-sha1": "sha1",
    "filehash-sha256": "sha256",
    "email-src": "email",
    "email-addr": "email",
    "file": "filename",
    "ja3-fingerprint-md5": "ja3",
}
TAG_COLUMNS = ("tags", "tag", "labels")
ACTOR_COLUMNS = ("actors", "actor", "threat_actor", "malware", "malware_family", "family")
CONFIDENCE_WORDS = {"high": 90, "medium": 60, "moderate": 60, "low": 30}
MALTRAIL_CATEGORIES = frozenset({"malware", "suspicious", "malicious"})
FAMILY_FOLDER = "malware"
DELIMITERS = (",", ";", "\t", "|")
MAX_LIST = 1 << 30

HASH_BY_LENGTH = {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}
_HEX = re.compile(r"[0-9a-f]{32,128}")
_COLUMN = re.compile(r"[a-z][a-z0-9_]{0,39}")
_SPLIT = re.compile(r"[,;|]")


class NoIndicatorType(ValueError):
    """A well-formed entry that no indicator type holds (a URL path without a host)."""


def guess(entry: str) -> tuple[str, str]:
    """The canonical (type, value) of a list entry whose type is not given: a URL if it has a
    scheme or a `/` (a CIDR if it is address/prefix), an e-mail address if it has `@`, a
    hash by its length of hex digits, an IPv4 or IPv6 address, an `address:port`, else a
    domain name with at least one dot. Raises IndicatorValueError for what is none of these,
    NoIndicatorType (a kind of ValueError) for a URL path without a host."""
    text = entry.strip()
    if not text:
        raise IndicatorValueError("empty value")
    if "://" in text[:16]:
        return canonical("url", text)
    if text.startswith("/"):
        raise NoIndicatorType("URL path without a host")
    if "/" in text:
        head, _, tail = text.partition("/")
        if tail.isascii() and tail.isdigit() and _is_address(head):
            return canonical("cidr", text)
        return canonical("url", text)
    if "@" in text:
        return canonical("email", text)
    kind = HASH_BY_LENGTH.get(len(text))
    if kind is not None and _HEX.fullmatch(text.lower()):
        return canonical(kind, text)
    if _is_address(text):
        return canonical("ipv4", text)  # canonical() types an address by its value
    if ":" in text:
        host, _, port = text.rpartition(":")
        if _is_address(host):
            return canonical("ip-port", text)
        if port.isascii() and port.isdigit() and _is_domain(host):
            raise NoIndicatorType("a domain name with a port")
        raise IndicatorValueError("not an address, address:port or domain name:port")
    if not _is_domain(text):
        raise IndicatorValueError("not an address, domain name, URL, hash or e-mail address")
    return canonical("domain", text)


def _is_domain(text: str) -> bool:
    """A domain name as lists write them: at least two labels, the last not a number (so
    that `1.2.3` or a mistyped address is not taken for one)."""
    name = text.rstrip(".")
    if "." not in name or name.rpartition(".")[2].isdigit():
        return False
    try:
        canonical_domain(name)
    except IndicatorValueError:
        return False
    return True


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def is_list(head: bytes) -> bool:
    """Whether the first bytes of a file look like an indicator list: text whose first entry
    (the first line that is neither blank nor a comment) is a CSV header or an indicator."""
    if b"\0" in head:
        return False
    lines = head.decode("utf-8", "replace").removeprefix("\ufeff").splitlines()
    if len(lines) > 1 and not head.endswith((b"\n", b"\r")):
        lines.pop()  # cut short by the end of `head`
    for line in lines:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if _header(text) is not None:
            return True
        entry, _ = _split_comment(text)
        try:
            guess(entry)
        except NoIndicatorType:
            return True
        except ValueError:
            return False
        return True
    return False


# --- read -------------------------------------------------------------------------------


def _typed(
    kind: str | None, entry: str, reference: str, line: str, result: ImportResult
) -> tuple[str, str] | None:
    """The entry's (type, canonical value), its type forced or guessed; None when it is set
    aside (unsupported: a form no indicator type has; rejected: a bad value)."""
    try:
        return canonical(kind, entry) if kind else guess(entry)
    except NoIndicatorType as exc:
        result.unsupported.append(Unsupported(reference, str(exc), entry))
    except IndicatorValueError as exc:
        result.rejected.append(Rejected(reference, str(exc), line))
    return None


def _read(path: Path) -> list[str]:
    try:
        data = gunzip(read_bytes(path))
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from None
    if len(data) > MAX_LIST:
        raise InputError(f"{path}: larger than {MAX_LIST >> 20} MiB")
    return data.decode("utf-8", "replace").removeprefix("\ufeff").splitlines()


def _split_comment(line: str) -> tuple[str, str]:
    """(entry, comment) of a line: the comment starts at a `#` after whitespace (a `#` inside
    a URL is its fragment)."""
    index = line.find("#")
    while index > 0:
        if line[index - 1] in " \t":
            return line[:index].rstrip(), line[index + 1 :].strip()
        index = line.find("#", index + 1)
    return line, ""


def _header(line: str) -> tuple[str, list[str]] | None:
    """(delimiter, column names) if `line` is a CSV header naming a value column."""
    delimiter = next((d for d in DELIMITERS if d in line), ",")
    cells = next(csv.reader([line], delimiter=delimiter), [])
    names = [cell.strip().lower().replace(" ", "_").replace("-", "_") for cell in cells]
    if not any(name in VALUE_COLUMNS for name in names):
        return None
    if not all(not name or _COLUMN.fullmatch(name) for name in names):
        return None
    return delimiter, names


@dataclass(frozen=True, slots=True)
class _ListContext:
    """What every indicator of one list shares."""

    file: str
    source: str
    tags: tuple[str, ...]
    actors: tuple[str, ...]
    kind: str | None


def _context(path: Path, lines: list[str], source: str | None, kind: str | None) -> _ListContext:
    name = path.name.split(".")[0] or path.name
    folder = path.parent.name.lower()
    head = " ".join(line.lower() for line in lines[:5] if line.startswith("#"))
    tags = (
        ("maltrail",) * ("maltrail" in head) + (folder,) * (folder in MALTRAIL_CATEGORIES) + (name,)
    )
    actors = (name,) if folder == FAMILY_FOLDER else ()
    return _ListContext(path.name, source or f"list:{path.name}", tags, actors, kind)


# --- transform ----------------------------------------------------------------------------


def import_list(path: Path, source: str | None = None, kind: str | None = None) -> ImportResult:
    """The indicators of a plain or CSV list (plain text or gzip): see the module docstring.
    `kind` (one of `TYPES`) forces the type of every entry (of the generic value columns of
    a CSV) instead of guessing. `stats["entries"]` counts the entry lines (CSV rows) read. A
    file that cannot be read, or an unknown `kind`, raises InputError.

        >>> result = import_list(Path("trails/static/malware/simda.txt"))  # doctest: +SKIP
        >>> result.indicators[0].type, result.indicators[0].actors  # doctest: +SKIP
        ('domain', ('simda',))
    """
    if kind is not None and kind not in TYPES:
        raise InputError(f"unknown indicator type {kind!r}: one of {', '.join(TYPES)}")
    path = Path(path)
    lines = _read(path)
    context = _context(path, lines, source, kind)
    header = _find_header(lines)
    if header is not None:
        return _from_csv(lines, header, context)
    return _from_plain(lines, context)


def _from_plain(lines: list[str], context: _ListContext) -> ImportResult:
    result = ImportResult(context.source)
    latest_reference: str | None = None
    entries = 0
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            key, sep, text = line[1:].strip().partition(":")
            if sep and key.strip().lower() == "reference" and text.strip():
                latest_reference = text.strip()
            continue
        entries += 1
        entry, comment = _split_comment(line)
        reference = f"{context.file}:{number}"
        typed = _typed(context.kind, entry, reference, line, result)
        if typed is None:
            continue
        kind, value = typed
        result.indicators.append(
            Indicator(
                type=kind,
                value=value,
                source=context.source,
                tags=context.tags,
                actors=context.actors,
                reference=reference,
                description=comment or latest_reference,
            )
        )
    result.stats["entries"] = entries
    return result


def _find_header(lines: list[str]) -> tuple[int, str, list[str]] | None:
    """(line index, delimiter, column names) of a CSV header: the first line that is not
    blank or a comment, or the comment line right before it."""
    previous: str | None = None
    for index, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            previous = line
            continue
        found = _header(line)
        if found is not None:
            return index, *found
        if previous is not None:
            found = _header(previous.lstrip("#").strip())
            if found is not None and found[0] in line:
                return index - 1, *found
        return None
    return None


@dataclass(slots=True)
class _Row:
    """The provenance cells of one CSV row."""

    confidence: int | None = None
    first_seen: float | None = None
    last_seen: float | None = None
    valid_until: float | None = None
    tags: tuple[str, ...] = ()
    actors: tuple[str, ...] = ()
    description: str | None = None
    type: str | None = None


def _from_csv(
    lines: list[str], header: tuple[int, str, list[str]], context: _ListContext
) -> ImportResult:
    result = ImportResult(context.source)
    start, delimiter, names = header
    columns: dict[str, int] = {}
    for position, name in enumerate(names):
        if name:
            columns.setdefault(name, position)  # a repeated column: the first one counts
    values = [(columns[name], VALUE_COLUMNS[name]) for name in columns if name in VALUE_COLUMNS]
    reader = csv.reader(lines[start + 1 :], delimiter=delimiter)
    rows = 0
    for cells in reader:
        number = start + 1 + reader.line_num
        reference = f"{context.file}:{number}"
        if not any(cell.strip() for cell in cells) or cells[0].lstrip().startswith("#"):
            continue
        rows += 1
        text = delimiter.join(cells)
        try:
            row = _row(cells, columns)
        except ValueError as exc:
            result.rejected.append(Rejected(reference, str(exc), text))
            continue
        found = False
        for position, column_kind in values:
            cell = cells[position].strip() if position < len(cells) else ""
            if not cell:
                continue
            found = True
            kind = column_kind or context.kind or row.type
            typed = _typed(kind, cell, reference, text, result)
            if typed is None:
                continue
            kind, value = typed
            result.indicators.append(
                Indicator(
                    type=kind,
                    value=value,
                    source=context.source,
                    confidence=row.confidence,
                    first_seen=row.first_seen,
                    last_seen=row.last_seen,
                    valid_until=row.valid_until,
                    tags=tuple(dict.fromkeys(context.tags + row.tags)),
                    actors=tuple(dict.fromkeys(context.actors + row.actors)),
                    reference=reference,
                    description=row.description,
                )
            )
        if not found:
            result.rejected.append(Rejected(reference, "no value", text))
    result.stats["entries"] = rows
    return result


def _row(cells: list[str], columns: dict[str, int]) -> _Row:
    """The provenance cells of a row; ValueError naming the cell that is malformed."""

    def cell(name: str) -> str:
        position = columns.get(name)
        return cells[position].strip() if position is not None and position < len(cells) else ""

    row = _Row()
    type_name = cell("type").lower()
    if type_name:
        kind = TYPE_NAMES.get(type_name)
        if kind is None:
            raise IndicatorValueError(f"unknown indicator type {type_name!r}")
        row.type = kind
    confidence = cell("confidence")
    if confidence:
        row.confidence = _confidence(confidence)
    row.first_seen = _time("first_seen", cell("first_seen"))
    row.last_seen = _time("last_seen", cell("last_seen"))
    row.valid_until = _time("valid_until", cell("valid_until"))
    row.tags = _words(cell(name) for name in TAG_COLUMNS)
    row.actors = _words(cell(name) for name in ACTOR_COLUMNS)
    row.description = cell("description") or cell("comment") or None
    return row


def _words(cells: Iterable[str]) -> tuple[str, ...]:
    words: list[str] = []
    for text in cells:
        words.extend(word.strip() for word in _SPLIT.split(text) if word.strip())
    return tuple(dict.fromkeys(words))


def _confidence(text: str) -> int:
    word = CONFIDENCE_WORDS.get(text.lower())
    if word is not None:
        return word
    if text.isascii() and text.isdigit() and len(text) <= 3 and int(text) <= 100:
        return int(text)
    raise ValueError(f"confidence {text!r} is not 0-100 or high/medium/low")


def _time(name: str, text: str) -> float | None:
    """Epoch seconds of epoch seconds or ISO 8601 (UTC unless it says otherwise); None for an
    empty cell."""
    if not text:
        return None
    if len(text) <= 64:
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return number
        moment = parse_time(text)
        if moment is not None:
            return moment
    raise ValueError(f"{name} {text[:64]!r} is not epoch seconds or an ISO 8601 time")
