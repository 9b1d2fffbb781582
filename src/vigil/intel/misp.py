"""MISP events and feeds: the attributes marked for detection, as Vigil indicators.

Three steps, as every importer: `read` the raw events (a JSON file, a feed folder or a feed
URL), `from_event` (one event to indicators), and the public `import_event` / `import_feed`
that do both. PyMISP is not needed: an event is plain JSON.

What becomes an indicator: an attribute (of the event, or of one of its objects) with
`to_ids` set (MISP's "use for detection"). An attribute marked `deleted` (or inside a deleted
object) that was for detection comes as a *revoked* indicator: when an event is read again
after the deletion, the store's row for that attribute is revoked and stops matching. Those
not for detection are counted in `ImportResult.stats` (`skipped_not_ids`; `skipped_deleted`
counts the deleted ones, `skipped` the sum) and not imported. `decayed` and
`disable_correlation` are ignored.

Provenance of each indicator:

    source       the `source` argument
    reference    the attribute's uuid
    first_seen   the attribute's `first_seen`, else its object's, else its `timestamp`
    last_seen    the attribute's `last_seen`, else its object's, else its `timestamp`
    tags         event and attribute tags, galaxy tags (`misp-galaxy:...`) left out
    techniques   ATT&CK ids of mitre-attack-pattern galaxy tags and clusters
    actors       names from threat-actor, intrusion-set, malware and malpedia galaxies
    confidence   see below
    description  the event's `info`

Confidence (0-100), the first found of:

    estimative-language:confidence-in-analytic-judgment tag on the attribute, then on the
    event:  high -> 90,  moderate -> 60,  low -> 30
    the event's threat_level_id:  1 High -> 90,  2 Medium -> 60,  3 Low -> 30,
    4 Undefined -> None (the source does not say)

The threat level is the author's rating of the event, not of each attribute; it is used for
want of anything better, and an analytic-judgment tag, when there is one, says more.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from vigil.errors import InputError
from vigil.events import parse_time
from vigil.intel.files import decode_json, fetch, http_client, read_bytes, safe_url
from vigil.intel.model import (
    ImportResult,
    Indicator,
    IndicatorValueError,
    Rejected,
    Unsupported,
    canonical,
)

# Pseudo-kinds of the table below: `IP` is an address or a network (canonical() tells ipv4,
# ipv6 and cidr apart by the value), `IP_PORT` a MISP `address|port`, `URI` a URL that may
# lack its host.
IP = "ip"
IP_PORT = "ip|port"
URI = "uri"

# MISP attribute type -> the indicator kind of each of its `|`-separated parts, in order.
# A type not here cannot become an indicator (regkey, mutex, yara, snort, text, ...).
ATTRIBUTE_TYPES: dict[str, tuple[str, ...]] = {
    "ip-src": (IP,),
    "ip-dst": (IP,),
    "ip-src|port": (IP_PORT,),
    "ip-dst|port": (IP_PORT,),
    "domain": ("domain",),
    "hostname": ("domain",),
    "domain|ip": ("domain", IP),
    "url": ("url",),
    "link": ("url",),
    "uri": (URI,),
    "md5": ("md5",),
    "sha1": ("sha1",),
    "sha256": ("sha256",),
    "sha512": ("sha512",),
    "filename|md5": ("filename", "md5"),
    "filename|sha1": ("filename", "sha1"),
    "filename|sha256": ("filename", "sha256"),
    "filename|sha512": ("filename", "sha512"),
    "filename": ("filename",),
    "email": ("email",),
    "email-src": ("email",),
    "email-dst": ("email",),
    "email-reply-to": ("email",),
    "ja3-fingerprint-md5": ("ja3",),
}

# Galaxies (the part of a `misp-galaxy:<galaxy>="<cluster>"` tag) whose clusters end with an
# ATT&CK technique id (`Spearphishing Attachment - T1193`), and those that name an actor or
# malware family. A cluster named `APT32 - G0050` gives the actor `APT32`.
TECHNIQUE_GALAXIES = frozenset(
    {
        "mitre-attack-pattern",
        "mitre-enterprise-attack-attack-pattern",
        "mitre-mobile-attack-attack-pattern",
        "mitre-pre-attack-attack-pattern",
    }
)
ACTOR_GALAXIES = frozenset(
    {
        "threat-actor",
        "mitre-intrusion-set",
        "mitre-enterprise-attack-intrusion-set",
        "mitre-mobile-attack-intrusion-set",
        "mitre-malware",
        "mitre-enterprise-attack-malware",
        "mitre-mobile-attack-malware",
        "malpedia",
    }
)
GALAXY_PREFIX = "misp-galaxy:"
CONFIDENCE_TAG = "estimative-language:confidence-in-analytic-judgment"
JUDGMENT_CONFIDENCE = {"high": 90, "moderate": 60, "low": 30}
THREAT_LEVEL_CONFIDENCE: dict[int, int | None] = {1: 90, 2: 60, 3: 30, 4: None}

TECHNIQUE_ID = re.compile(r"T\d{4}(?:\.\d{3})?")
ATTACK_GROUP_OR_SOFTWARE_ID = re.compile(r"[GS]\d{4}")


# --- read: raw events out of files, folders and URLs ---------------------------------------


def _is_event(doc: Any) -> bool:
    if not isinstance(doc, Mapping):
        return False
    if "Event" in doc:
        return isinstance(doc["Event"], Mapping)
    return isinstance(doc.get("info"), str) and any(
        key in doc for key in ("Attribute", "Object", "threat_level_id", "Orgc")
    )


def _events_of(doc: Any) -> list[Mapping[str, Any]] | None:
    """The events of one event (wrapped in `{"Event": ...}` or not), a `{"response": [...]}`
    answer of the MISP API, or a list of events; None if `doc` is none of these."""
    if isinstance(doc, Mapping) and isinstance(doc.get("response"), list):
        doc = doc["response"]
    if isinstance(doc, list):
        return doc if doc and all(_is_event(item) for item in doc) else None
    return [doc] if _is_event(doc) else None


def is_misp_event(doc: Any) -> bool:
    """Whether a decoded JSON document is something `import_event` reads: one MISP event
    (`{"Event": {...}}` or the bare event), `{"response": [events]}` or a list of events."""
    return _events_of(doc) is not None


def is_misp_feed(path: Path) -> bool:
    """Whether `path` is a MISP feed folder: a `manifest.json` mapping event uuids to their
    summaries."""
    manifest = Path(path) / "manifest.json"
    if not manifest.is_file():
        return False
    try:
        doc = decode_json(manifest.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(doc, Mapping) and all(
        _uuid(key) is not None and isinstance(entry, Mapping) for key, entry in doc.items()
    )


def _uuid(text: Any) -> str | None:
    """`text` as a canonical uuid, or None: feed file names are built from manifest keys, so a
    key must not be able to point anywhere else (`../../etc/passwd`)."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


Fetch = Callable[[str], bytes]


def _local(folder: Path) -> Fetch:
    def fetch(name: str) -> bytes:
        return (folder / name).read_bytes()

    return fetch


def _remote(client: httpx.Client, base: str) -> Fetch:
    def fetch_file(name: str) -> bytes:
        """The file's bytes; OSError with the reason (an HTTP status other than 2xx, no
        answer, past MAX_DOWNLOAD)."""
        chunks: list[bytes] = []
        fetch(client, base + name, chunks.append)
        return b"".join(chunks)

    return fetch_file


def _read_cursor(cursor: str | None) -> dict[str, int]:
    if not cursor:
        return {}
    try:
        doc = orjson.loads(cursor)
    except orjson.JSONDecodeError:
        doc = None
    stamps = (
        {str(key): _as_int(value) for key, value in doc.items()} if isinstance(doc, dict) else {}
    )
    if not isinstance(doc, dict) or None in stamps.values():
        raise InputError(f"MISP feed cursor is not a JSON object of uuid: timestamp: {cursor!r}")
    return {key: stamp for key, stamp in stamps.items() if stamp is not None}


def _as_int(value: Any) -> int | None:
    """An integer written as a number or as digits (MISP writes both), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit() and len(value) < 20:
        return int(value)
    return None


# --- transform: one event to indicators ----------------------------------------------------


def from_event(doc: Mapping[str, Any], source: str) -> ImportResult:
    """The indicators of one MISP event, `{"Event": {...}}` or the bare event: see the module
    docstring for what is taken and how."""
    result = ImportResult(source)
    event = doc.get("Event", doc)
    if not isinstance(event, Mapping):
        result.rejected.append(Rejected("event", "not a MISP event", str(event)[:200]))
        return result
    event_id = str(event.get("uuid") or "event")
    context = _EventContext(event)
    stats = {"attributes": 0, "skipped_not_ids": 0, "skipped_deleted": 0}
    for where, attribute, owner in _attributes(event):
        if not isinstance(attribute, Mapping):
            result.rejected.append(Rejected(f"{event_id} {where}", "not an attribute"))
            continue
        stats["attributes"] += 1
        deleted = _flag(attribute.get("deleted")) or bool(owner and _flag(owner.get("deleted")))
        if not _flag(attribute.get("to_ids")):
            stats["skipped_not_ids"] += 1
        else:
            reference = str(attribute.get("uuid") or f"{event_id} {where}")
            if deleted:
                # revoked, so a row stored from an earlier read of the event stops matching
                stats["skipped_deleted"] += 1
            _attribute(attribute, owner, reference, context, result, revoked=deleted)
    stats["skipped"] = stats["skipped_not_ids"] + stats["skipped_deleted"]
    result.stats.update(stats)
    return result


def _attributes(
    event: Mapping[str, Any],
) -> Iterator[tuple[str, Any, Mapping[str, Any] | None]]:
    """(where, attribute, its object or None) for the event's and its objects' attributes."""
    for number, attribute in enumerate(_list(event.get("Attribute")), 1):
        yield f"attribute #{number}", attribute, None
    for number, obj in enumerate(_list(event.get("Object")), 1):
        if not isinstance(obj, Mapping):
            continue
        for inner, attribute in enumerate(_list(obj.get("Attribute")), 1):
            yield f"object #{number} attribute #{inner}", attribute, obj


class _EventContext:
    """What every attribute of one event inherits: tags, techniques, actors, confidence."""

    def __init__(self, event: Mapping[str, Any]) -> None:
        names = _tag_names(event)
        self.tags, self.techniques, self.actors = _classify(names)
        level = _as_int(event.get("threat_level_id"))
        self.confidence = _judgment(names)
        if self.confidence is None and level is not None:
            self.confidence = THREAT_LEVEL_CONFIDENCE.get(level)
        info = event.get("info")
        self.description = info if isinstance(info, str) and info else None


def _attribute(
    attribute: Mapping[str, Any],
    owner: Mapping[str, Any] | None,
    reference: str,
    context: _EventContext,
    result: ImportResult,
    *,
    revoked: bool = False,
) -> None:
    misp_type = str(attribute.get("type", ""))
    value = attribute.get("value")
    kinds = ATTRIBUTE_TYPES.get(misp_type)
    if kinds is None:
        result.unsupported.append(Unsupported(reference, misp_type or "no type", str(value)[:200]))
        return
    if not isinstance(value, str):
        result.rejected.append(Rejected(reference, f"{misp_type}: value is not text", str(value)))
        return
    parts = value.split("|", len(kinds) - 1) if len(kinds) > 1 else [value]
    if len(parts) != len(kinds):
        result.rejected.append(Rejected(reference, f"{misp_type}: expected a|b", value[:200]))
        return
    names = _tag_names(attribute)
    tags, techniques, actors = _classify(names)
    confidence = _judgment(names)
    stamp = _epoch(attribute.get("timestamp"))
    first = _first(attribute, owner, "first_seen", stamp)
    last = _first(attribute, owner, "last_seen", stamp)
    if first is not None and last is not None and last < first:
        last = first
    for kind, part in zip(kinds, parts, strict=True):
        if kind == URI and "://" not in part[:16] and not part.startswith("//"):
            result.unsupported.append(Unsupported(reference, "uri without a host", part[:200]))
            continue
        try:
            vigil_type, canonical_value = _canonical(kind, part)
        except IndicatorValueError as exc:
            result.rejected.append(Rejected(reference, f"{misp_type}: {exc}", part[:200]))
            continue
        result.indicators.append(
            Indicator(
                type=vigil_type,
                value=canonical_value,
                source=result.source,
                confidence=confidence if confidence is not None else context.confidence,
                first_seen=first,
                last_seen=last,
                tags=_merged(context.tags, tags),
                techniques=_merged(context.techniques, techniques),
                actors=_merged(context.actors, actors),
                reference=reference,
                description=context.description,
                revoked=revoked,
            )
        )


def _canonical(kind: str, text: str) -> tuple[str, str]:
    if kind == IP:
        return canonical("ipv4", text)  # canonical() types an address by its value
    if kind == IP_PORT:
        host, sep, port = text.strip().rpartition("|")
        if not sep:
            raise IndicatorValueError("not an address|port")
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 address: its own colons are not the port's
        return canonical("ip-port", f"{host}:{port}")
    if kind == URI:
        return canonical("url", text)
    return canonical(kind, text)


def _tag_names(holder: Mapping[str, Any]) -> list[str]:
    """Names of the tags on an event or attribute, and of the galaxy clusters attached to
    it, as `misp-galaxy:<galaxy>="<cluster>"` tags."""
    names = []
    for tag in _list(holder.get("Tag")):
        name = tag.get("name") if isinstance(tag, Mapping) else tag
        if isinstance(name, str) and name:
            names.append(name)
    for galaxy in _list(holder.get("Galaxy")):
        if not isinstance(galaxy, Mapping):
            continue
        for cluster in _list(galaxy.get("GalaxyCluster")):
            if not isinstance(cluster, Mapping):
                continue
            name = cluster.get("tag_name")
            if not isinstance(name, str) or not name:
                name = f'{GALAXY_PREFIX}{galaxy.get("type")}="{cluster.get("value")}"'
            names.append(name)
    return names


def _classify(names: list[str]) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(plain tags, technique ids, actors) of tag names."""
    tags: list[str] = []
    techniques: list[str] = []
    actors: list[str] = []
    for name in names:
        if not name.startswith(GALAXY_PREFIX):
            tags.append(name)
            continue
        galaxy, _, cluster = name[len(GALAXY_PREFIX) :].partition("=")
        cluster = cluster.strip().strip('"').strip()
        head, _, tail = cluster.rpartition(" - ")
        if galaxy in TECHNIQUE_GALAXIES and TECHNIQUE_ID.fullmatch(tail):
            techniques.append(tail)
        elif galaxy in ACTOR_GALAXIES and cluster:
            actors.append(head if head and ATTACK_GROUP_OR_SOFTWARE_ID.fullmatch(tail) else cluster)
    return _merged(tags), _merged(techniques), _merged(actors)


def _judgment(names: list[str]) -> int | None:
    for name in names:
        key, _, level = name.partition("=")
        if key == CONFIDENCE_TAG:
            confidence = JUDGMENT_CONFIDENCE.get(level.strip('"').lower())
            if confidence is not None:
                return confidence
    return None


def _first(
    attribute: Mapping[str, Any], owner: Mapping[str, Any] | None, key: str, default: float | None
) -> float | None:
    for holder in (attribute, owner):
        if holder is not None:
            moment = _epoch(holder.get(key))
            if moment is not None:
                return moment
    return default


def _epoch(value: Any) -> float | None:
    """Epoch seconds of a MISP time: epoch seconds (as MISP writes them, often as text) or
    ISO 8601 (`first_seen`), UTC unless it says otherwise. None if absent or malformed: a bad
    time does not make the indicator bad."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    return parse_time(text)


def _flag(value: Any) -> bool:
    """A MISP boolean: true/false, 1/0, or the same as text."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true")
    return value is True or value == 1


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _merged(*groups: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The items of the groups in order, each once."""
    return tuple(dict.fromkeys(item for group in groups for item in group))


def _combine(result: ImportResult, other: ImportResult) -> None:
    """`result.extend(other)` with the stats added up (set afterwards, so that they are
    counted once whether or not `extend` adds them itself)."""
    stats = dict(result.stats)
    for key, count in other.stats.items():
        stats[key] = stats.get(key, 0) + count
    result.extend(other)
    result.stats.clear()
    result.stats.update(stats)


# --- import: read and transform --------------------------------------------------------------


def import_event(path: Path, source: str | None = None) -> ImportResult:
    """The indicators of a MISP JSON file (plain or gzip) holding one event, a
    `{"response": [events]}` answer or a list of events. `source` defaults to `misp:<file
    name without .json/.gz>`. A file that is not JSON or not MISP gives one Rejected naming
    it; a file that cannot be read raises InputError.

        >>> result = import_event(Path("event.json"))  # doctest: +SKIP
        >>> result.indicators[0].type, result.stats["skipped"]  # doctest: +SKIP
        ('domain', 12)
    """
    path = Path(path)
    name = source or f"misp:{path.name.removesuffix('.gz').removesuffix('.json')}"
    data = read_bytes(path)
    try:
        doc = decode_json(data)
    except ValueError as exc:
        return ImportResult(name, rejected=[Rejected(str(path), str(exc))])
    events = _events_of(doc)
    if events is None:
        return ImportResult(name, rejected=[Rejected(str(path), "JSON that is not a MISP event")])
    result = ImportResult(name)
    for event in events:
        _combine(result, from_event(event, name))
    result.stats["events"] = len(events)
    return result


def import_feed(
    folder: Path | str, source: str | None = None, cursor: str | None = None
) -> ImportResult:
    """The indicators of a MISP feed: a folder, or an http(s) URL of one, holding
    `manifest.json` and one `<uuid>.json` per event.

    Incremental: `cursor` is the `result.cursor` of the previous import, a JSON object of
    event uuid -> manifest timestamp. Only events that are new, or whose manifest timestamp
    is newer than the cursor's, are read; the result's cursor holds the manifest's events
    with the timestamps now read (an event that could not be read keeps its old timestamp,
    or stays out, so that the next import tries it again). A missing or damaged event file
    is one Rejected (`<uuid>.json`) and the rest is read; a missing or damaged manifest, or a
    malformed cursor, raises InputError. `source` defaults to `misp:<folder name>`.
    `stats` counts `events` read and `events_unchanged` left out by the cursor, besides the
    attribute counts of `from_event`.

        >>> first = import_feed(Path("misp-feed"))  # doctest: +SKIP
        >>> again = import_feed(Path("misp-feed"), cursor=first.cursor)  # doctest: +SKIP
        >>> again.indicators, again.stats["events_unchanged"]  # doctest: +SKIP
        ([], 24)
    """
    text = str(folder)
    if text.startswith(("http://", "https://")):
        base = text.removesuffix("manifest.json")
        base = base if base.endswith("/") else base + "/"
        parts = urlsplit(base)
        name = parts.path.rstrip("/").rpartition("/")[2] or parts.hostname or "feed"
        with http_client() as client:
            return _read_feed(
                _remote(client, base), safe_url(base), source or f"misp:{name}", cursor
            )
    path = Path(folder)
    return _read_feed(_local(path), str(path), source or f"misp:{path.name}", cursor)


def _read_feed(fetch: Fetch, where: str, source: str, cursor: str | None) -> ImportResult:
    result = ImportResult(source)
    before = _read_cursor(cursor)
    manifest = _manifest(fetch, where)
    after: dict[str, int] = {}
    read = unchanged = 0
    for key, entry in manifest.items():
        event_id = _uuid(key)
        stamp = _as_int(entry.get("timestamp")) if isinstance(entry, Mapping) else None
        if event_id is None or stamp is None:
            reason = "manifest entry without a uuid and a timestamp"
            result.rejected.append(Rejected(f"manifest.json:{str(key)[:64]}", reason))
            continue
        if event_id in before and before[event_id] >= stamp:
            after[event_id] = before[event_id]
            unchanged += 1
            continue
        file_name = f"{event_id}.json"
        doc = _feed_event(fetch, file_name)
        if isinstance(doc, Rejected):
            result.rejected.append(doc)
            if event_id in before:
                after[event_id] = before[event_id]
            continue
        _combine(result, from_event(doc, result.source))
        after[event_id] = stamp
        read += 1
    result.stats["events"] = read
    result.stats["events_unchanged"] = unchanged
    result.cursor = orjson.dumps(after, option=orjson.OPT_SORT_KEYS).decode()
    return result


def _feed_event(fetch: Fetch, file_name: str) -> Mapping[str, Any] | Rejected:
    try:
        doc = decode_json(fetch(file_name))
    except OSError as exc:
        return Rejected(file_name, f"cannot read: {getattr(exc, 'strerror', None) or exc}")
    except ValueError as exc:
        return Rejected(file_name, str(exc))
    if not _is_event(doc):
        return Rejected(file_name, "JSON that is not a MISP event")
    event: Mapping[str, Any] = doc
    return event


def _manifest(fetch: Fetch, where: str) -> Mapping[str, Any]:
    try:
        doc = decode_json(fetch("manifest.json"))
    except OSError as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise InputError(f"{where}: cannot read the MISP feed manifest: {reason}") from None
    except ValueError as exc:
        raise InputError(f"{where}: damaged MISP feed manifest: {exc}") from None
    if not isinstance(doc, Mapping):
        raise InputError(f"{where}: the MISP feed manifest is not a JSON object")
    return doc
