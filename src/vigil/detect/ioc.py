"""Indicator matching: every event's ECS entities against the live indicator set.

The live set is compiled once into hash tables (one per kind of value) and, for networks,
sorted boundaries searched by bisection, so the cost per event depends on the event (how
many addresses, how many labels its domains have), not on how many indicators are loaded:

- addresses: exact lookup, then one bisection per address family for the networks;
- domains: the name and each parent domain of two labels or more (`a.b.evil.com` checks
  `a.b.evil.com`, `b.evil.com`, `evil.com`; a feed's bare `com` never matches everything);
- URLs: canonical form (see `vigil.intel.canonical_url`) of `url.full` / `url.original`, or
  of `url.domain` + `url.original` when the log keeps the host apart (Zeek, Suricata);
- hashes, e-mail addresses, file names, JA3: exact lookup.
"""

from __future__ import annotations

import socket
import time
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vigil.detect.detection import Detection
from vigil.events import Event
from vigil.events.records import detected_now
from vigil.intel.model import IndicatorValueError, canonical_domain, canonical_url

if TYPE_CHECKING:
    from vigil.intel.store import IndicatorStore, Sighting, StoredIndicator

# ECS fields looked at, by the kind of value they hold.
IP_FIELDS = ("source.ip", "destination.ip", "client.ip", "server.ip", "host.ip")
DOMAIN_FIELDS = (
    "dns.question.name",
    "url.domain",
    "destination.domain",
    "server.domain",
    "tls.client.server_name",
)
URL_FIELDS = ("url.full", "url.original")
HASH_FIELDS = (
    "file.hash.md5",
    "file.hash.sha1",
    "file.hash.sha256",
    "file.hash.sha512",
    "process.hash.md5",
    "process.hash.sha1",
    "process.hash.sha256",
    "process.hash.sha512",
)
EMAIL_FIELDS = ("email.from.address", "email.to.address", "email.sender.address", "user.email")
FILENAME_FIELDS = ("file.name",)
JA3_FIELDS = ("tls.client.ja3",)

_HASH_TYPES = frozenset(("md5", "sha1", "sha256", "sha512"))


@dataclass(frozen=True, slots=True)
class Match:
    """One indicator found in one event: which, in which ECS field, the value seen there."""

    key: int
    type: str
    indicator: str
    field: str
    observed: str


class IndicatorMatcher:
    """The live indicator set, compiled for matching. Build with `from_store` or `add` +
    `compile`."""

    def __init__(self) -> None:
        self.addresses: dict[str, int] = {}
        self.ports: dict[str, int] = {}
        self.domains: dict[str, int] = {}
        self.urls: dict[str, int] = {}
        self.hashes: dict[str, int] = {}
        self.emails: dict[str, int] = {}
        self.filenames: dict[str, int] = {}
        self.ja3: dict[str, int] = {}
        self._networks: list[tuple[int, str, int]] = []  # (key, network text, version)
        self._bounds: dict[int, list[int]] = {4: [], 6: []}
        self._owners: dict[int, list[tuple[tuple[int, str], ...]]] = {4: [], 6: []}
        self.count = 0

    @classmethod
    def from_store(cls, store: IndicatorStore, now: float | None = None) -> IndicatorMatcher:
        matcher = cls()
        for key, kind, value in store.live(now):
            matcher.add(key, kind, value)
        matcher.compile()
        return matcher

    def add(self, key: int, kind: str, value: str) -> None:
        """One live indicator, its value canonical for its type (as the store keeps it).
        Adding one again changes nothing."""
        if kind in ("ipv4", "ipv6"):
            self.addresses[value] = key
        elif kind == "domain":
            self.domains[value] = key
        elif kind in _HASH_TYPES:
            self.hashes[value] = key
        elif kind == "url":
            self.urls[value] = key
        elif kind == "cidr":
            self._networks.append((key, value, 6 if ":" in value else 4))
        elif kind == "ip-port":
            self.ports[value] = key
        elif kind == "email":
            self.emails[value] = key
        elif kind == "filename":
            self.filenames[value.lower()] = key
        elif kind == "ja3":
            self.ja3[value] = key

    def compile(self) -> None:
        """Networks as sorted, non-overlapping ranges, each with the networks covering it."""
        import ipaddress

        self._networks = sorted(set(self._networks))
        tables = (self.addresses, self.ports, self.domains, self.urls, self.hashes, self.emails,
                  self.filenames, self.ja3)  # fmt: skip
        self.count = sum(map(len, tables)) + len(self._networks)
        for version in (4, 6):
            edges: dict[int, list[tuple[int, tuple[int, str], bool]]] = {}
            for key, text, net_version in self._networks:
                if net_version != version:
                    continue
                network = ipaddress.ip_network(text)
                first = int(network.network_address)
                after = int(network.broadcast_address) + 1
                edges.setdefault(first, []).append((first, (key, text), True))
                edges.setdefault(after, []).append((after, (key, text), False))
            bounds: list[int] = []
            owners: list[tuple[tuple[int, str], ...]] = []
            active: dict[tuple[int, str], int] = {}
            for point in sorted(edges):
                for _, owner, opens in edges[point]:
                    if opens:
                        active[owner] = active.get(owner, 0) + 1
                    elif active.get(owner, 0) <= 1:
                        active.pop(owner, None)
                    else:
                        active[owner] -= 1
                bounds.append(point)
                owners.append(tuple(active))
            self._bounds[version] = bounds
            self._owners[version] = owners

    def __len__(self) -> int:
        return self.count

    # --- matching --------------------------------------------------------------------------

    def match(self, event: Event) -> list[Match]:
        """The indicators this event's entities hit (each indicator once per field)."""
        ecs = event.ecs
        found: list[Match] = []
        get = ecs.get
        for name in IP_FIELDS:
            value = get(name)
            if value is not None:
                self._address(str(value), name, found)
        if self.ports:
            address, port = get("destination.ip"), get("destination.port")
            if address is not None and port is not None:
                text = f"[{address}]:{port}" if ":" in str(address) else f"{address}:{port}"
                key = self.ports.get(text)
                if key is not None:
                    found.append(Match(key, "ip-port", text, "destination", text))
        if self.domains:
            for name in DOMAIN_FIELDS:
                value = get(name)
                if value is not None:
                    self._domain(value, name, found)
        if self.urls:
            self._url(ecs, found)
        if self.hashes:
            for name in HASH_FIELDS:
                value = get(name)
                if value is not None:
                    key = self.hashes.get(str(value).lower())
                    if key is not None:
                        text = str(value).lower()
                        found.append(Match(key, _hash_type(text), text, name, str(value)))
        if self.emails:
            for name in EMAIL_FIELDS:
                for value in _values(get(name)):
                    key = self.emails.get(value.lower().strip("<> "))
                    if key is not None:
                        found.append(Match(key, "email", value.lower().strip("<> "), name, value))
        if self.filenames:
            for name in FILENAME_FIELDS:
                value = get(name)
                if value is not None:
                    key = self.filenames.get(str(value).lower())
                    if key is not None:
                        found.append(Match(key, "filename", str(value), name, str(value)))
        if self.ja3:
            for name in JA3_FIELDS:
                value = get(name)
                if value is not None:
                    key = self.ja3.get(str(value).lower())
                    if key is not None:
                        found.append(Match(key, "ja3", str(value).lower(), name, str(value)))
        return found

    def _address(self, text: str, field: str, found: list[Match]) -> None:
        key = self.addresses.get(text)
        if key is not None:
            found.append(Match(key, "ipv6" if ":" in text else "ipv4", text, field, text))
        version = 6 if ":" in text else 4
        bounds = self._bounds[version]
        if not bounds:
            return
        try:
            packed = socket.inet_pton(socket.AF_INET6 if version == 6 else socket.AF_INET, text)
        except OSError:
            return
        index = bisect_right(bounds, int.from_bytes(packed, "big")) - 1
        if index >= 0:
            for key, network in self._owners[version][index]:
                found.append(Match(key, "cidr", network, field, text))

    def _domain(self, value: Any, field: str, found: list[Match]) -> None:
        name = str(value).lower().rstrip(".")
        if not name.isascii():
            try:
                name = canonical_domain(name)
            except IndicatorValueError:
                return
        domains = self.domains
        key = domains.get(name)
        if key is not None:
            found.append(Match(key, "domain", name, field, str(value)))
        dot = name.find(".")
        while dot >= 0:
            parent = name[dot + 1 :]
            if "." not in parent:
                break
            key = domains.get(parent)
            if key is not None:
                found.append(Match(key, "domain", parent, field, str(value)))
            dot = name.find(".", dot + 1)

    def _url(self, ecs: dict[str, Any], found: list[Match]) -> None:
        host = ecs.get("url.domain")
        for name in URL_FIELDS:
            value = ecs.get(name)
            if value is None:
                continue
            text = str(value)
            if text.startswith("/") and host is not None:
                plain = str(host).lower().rstrip(".")
                if plain.isascii() and "#" not in text and ":" not in plain and "@" not in plain:
                    # already canonical: a plain host and a path (most web logs)
                    key = self.urls.get(plain + text)
                    if key is not None:
                        found.append(Match(key, "url", plain + text, name, str(value)))
                    return
                text = f"{host}{text}"
            try:
                url = canonical_url(text)
            except IndicatorValueError:
                continue
            key = self.urls.get(url)
            if key is not None:
                found.append(Match(key, "url", url, name, str(value)))
                return

    # --- detections ------------------------------------------------------------------------

    def detections(
        self, events: Sequence[Event], store: IndicatorStore, *, detected_at: str | None = None
    ) -> list[Detection]:
        """A `Detection` of kind `indicator` per event and indicator hit, with the indicator's
        live sources, confidence and ATT&CK techniques (read from the store for the hits)."""
        hits = [(event, match) for event in events for match in self.match(event)]
        if not hits:
            return []
        stamp = detected_at or detected_now()
        stored = store.get([m.key for _, m in hits])
        now = time.time()
        out = []
        for event, match in hits:
            indicator = stored.get(match.key)
            if indicator is None:
                continue
            out.append(indicator_detection(event, match, indicator, stamp, now))
        return out


@dataclass
class IntelScan:
    """What a scan needs to match indicators: the compiled live set and the store (for the
    details of hits, and to record sightings)."""

    matcher: IndicatorMatcher
    store: IndicatorStore

    @classmethod
    def load(cls, store: IndicatorStore, now: float | None = None) -> IntelScan:
        return cls(IndicatorMatcher.from_store(store, now), store)

    def detections(self, events: Sequence[Event], detected_at: str) -> list[Detection]:
        if not self.matcher.count:
            return []
        return self.matcher.detections(events, self.store, detected_at=detected_at)

    @staticmethod
    def sighting(detection: Detection) -> Sighting:
        from vigil.intel.store import Sighting

        where = detection.host or detection.source_file
        (field,) = detection.matched_fields or {"": None}
        return Sighting(detection.details["indicator"]["key"], where, field, detection.time)


def indicator_detection(
    event: Event, match: Match, indicator: StoredIndicator, detected_at: str, now: float
) -> Detection:
    """The detection for one hit: level from the best live confidence, ATT&CK tags from
    every source, and the sources' provenance in `details`."""
    live = indicator.live_sources(now) or indicator.sources
    confidences = [s.confidence for s in live if s.confidence is not None]
    confidence = max(confidences) if confidences else None
    techniques = indicator.techniques
    tags = (
        "intel",
        *(f"attack.{t.lower()}" for t in techniques),
        *(f"intel.{t}" for t in indicator.tags[:8]),
    )
    actors = indicator.actors
    title = f"Indicator {indicator.type} {indicator.value}"
    if actors:
        title += f" ({', '.join(actors[:3])})"
    return Detection(
        kind="indicator",
        rule_id=f"indicator:{indicator.key & 0xFFFFFFFFFFFFFFFF:016x}",
        rule_title=title,
        level=_level(confidence),
        status="stable",
        tags=tags,
        time=event.time,
        timestamp=event.timestamp,
        host=event.host,
        source_file=event.source,
        record_id=event.record,
        matched_fields={match.field: match.observed},
        event=event.fields,
        detected_at=detected_at,
        details={
            "indicator": {
                "key": indicator.key,
                "type": indicator.type,
                "value": indicator.value,
                "matched": match.indicator,
                "score": round(indicator.score(now), 1),
            },
            "confidence": confidence,
            "techniques": list(techniques),
            "actors": list(actors),
            "sources": [
                {
                    "source": s.source,
                    "reference": s.reference,
                    "confidence": s.confidence,
                    "tags": list(s.tags),
                }
                for s in live
            ],
        },
    )


def _level(confidence: int | None) -> str:
    if confidence is None:
        return "medium"
    if confidence >= 85:
        return "high"
    if confidence >= 50:
        return "medium"
    return "low"


def _hash_type(text: str) -> str:
    return {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}.get(len(text), "hash")


def _values(value: Any) -> Iterable[str]:
    if value is None:
        return ()
    if isinstance(value, list):
        return [str(v) for v in value if v is not None]
    return (str(value),)
