"""OpenVAS / Greenbone reports, XML or CSV export: the hosts scanned, the ports their results
were found on as services, and each result that is a finding as vulnerabilities (one for each
CVE it names, else one for its NVT) that the service, or the host for a general result, is
vulnerable to. Log-level results (detections, banners, traceroutes) give hosts and services,
not vulnerabilities."""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element

from vigil.assets import scanners
from vigil.assets.model import Inventory, Node
from vigil.errors import InputError

FORMAT = "openvas"

ROOTS = frozenset({"report", "get_reports_response"})
# Threat levels that are not findings.
NOT_FINDINGS = frozenset({"log", "debug", "false positive", "error"})
# The CSV export's columns, by what they give.
COLUMNS = {
    "ip": "IP",
    "hostname": "Hostname",
    "port": "Port",
    "proto": "Port Protocol",
    "cvss": "CVSS",
    "severity": "Severity",
    "name": "NVT Name",
    "oid": "NVT OID",
    "cves": "CVEs",
    "when": "Timestamp",
}
# A report's host details (`<host><detail><name>`) → the host node's attribute (its
# "hostname" detail keys the host).
DETAILS = {"best_os_txt": "os", "best_os_cpe": "os_cpe"}
_PORT = re.compile(r"\b(\d{1,5})/(tcp|udp|sctp)\b", re.IGNORECASE)  # "443/tcp", "www (80/tcp)"
_XML_MARKS = (b"<nvt", b"<gmp>", b"<omp>", b"<get_reports_response", b"a994b278-1f62-11e1")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class Result:
    """One result of either export: where it was found and what."""

    ip: str
    hostname: str
    port: str  # "443/tcp", "general/tcp", or empty
    name: str
    oid: str
    cves: tuple[str, ...]
    cvss: float | None
    severity: str  # the threat level: High, Medium, Low, Log...
    when: str = ""  # when it was found (ISO 8601)


def sniff(name: str, head: bytes) -> bool:
    head = head.removeprefix(_BOM)
    if head.lstrip().startswith(b"<"):
        return b"<report" in head and any(mark in head for mark in _XML_MARKS)
    first = head.split(b"\n", 1)[0]
    return first.startswith(b"IP,") and b"NVT OID" in first


def read(data: bytes, name: str) -> Inventory:
    inventory = Inventory(f"{FORMAT}:{name}")
    body = data.removeprefix(_BOM)
    hosts: list[Element] = []  # the XML report's host list and port list
    listed: list[Element] = []
    if body.lstrip().startswith(b"<"):
        root = scanners.parse_xml(body, name, "an OpenVAS report")
        if root.tag not in ROOTS:
            raise InputError(f"{name}: not an OpenVAS report (its root is <{root.tag}>)")
        hosts = [e for e in root.iter("host") if e.find("ip") is not None]
        listed = [port for ports in root.iter("ports") for port in ports.findall("port")]
        found = (e for results in root.iter("results") for e in results.findall("result"))
        results = [(f"result {n}", _xml_result(e)) for n, e in enumerate(found, 1)]
    else:
        results = list(_csv_results(body, name, inventory))
    names = _hostnames(hosts, [result for _, result in results])
    for element in hosts:
        _report_host(inventory, names, element)
    for where, result in results:
        inventory.report.records_read += 1
        _result(inventory, names, result, where)
    for element in listed:
        _listed_port(inventory, names, element)
    return inventory


def _host(
    inventory: Inventory, names: dict[str, str], address: scanners.Address, **attrs: Any
) -> Node | None:
    """The host at an address, keyed by the name the report gives it anywhere."""
    hostname = names.get(address.value)
    return scanners.host(
        inventory, hostname, [address], hostnames=[hostname] if hostname else None, **attrs
    )


def _hostnames(hosts: list[Element], results: list[Result]) -> dict[str, str]:
    """IP → the host name the report gives it (the host list's, else its results' first)."""
    names: dict[str, str] = {}
    for element in hosts:
        address = scanners.ip(element.findtext("ip"))
        for detail in element.findall("detail"):
            value = (detail.findtext("value") or "").strip()
            if address and value and (detail.findtext("name") or "").strip() == "hostname":
                names.setdefault(address.value, value)
    for result in results:
        address = scanners.ip(result.ip)
        if address and result.hostname:
            names.setdefault(address.value, result.hostname)
    return names


def _result(inventory: Inventory, names: dict[str, str], result: Result, where: str) -> None:
    address = scanners.ip(result.ip)
    if address is None:
        reason = f"not an IP address: {result.ip!r}" if result.ip else "no IP"
        inventory.report.reject(where, reason)
        return
    host = _host(inventory, names, address)
    if host is None:
        return
    scanners.seen(host, result.when or None)
    target = host
    port = _PORT.search(result.port)
    number = scanners.port_number(port.group(1)) if port else None
    if port and number:
        target = scanners.service(inventory, host, port.group(2), number)
    level = result.severity.lower()
    if level in NOT_FINDINGS or (not level and not result.cvss):
        return
    is_cve = bool(scanners.CVE.fullmatch(result.oid))  # OpenVAS's CVE scanner: its OID is one
    cves = result.cves or ((result.oid.upper(),) if is_cve else ())
    oid = None if is_cve else result.oid or None
    if cves:
        named = [(cve.lower(), cve) for cve in cves]
    elif oid:
        named = [(f"openvas:{oid}", result.name or oid)]
    else:
        inventory.report.reject(where, "a finding with neither an NVT OID nor a CVE")
        return
    # An NVT's score is its worst CVE's: given each of several CVEs, it would overstate most.
    scored = (
        {"cvss": result.cvss, "severity": result.severity or None}
        if len(named) == 1
        else {"nvt_cvss": result.cvss, "nvt_severity": result.severity or None}
    )
    for key, title in named:
        vulnerability = inventory.node(
            "vulnerability", key, name=title, nvt=result.name or None, nvt_oid=oid, **scored
        )
        inventory.edge("vulnerable_to", target, vulnerability)


def _csv_results(data: bytes, name: str, inventory: Inventory) -> Iterator[tuple[str, Result]]:
    reader = csv.DictReader(io.StringIO(data.decode("utf-8", "replace"), newline=""))
    header = reader.fieldnames or []
    if COLUMNS["ip"] not in header or COLUMNS["oid"] not in header:
        raise InputError(f"{name}: not an OpenVAS CSV export (no IP and NVT OID columns)")
    rows = iter(reader)
    for number in itertools.count(1):
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:
            inventory.report.records_read += 1
            inventory.report.reject(f"row {number}", f"not a CSV row: {exc}")
            continue
        cell = {ours: (row.get(theirs) or "").strip() for ours, theirs in COLUMNS.items()}
        port = f"{cell['port']}/{cell['proto']}" if cell["port"] else ""
        yield (
            f"row {number}",
            Result(
                cell["ip"],
                cell["hostname"],
                port,
                cell["name"],
                cell["oid"],
                _cves(cell["cves"]),
                scanners.score(cell["cvss"]),
                cell["severity"],
                cell["when"],
            ),
        )


def _xml_result(element: Element) -> Result:
    host = element.find("host")
    nvt = element.find("nvt")
    if nvt is None:
        nvt = Element("nvt")
    cves = [r.get("id", "") for r in nvt.iter("ref") if r.get("type", "").lower() == "cve"]
    severities = nvt.find("severities")
    scores = [
        scanners.score(nvt.findtext("cvss_base")),
        scanners.score(severities.get("score")) if severities is not None else None,
        scanners.score(element.findtext("severity")),
    ]
    return Result(
        ((host.text or "") if host is not None else "").strip(),
        ((host.findtext("hostname") or "") if host is not None else "").strip(),
        (element.findtext("port") or "").strip(),
        (nvt.findtext("name") or element.findtext("name") or "").strip(),
        nvt.get("oid", "").strip(),
        # older reports list them as text, "CVE-..., CVE-..." or NOCVE
        _cves(" ".join(cves) + " " + (nvt.findtext("cve") or "")),
        next((s for s in scores if s is not None), None),
        (element.findtext("threat") or "").strip(),
        (element.findtext("creation_time") or "").strip(),
    )


def _report_host(inventory: Inventory, names: dict[str, str], element: Element) -> None:
    """A host of the report's host list, with what its details say of it."""
    address = scanners.ip(element.findtext("ip"))
    if address is None:
        return
    details: dict[str, str] = {}
    for detail in element.findall("detail"):
        ours = DETAILS.get((detail.findtext("name") or "").strip())
        value = (detail.findtext("value") or "").strip()
        if ours:
            details.setdefault(ours, value)
    host = _host(inventory, names, address, os=details.get("os"), os_cpe=details.get("os_cpe"))
    if host is not None:
        scanners.seen(host, element.findtext("start"), element.findtext("end"))


def _listed_port(inventory: Inventory, names: dict[str, str], element: Element) -> None:
    """A port of the report's port list: `<port>443/tcp<host>10.0.0.5</host>...</port>`."""
    address = scanners.ip(element.findtext("host"))
    port = _PORT.search(element.text or "")
    number = scanners.port_number(port.group(1)) if port else None
    if address is None or port is None or not number:
        return
    host = _host(inventory, names, address)
    if host is not None:
        scanners.service(inventory, host, port.group(2), number)


def _cves(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(c.upper() for c in scanners.CVE.findall(text)))
