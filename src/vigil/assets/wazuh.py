"""Wazuh vulnerability findings into the inventory: agents as hosts, their packages and the
vulnerabilities found in them.

Two shapes are read: the 4.7 API's answer (`{"data": {"affected_items": [...]}}`, one item
per package and CVE, naming the agent only when the export added `agent_name`/`agent_ip`)
and, from 4.8 on, the indexer's search answer (`{"hits": {"hits": [{"_source": {agent,
host, package, vulnerability}}]}}`); a bare list of items, hits or documents is read too.

- The agent → `host` keyed by its name (lower case), with its id, IP (and an `address`
  node) and OS. One name met with several agent ids stays one host (`agent_id` the first
  met, `agent_ids` all; a warning says so). A finding that names no agent adds its software
  and vulnerability, tied to no host (one warning counts them).
- The package → `software` `<name>@<version>`, `runs` from the host; the CVE →
  `vulnerability` (lower case) with its CVSS (v3, else v2; 0 means none) and severity, and
  `vulnerable_to` from the package: the fixed version when the condition says "Package less
  than X", the condition itself, and a status ("fixed" when a fix exists, "not-fixed" when
  Wazuh says unfixed).
- Severity: Wazuh's word in Vigil's (`findings.SEVERITIES`). One Vigil does not know ("-",
  "Untriaged") is kept as given, not guessed from the score, and reported as a warning with
  how many findings carry it: the finding itself is sound, only its rating is odd.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from vigil.assets.findings import Findings, items, load_json, score, text
from vigil.assets.model import Inventory, Node
from vigil.errors import InputError

FORMAT = "wazuh"

# What the condition says → the finding's status, and the fixed version it names
CONDITIONS = (
    (re.compile(r"package less than (?P<fixed>.+)", re.IGNORECASE), "fixed"),
    (re.compile(r"package less or equal than .+", re.IGNORECASE), None),
    (re.compile(r"package unfixed", re.IGNORECASE), "not-fixed"),
)


def sniff(name: str, head: bytes) -> bool:
    if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] not in (b"{", b"["):
        return False
    if b'"affected_items"' in head:
        return b'"cve"' in head or b"vulnerabilities" in head
    return b"wazuh-states-vulnerabilities" in head or (
        b'"_source"' in head and b'"vulnerability"' in head and b'"agent"' in head
    )


def read(data: bytes, name: str) -> Inventory:
    """The hosts, packages and vulnerabilities of a Wazuh vulnerability export."""
    document = load_json(data, name, "Wazuh")
    inventory = Inventory(name)
    inventory.report.format = FORMAT
    report = _Report(Findings(inventory))
    for where, record in _records(document, inventory, name):
        inventory.report.records_read += 1
        source = record.get("_source", record) if isinstance(record, dict) else None
        if not isinstance(source, dict):
            inventory.report.reject(where, "a finding that is not an object")
        elif "vulnerability" in source:
            report.indexed(source, where)
        else:
            report.item(source, where)
    return report.finish()


def _records(document: Any, inventory: Inventory, name: str) -> list[tuple[str, Any]]:
    if isinstance(document, list):
        return [(f"[{i}]", record) for i, record in enumerate(document)]
    if isinstance(document, dict):
        data, hits = document.get("data"), document.get("hits")
        if isinstance(data, dict) and "affected_items" in data:
            found = items(data["affected_items"], inventory, "data.affected_items")
            return [(f"data.affected_items[{i}]", r) for i, r in enumerate(found)]
        if isinstance(hits, dict) and "hits" in hits:
            found = items(hits["hits"], inventory, "hits.hits")
            return [(f"hits.hits[{i}]", r) for i, r in enumerate(found)]
    raise InputError(
        f"{name}: not a Wazuh vulnerability export (no data.affected_items, no hits.hits)"
    )


class _Report:
    def __init__(self, findings: Findings) -> None:
        self.findings = findings
        self.inventory = findings.inventory
        self.agent_ids: dict[str, set[str]] = {}  # host id → agent ids met
        self.no_agent: list[str] = []

    def item(self, item: dict[str, Any], where: str) -> None:
        """A 4.7 API item: the package and CVE flat, the agent only when exported."""
        host = self.host(
            text(item.get("agent_name")),
            text(item.get("agent_id")),
            item.get("agent_ip"),
            None,
            where,
        )
        cvss3, cvss2 = score(item.get("cvss3_score")), score(item.get("cvss2_score"))
        self.finding(
            host,
            where,
            package={
                "name": item.get("name"),
                "version": item.get("version"),
                "type": item.get("type") if text(item.get("type")) != "PACKAGE" else None,
                "architecture": item.get("architecture"),
            },
            cve=text(item.get("cve")),
            severity=item.get("severity"),
            cvss=cvss3 or cvss2,
            cvss_version="3" if cvss3 else "2" if cvss2 else None,
            condition=text(item.get("condition")),
            title=text(item.get("title")),
            published=text(item.get("published")),
        )

    def indexed(self, source: dict[str, Any], where: str) -> None:
        """A 4.8+ indexer document: agent, host, package and vulnerability objects."""
        agent, package, vulnerability = (
            _object(source.get(part)) for part in ("agent", "package", "vulnerability")
        )
        os = _object(_object(source.get("host")).get("os"))
        host = self.host(
            text(agent.get("name")),
            text(agent.get("id")),
            agent.get("ip"),
            text(os.get("full"))
            or " ".join(filter(None, (text(os.get("name")), text(os.get("version"))))),
            where,
        )
        rating = _object(vulnerability.get("score"))
        self.finding(
            host,
            where,
            package=package,
            cve=text(vulnerability.get("id")),
            severity=vulnerability.get("severity"),
            cvss=score(rating.get("base")),
            cvss_version=text(rating.get("version")),
            condition=text(_object(vulnerability.get("scanner")).get("condition")),
            title=None,
            published=text(vulnerability.get("published_at")),
        )

    def host(
        self, name: str | None, agent_id: str | None, ip: Any, os: str | None, where: str
    ) -> Node | None:
        if not name:
            self.no_agent.append(where)
            return None
        address = _ip(ip)
        node = self.inventory.node("host", name.lower(), name=name, ip=address, os=os or None)
        if agent_id:
            node.attrs.setdefault("agent_id", agent_id)
            self.agent_ids.setdefault(node.id, set()).add(agent_id)
        if address:
            self.inventory.edge("has_address", node, self.inventory.node("address", address))
        return node

    def finding(
        self,
        host: Node | None,
        where: str,
        *,
        package: dict[str, Any],
        cve: str | None,
        **about: Any,
    ) -> None:
        product = text(package.get("name"))
        if not product or not cve:
            self.inventory.report.reject(where, "a finding without a package name or a CVE")
            return
        software = self.findings.software(
            host,
            product,
            text(package.get("version")),
            type=text(package.get("type")),
            architecture=text(package.get("architecture")),
        )
        condition = about.pop("condition")
        fixed, status = _condition(condition)
        vulnerability = self.findings.vulnerability(cve, where, about.pop("severity"), **about)
        self.findings.affects(
            software, vulnerability, fixed_version=fixed, status=status, condition=condition
        )

    def finish(self) -> Inventory:
        report = self.inventory.report
        for node_id, ids in self.agent_ids.items():
            if len(ids) > 1:
                self.inventory.nodes[node_id].attrs["agent_ids"] = sorted(ids)
                report.warn(
                    node_id,
                    f"one agent name, {len(ids)} agent ids ({', '.join(sorted(ids))}): "
                    "kept as one host (agent_id the first met, agent_ids all)",
                )
        if self.no_agent:
            count = len(self.no_agent)
            report.warn(
                self.no_agent[0],
                f"findings naming no agent: {count} (their software is tied to no host)",
            )
        return self.findings.finish()


def _condition(condition: str | None) -> tuple[str | None, str | None]:
    """(fixed version, status) from a condition such as "Package less than 4.3.2"."""
    for pattern, status in CONDITIONS:
        found = pattern.fullmatch(condition or "")
        if found:
            return found.groupdict().get("fixed"), status
    return None, None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _ip(value: Any) -> str | None:
    try:
        return ipaddress.ip_address(str(text(value))).compressed
    except ValueError:
        return None
