"""nmap XML (`-oX`): the hosts that were up, their addresses and OS, their open ports as
services, the software nmap named on them and the CVEs its `vulners` script listed."""

from __future__ import annotations

import re
from collections import Counter
from xml.etree.ElementTree import Element

from vigil.assets import scanners
from vigil.assets.model import Inventory, Node
from vigil.errors import InputError

FORMAT = "nmap"

# nmap's <service> attribute → the service node's attribute.
SERVICE_ATTRS = {
    "name": "service",
    "product": "product",
    "version": "version",
    "extrainfo": "extrainfo",
    "tunnel": "tunnel",
    "ostype": "ostype",
    "devicetype": "devicetype",
}
# Older vulners scripts give only text: "CVE-2018-15919	5.0	https://...".
_VULNERS_LINE = re.compile(r"(CVE-\d{4}-\d{4,})\s+(\d+(?:\.\d+)?)", re.IGNORECASE)


def sniff(name: str, head: bytes) -> bool:
    return b"<nmaprun" in head


def read(data: bytes, name: str) -> Inventory:
    root = scanners.parse_xml(data, name, "nmap XML")
    if root.tag != "nmaprun":
        raise InputError(f"{name}: not nmap XML (its root is <{root.tag}>, not <nmaprun>)")
    inventory = Inventory(f"{FORMAT}:{name}")
    not_up: Counter[str] = Counter()
    for number, element in enumerate(root.findall("host"), 1):
        inventory.report.records_read += 1
        status = element.find("status")
        state = (status.get("state") if status is not None else None) or "up"
        if state == "up":
            _host(inventory, element, f"host {number}")
        else:
            not_up[state] += 1
    if not_up:  # not an asset seen: counted, not imported
        counts = ", ".join(f"{n} {state}" for state, n in sorted(not_up.items()))
        inventory.report.warn(None, f"hosts not up, not imported: {counts}")
    return inventory


def _host(inventory: Inventory, element: Element, where: str) -> None:
    addresses = []
    for found in element.findall("address"):
        addr, kind = found.get("addr", ""), found.get("addrtype", "")
        address = scanners.mac(addr, found.get("vendor")) if kind == "mac" else scanners.ip(addr)
        if address is None:
            inventory.report.warn(where, f"not an address, left out: {addr!r}")
        else:
            addresses.append(address)
    hostnames = [
        h.get("name", "").strip()
        for h in element.findall("hostnames/hostname")
        if h.get("name", "").strip()
    ]
    os_name, accuracy = _os(element.find("os"))
    ports = element.findall("ports/port")
    host = scanners.host(
        inventory,
        hostnames[0] if hostnames else None,
        addresses,
        state="up",
        hostnames=list(dict.fromkeys(hostnames)) or None,
        os=os_name,
        os_accuracy=accuracy,
        port_states=_closed_ports(element, ports) or None,
    )
    if host is None:
        inventory.report.reject(where, "a host with no address or host name")
        return
    scanners.seen(host, element.get("starttime"), element.get("endtime"))
    for port in ports:
        _port(inventory, host, port, where)


def _port(inventory: Inventory, host: Node, port: Element, where: str) -> None:
    state = port.find("state")
    if state is None or state.get("state") != "open":
        return
    number = scanners.port_number(port.get("portid"))
    proto = port.get("protocol", "").strip()
    if number is None or not proto:
        inventory.report.warn(where, f"a port with no number or protocol: {port.attrib}")
        return
    found = port.find("service")
    attrs: dict[str, str | None] = {}
    cpe = None
    if found is not None:
        attrs = {ours: found.get(theirs) for theirs, ours in SERVICE_ATTRS.items()}
        cpe = (found.findtext("cpe") or "").strip() or None
    banners = [s.get("output") for s in port.findall("script") if s.get("id") == "banner"]
    service = scanners.service(
        inventory,
        host,
        proto,
        number,
        state="open",
        cpe=cpe,
        banner=banners[0] if banners else None,
        **attrs,
    )
    software = scanners.software(
        inventory, service, attrs.get("product"), attrs.get("version"), cpe=cpe
    )
    for cve, cvss in _vulners(port).items():
        vulnerability = inventory.node("vulnerability", cve.lower(), name=cve, cvss=cvss)
        inventory.edge("vulnerable_to", software or service, vulnerability)


def _os(element: Element | None) -> tuple[str | None, int | None]:
    """The best guess (the most accurate osmatch, else osclass; the first on a tie)."""
    if element is None:
        return None, None
    guesses = [(_accuracy(m), m.get("name", "").strip()) for m in element.iter("osmatch")]
    if not any(name for _, name in guesses):
        guesses = []
        for c in element.iter("osclass"):
            parts = [c.get("vendor"), c.get("osfamily"), c.get("osgen")]
            if parts[1] == parts[0]:
                parts[1] = None  # "Linux Linux 2.6.X"
            guesses.append((_accuracy(c), " ".join(p.strip() for p in parts if p and p.strip())))
    guesses = [(accuracy, name) for accuracy, name in guesses if name]
    if not guesses:
        return None, None
    accuracy, name = max(guesses, key=lambda guess: guess[0])
    return name, accuracy


def _accuracy(element: Element) -> int:
    return _int(element.get("accuracy")) or 0


def _int(value: str | None) -> int | None:
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _closed_ports(element: Element, ports: list[Element]) -> dict[str, int]:
    """How many ports were not open, by state (the listed ones and nmap's `extraports`)."""
    counts: Counter[str] = Counter()
    for port in ports:
        state = port.find("state")
        if state is not None and state.get("state") not in (None, "open"):
            counts[str(state.get("state"))] += 1
    for extra in element.findall("ports/extraports"):
        count = _int(extra.get("count"))
        if extra.get("state") and count and count > 0:
            counts[str(extra.get("state"))] += count
    return dict(counts)


def _vulners(port: Element) -> dict[str, float | None]:
    """CVE id → CVSS from the port's `vulners` script (its tables, else its text); the
    script's exploit and other non-CVE entries are left out."""
    found: dict[str, float | None] = {}
    for script in port.findall("script"):
        if script.get("id") != "vulners":
            continue
        tables = list(script.iter("table"))
        for table in tables:
            elems = {e.get("key"): (e.text or "").strip() for e in table.findall("elem")}
            ident = elems.get("id", "")
            if scanners.CVE.fullmatch(ident):
                found[ident.upper()] = scanners.score(elems.get("cvss"))
        if not tables:
            for cve, cvss in _VULNERS_LINE.findall(script.get("output", "")):
                found[cve.upper()] = scanners.score(cvss)
    return found
