"""What the network scanners' importers (nmap, masscan, OpenVAS) share: hostile XML refused,
addresses checked and written one way, and a host, its services and their software made the
same way whoever saw them."""

from __future__ import annotations

import contextlib
import ipaddress
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml.common import DefusedXmlException, DTDForbidden
from defusedxml.ElementTree import DefusedXMLParser

from vigil.assets.model import Inventory, Node
from vigil.errors import InputError
from vigil.events.model import parse_time

CVE = re.compile(r"CVE-\d{4}-\d{4,}", re.IGNORECASE)
_MAC = re.compile(r"[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}", re.IGNORECASE)


class _Parser(DefusedXMLParser):
    """Refuses a DOCTYPE that brings anything (an internal subset, a SYSTEM or PUBLIC id) and
    every entity declaration; a bare `<!DOCTYPE nmaprun>`, as nmap writes, is let through."""

    def defused_start_doctype_decl(
        self, name: str, sysid: str | None, pubid: str | None, has_internal_subset: bool
    ) -> None:
        if sysid or pubid or has_internal_subset:
            raise DTDForbidden(name, sysid, pubid)


def parse_xml(data: bytes, name: str, what: str) -> Element:
    """The document's root; InputError when it is not XML or plays entity/DTD tricks (the
    parse stops at the declaration: nothing is expanded or fetched)."""
    parser = _Parser(forbid_dtd=True, forbid_entities=True, forbid_external=True)
    try:
        parser.feed(data)
        return parser.close()
    except DefusedXmlException as exc:
        raise InputError(
            f"{name}: refused: the XML declares a DTD, entities or external references "
            "(entity/DTD tricks are refused; nothing was expanded)"
        ) from exc
    except ParseError as exc:
        raise InputError(f"{name}: not {what}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Address:
    value: str  # as keyed: an IP in its compressed form, a MAC in lower case with colons
    type: str  # ipv4, ipv6, mac
    vendor: str | None = None


def ip(text: Any) -> Address | None:
    """The IP address in `text`, or None when it is not one."""
    try:
        parsed = ipaddress.ip_address(str(text).strip())
    except ValueError:
        return None
    return Address(parsed.compressed, f"ipv{parsed.version}")


def mac(text: Any, vendor: str | None = None) -> Address | None:
    raw = str(text).strip()
    if not _MAC.fullmatch(raw):
        return None
    return Address(raw.lower().replace("-", ":"), "mac", vendor or None)


def port_number(value: Any) -> int | None:
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if 0 <= number <= 65535 else None


def score(value: Any) -> float | None:
    """A CVSS score (0 to 10), or None."""
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and 0.0 <= number <= 10.0 else None


def host(
    inventory: Inventory, hostname: str | None, addresses: Sequence[Address], **attrs: Any
) -> Node | None:
    """The host, keyed by its host name (lower case) else its first IP address, with an
    `address` node and a `has_address` edge for each address; None when it has neither."""
    ips = [a for a in addresses if a.type != "mac"]
    macs = [a for a in addresses if a.type == "mac"]
    hostname = (hostname or "").strip() or None
    key = hostname.lower() if hostname else ips[0].value if ips else None
    if key is None:
        return None
    node = inventory.node(
        "host",
        key,
        name=hostname or key,
        ip=ips[0].value if ips else None,
        mac=macs[0].value if macs else None,
        vendor=macs[0].vendor if macs else None,
        **attrs,
    )
    for address in addresses:
        found = inventory.node("address", address.value, type=address.type, vendor=address.vendor)
        inventory.edge("has_address", node, found)
    return node


def seen(node: Node, start: Any, end: Any = None) -> None:
    """Widen the node's `first_seen` / `last_seen` (epoch seconds) to cover start..end."""
    stamps = [s for s in (_stamp(start), _stamp(end)) if s is not None]
    if not stamps:
        return
    first, last = node.attrs.get("first_seen"), node.attrs.get("last_seen")
    node.attrs["first_seen"] = min(stamps if first is None else [*stamps, first])
    node.attrs["last_seen"] = max(stamps if last is None else [*stamps, last])


def _stamp(value: Any) -> float | None:
    """Epoch seconds from a number, its text (nmap, masscan) or ISO 8601 (OpenVAS)."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    return parse_time(value)


def service(inventory: Inventory, on: Node, proto: str, port: int, **attrs: Any) -> Node:
    """The service `<host key>:<proto>/<port>`, exposed by the host."""
    proto = proto.strip().lower()
    made = inventory.node(
        "service",
        f"{on.key}:{proto}/{port}",
        name=attrs.get("service") or f"{proto}/{port}",
        port=port,
        proto=proto,
        **attrs,
    )
    inventory.edge("exposes", on, made)
    return made


def software(
    inventory: Inventory, runner: Node, product: str | None, version: str | None, **attrs: Any
) -> Node | None:
    """The software `<product>@<version>` (lower case) the runner runs; None unless both are
    named."""
    product, version = (product or "").strip(), (version or "").strip()
    if not product or not version:
        return None
    made = inventory.node(
        "software",
        f"{product}@{version}".lower(),
        name=f"{product} {version}",
        product=product,
        version=version,
        **attrs,
    )
    inventory.edge("runs", runner, made)
    return made
