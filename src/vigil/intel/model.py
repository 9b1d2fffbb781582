"""Indicators as importers hand them over: typed, canonical values with their provenance."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# The indicator types Vigil stores and matches. `ip-port` is an address with a port
# (`1.2.3.4:443`, `[2001:db8::1]:443`, as maltrail and MISP `ip-dst|port` write them).
TYPES = (
    "ipv4",
    "ipv6",
    "cidr",
    "ip-port",
    "domain",
    "url",
    "md5",
    "sha1",
    "sha256",
    "sha512",
    "email",
    "filename",
    "ja3",
)

HASH_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128, "ja3": 32}
_HEX = re.compile(r"[0-9a-f]+")
# A host name: labels of letters, digits, `-` and `_` (seen in real malware domains), with a
# dot between them; at most 253 characters. Bounded: a hostile value cannot make it slow.
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")


class IndicatorValueError(ValueError):
    """A value that is not a valid indicator of its type."""


@dataclass(slots=True)
class Indicator:
    """One indicator from one source.

    `value` is canonical for its `type` (see `canonical`): lower-case domains without the
    trailing dot, compressed IPv6, networks with host bits cleared, lower-case hex hashes,
    URLs without scheme and with a lower-case host. Times are epoch seconds. `confidence` is
    0-100 (None: the source does not say). `reference` is where the source keeps it (a STIX
    id, a MISP attribute uuid, `file:line`). `techniques` are ATT&CK ids (`T1059.001`);
    `actors` name the threat actors, intrusion sets, campaigns or malware families it is
    tied to."""

    type: str
    value: str
    source: str
    confidence: int | None = None
    first_seen: float | None = None
    last_seen: float | None = None
    valid_until: float | None = None
    revoked: bool = False
    tags: tuple[str, ...] = ()
    techniques: tuple[str, ...] = ()
    actors: tuple[str, ...] = ()
    reference: str | None = None
    description: str | None = None


@dataclass(slots=True)
class Unsupported:
    """Something a source offered that cannot become indicators (a STIX pattern with AND or
    FOLLOWEDBY, a MISP attribute type with no indicator type), listed for the user."""

    reference: str
    reason: str
    text: str


@dataclass(slots=True)
class Rejected:
    """A malformed record, set aside with the reason."""

    reference: str
    reason: str
    text: str = ""


@dataclass
class ImportResult:
    """What one import read: the indicators, what it could not use, and the malformed."""

    source: str
    indicators: list[Indicator] = field(default_factory=list)
    unsupported: list[Unsupported] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    # Incremental position after this import (a TAXII date, MISP manifest timestamps as
    # JSON text), saved by the caller so that the next pull starts there.
    cursor: str | None = None
    # Counts an importer keeps besides the lists (records read, skipped and why), by name.
    stats: dict[str, int] = field(default_factory=dict)

    def extend(self, other: ImportResult) -> None:
        self.indicators.extend(other.indicators)
        self.unsupported.extend(other.unsupported)
        self.rejected.extend(other.rejected)


def canonical(kind: str, value: str) -> tuple[str, str]:
    """The (type, value) an indicator is stored and matched as. Raises IndicatorValueError
    for a value that is not of its type. A `cidr` of one address becomes that address; an
    `ipv4`/`ipv6` given with a prefix length becomes a `cidr`."""
    text = value.strip()
    if not text:
        raise IndicatorValueError("empty value")
    if len(text) > 8192:
        raise IndicatorValueError("value longer than 8192 characters")
    if kind in ("ipv4", "ipv6", "cidr"):
        return _address(text)
    if kind == "ip-port":
        return kind, _ip_port(text)
    if kind == "domain":
        return kind, canonical_domain(text)
    if kind == "url":
        return kind, canonical_url(text)
    if kind in HASH_LENGTHS:
        lowered = text.lower()
        if len(lowered) != HASH_LENGTHS[kind] or not _HEX.fullmatch(lowered):
            raise IndicatorValueError(f"not a {kind} hash")
        return kind, lowered
    if kind == "email":
        lowered = text.lower().strip("<>")
        if not _EMAIL.fullmatch(lowered):
            raise IndicatorValueError("not an e-mail address")
        local, _, domain = lowered.partition("@")
        return kind, f"{local}@{canonical_domain(domain)}"
    if kind == "filename":
        return kind, text
    raise IndicatorValueError(f"unknown indicator type {kind!r}")


def _address(text: str) -> tuple[str, str]:
    try:
        if "/" in text:
            network = ipaddress.ip_network(text.strip("[]"), strict=False)
            if network.num_addresses == 1:
                return _typed(network.network_address)
            return "cidr", str(network)
        return _typed(ipaddress.ip_address(text.strip("[]")))
    except ValueError as exc:
        raise IndicatorValueError(f"not an IP address or network: {exc}") from None


def _typed(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[str, str]:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return ("ipv4" if address.version == 4 else "ipv6"), str(address)


def _ip_port(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise IndicatorValueError("not an address:port")
    kind, address = _address(host)
    if kind == "cidr":
        raise IndicatorValueError("not an address:port (a network)")
    # IPv6 in brackets, as in URLs (RFC 3986), so the port stays apart from the address
    return f"[{address}]:{int(port)}" if kind == "ipv6" else f"{address}:{int(port)}"


def canonical_domain(text: str) -> str:
    """Lower case, no trailing dot, IDNA (punycode) for non-ASCII labels."""
    name = text.strip().rstrip(".").lower()
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise IndicatorValueError(f"not a domain name: {exc}") from None
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(p) for p in name.split(".")):
        raise IndicatorValueError("not a domain name")
    return name


def canonical_url(text: str) -> str:
    """`host[:port]/path?query` with a lower-case host and no scheme, user or fragment:
    feeds write the same URL with and without `http://`, and logs keep the host apart from
    the path. A URL with no path gets `/`."""
    raw = text.strip()
    if "://" not in raw[:16]:
        raw = "http://" + raw
    try:
        parts = urlsplit(raw)
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise IndicatorValueError(f"not a URL: {exc}") from None
    if not host:
        raise IndicatorValueError("not a URL: no host")
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        host = canonical_domain(host)
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme.lower()):
        netloc += f":{port}"
    path = parts.path or "/"
    return netloc + path + (f"?{parts.query}" if parts.query else "")


_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21}
