"""The risk register: every asset ranked by criticality × exposure × vulnerability ×
detection gap × open incidents, each factor with its reason, and the roadmap that follows
from it (patch, segment, add telemetry, add detection, fix cloud permissions), most
valuable first.

    register = assess(store, covered=rule_technique_ids, incidents={"host:db1": 2})
    register.assets[0].reasons      # ["crown jewel", "internet-exposed", "CVE-2021-44228 ..."]
    register.roadmap[0].action      # "patch log4j-core@2.14.1 (CVE-2021-44228, CVSS 10.0) ..."

What matters for each kind of asset is a table (`TECHNIQUES`); a technique is covered when a
loaded rule is tagged with it or one of its sub-techniques. The factors (each 1 when there is
nothing to say):

    criticality   crown jewel / critical 5, high 3, medium 2, low 1, not said 2
    exposure      internet-exposed 2, reachable from an exposed asset 1.5
    vulnerability 1 + worst CVSS / 5 (an IAM path to administrator counts as 9.0)
    detection     2 − the share of its techniques covered by the rules
    incidents     1 + open incidents naming it (at most 5) / 2
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vigil.assets.graph import AccessGraph
from vigil.assets.privesc import find_escalations
from vigil.assets.store import AssetStore

RANKED_KINDS = ("host", "container", "application", "cloud_resource", "user", "role")
CRITICALITY = {"critical": 5.0, "high": 3.0, "medium": 2.0, "low": 1.0, "minimal": 1.0}
UNSAID = 2.0
PRIVESC_CVSS = 9.0
# The ATT&CK techniques that matter for each kind of asset (those an attacker uses on it)
TECHNIQUES = {
    "host": ("T1078", "T1021", "T1003", "T1059", "T1547", "T1105", "T1486", "T1190", "T1133"),
    "container": ("T1190", "T1610", "T1611", "T1059", "T1552"),
    "application": ("T1190", "T1059", "T1552", "T1213"),
    "cloud_resource": ("T1078.004", "T1530", "T1098", "T1537"),
    "user": ("T1078", "T1110", "T1098", "T1556", "T1558"),
    "role": ("T1078.004", "T1098", "T1548", "T1552.005"),
}
VULNERABLE_THROUGH = ("exposes", "runs")  # an asset's services and software carry its CVEs


@dataclass
class AssetRisk:
    id: str
    kind: str
    name: str
    score: float
    factors: dict[str, float]
    reasons: list[str]
    vulnerabilities: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # techniques no rule covers


@dataclass
class Step:
    kind: str  # patch, segment, telemetry, detection, permissions
    action: str
    weight: float  # the risk it takes away (summed scores of the assets it helps)
    assets: list[str]


@dataclass
class Register:
    assets: list[AssetRisk]
    roadmap: list[Step]

    def as_dict(self) -> dict[str, Any]:
        return {
            "assets": [a.__dict__ for a in self.assets],
            "roadmap": [s.__dict__ for s in self.roadmap],
        }


def incidents_by_asset(store: AssetStore, incidents: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Open incidents (as the incident store lists them) → how many name each asset. The
    inventory is asked once for all their entities, not once an incident."""
    named = [set(incident["entities"]) for incident in incidents]
    found = store.context(set().union(*named)) if named else {}
    counts: dict[str, int] = defaultdict(int)
    for entities in named:
        for asset in {found[e]["asset"] for e in entities if e in found}:
            counts[asset] += 1
    return dict(counts)


def covers(covered: set[str], technique: str) -> bool:
    return technique in covered or any(t.startswith(technique + ".") for t in covered)


def assess(
    store: AssetStore, *, covered: Iterable[str], incidents: Mapping[str, int] | None = None
) -> Register:
    covered = {t.upper() for t in covered}
    parents = {t.partition(".")[0] for t in covered}  # a sub-technique covers its parent
    incidents = incidents or {}
    nodes = {n["id"]: n for n in store.nodes(limit=10_000_000)}
    edges = store.edges()
    out_of: dict[str, list[tuple[str, str, dict[str, Any]]]] = defaultdict(list)
    for edge in edges:
        out_of[edge["src"]].append((edge["kind"], edge["dst"], edge["attrs"]))
    graph = AccessGraph()
    graph.add((e["src"], e["dst"], e["kind"]) for e in edges)
    exposed = [i for i, n in nodes.items() if n["attrs"].get("internet_exposed") is True]
    reached = _reached_from(graph, exposed)
    escalations = find_escalations(store.inventory(("user", "group", "role", "policy")))
    paths_of: dict[str, list[Any]] = defaultdict(list)
    for finding in escalations.findings:
        kind = "role" if ":role/" in finding.principal else "user"
        paths_of[f"{kind}:{finding.principal}"].append(finding)

    ranked: list[AssetRisk] = []
    for node_id, node in nodes.items():
        if node["kind"] not in RANKED_KINDS:
            continue
        attrs, reasons = node["attrs"], []
        factors: dict[str, float] = {}
        level = "critical" if attrs.get("crown_jewel") else attrs.get("criticality")
        factors["criticality"] = CRITICALITY.get(str(level), UNSAID)
        if attrs.get("crown_jewel"):
            reasons.append("crown jewel")
        elif level in CRITICALITY:
            reasons.append(f"criticality {level}")
        if attrs.get("internet_exposed") is True:
            factors["exposure"] = 2.0
            reasons.append("internet-exposed")
        elif node_id in reached:
            factors["exposure"] = 1.5
            reasons.append(f"reachable from an exposed asset in {reached[node_id]} moves")
        vulnerabilities = _vulnerabilities(node_id, out_of, nodes)
        worst = max((v["cvss"] or 0.0 for v in vulnerabilities), default=0.0)
        escalation = paths_of.get(node_id, [])
        if escalation:
            worst = max(worst, PRIVESC_CVSS)
            methods = sorted({f.method for f in escalation})
            reasons.append(
                f"can make itself administrator ({len(escalation)} "
                f"way{'s' if len(escalation) != 1 else ''}: "
                + ", ".join(methods[:4]) + (", …" if len(methods) > 4 else "") + ")"
            )  # fmt: skip
        if vulnerabilities:
            top = vulnerabilities[0]
            reasons.append(
                f"{len(vulnerabilities)} known vulnerabilities, worst {top['id']}"
                + (f" (CVSS {top['cvss']:.1f})" if top["cvss"] else "")
                + (f" in {top['software']}" if top["software"] else "")
            )
        if worst:
            factors["vulnerability"] = 1.0 + worst / 5.0
        matter = TECHNIQUES[node["kind"]]
        missing = [t for t in matter if t not in covered and t not in parents]
        factors["detection"] = 1.0 + len(missing) / len(matter)
        if missing:
            reasons.append(
                f"detection covers {len(matter) - len(missing)} of {len(matter)} techniques "
                f"that matter (missing {', '.join(missing)})"
            )
        open_incidents = incidents.get(node_id, 0)
        if open_incidents:
            factors["incidents"] = 1.0 + min(open_incidents, 5) / 2.0
            reasons.append(f"{open_incidents} open incident(s)")
        score = 1.0
        for value in factors.values():
            score *= value
        ranked.append(
            AssetRisk(
                node_id,
                node["kind"],
                node["name"],
                round(score, 2),
                factors,
                reasons,
                vulnerabilities[:20],
                missing,
            )
        )
    ranked.sort(key=lambda a: (-a.score, a.id))
    roadmap = _roadmap(ranked, nodes, graph, exposed, paths_of)
    return Register(ranked, roadmap)


def _reached_from(graph: AccessGraph, exposed: list[str]) -> dict[str, int]:
    """Every node reachable from an exposed one → the fewest moves."""
    reached: dict[str, int] = {}
    for start in exposed:
        for node_id, moves in graph.blast_radius(start).items():
            if moves < reached.get(node_id, 1 << 30):
                reached[node_id] = moves
    return reached


def _vulnerabilities(
    node_id: str,
    out_of: Mapping[str, list[tuple[str, str, dict[str, Any]]]],
    nodes: Mapping[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """The vulnerabilities of an asset, of its services and of the software they run (worst
    first), with the software and the fixed version when the scanner said."""
    found: dict[str, dict[str, Any]] = {}
    frontier: list[tuple[str, str | None]] = [(node_id, None)]
    seen = {node_id}
    while frontier:
        current, software = frontier.pop()
        for kind, dst, attrs in out_of.get(current, ()):
            if kind == "vulnerable_to" and dst in nodes:
                vulnerability = nodes[dst]["attrs"]
                cvss = vulnerability.get("cvss")
                entry = found.setdefault(
                    dst,
                    {
                        "id": nodes[dst]["name"].upper() if dst.startswith("vulnerability:cve")
                        else nodes[dst]["name"],
                        "cvss": float(cvss) if isinstance(cvss, int | float) else None,
                        "severity": vulnerability.get("severity"),
                        "software": software,
                        "fixed_version": attrs.get("fixed_version")
                        or vulnerability.get("fixed_version"),
                    },
                )  # fmt: skip
                entry["software"] = entry["software"] or software
            elif kind in VULNERABLE_THROUGH and dst not in seen:
                seen.add(dst)
                named = dst.split(":", 1)[1] if dst.startswith("software:") else None
                frontier.append((dst, software or named))  # the software, "name@version"
    return sorted(found.values(), key=lambda v: (-(v["cvss"] or 0.0), v["id"]))


def _roadmap(
    ranked: list[AssetRisk],
    nodes: Mapping[str, dict[str, Any]],
    graph: AccessGraph,
    exposed: list[str],
    paths_of: Mapping[str, list[Any]],
) -> list[Step]:
    steps: dict[tuple[str, str], Step] = {}

    def add(kind: str, key: str, action: str, asset: AssetRisk, share: float) -> None:
        step = steps.setdefault((kind, key), Step(kind, action, 0.0, []))
        step.weight = round(step.weight + asset.score * share, 2)
        if asset.id not in step.assets:
            step.assets.append(asset.id)

    for asset in ranked:
        vulnerability_share = 1.0 - 1.0 / asset.factors.get("vulnerability", 1.0)
        for vuln in asset.vulnerabilities[:5]:
            if vuln["software"] and vuln["cvss"] and vuln["cvss"] >= 7.0:
                fix = f" to {vuln['fixed_version']}" if vuln["fixed_version"] else ""
                add("patch", vuln["software"],
                    f"patch {vuln['software']}{fix} ({vuln['id']}, CVSS {vuln['cvss']:.1f})",
                    asset, vulnerability_share)  # fmt: skip
        detection_share = 1.0 - 1.0 / asset.factors["detection"]
        for technique in asset.missing:
            add("detection", technique, f"add detection for {technique}", asset,
                detection_share / max(1, len(asset.missing)))  # fmt: skip
        sources = nodes[asset.id]["sources"]
        if asset.kind == "host" and "telemetry" not in sources:
            add("telemetry", asset.id,
                f"collect logs from {asset.name}: in the inventory, never seen in telemetry",
                asset, 0.25)  # fmt: skip
        for finding in paths_of.get(asset.id, [])[:3]:
            first = finding.steps[0]
            add("permissions", f"{first.statement.policy}|{first.action}",
                f"remove {first.action} from {first.statement.policy} "
                f"({asset.name} escalates by {finding.method})",
                asset, 1.0 - 1.0 / asset.factors.get("vulnerability", 1.0))  # fmt: skip
    jewels = [a for a in ranked if nodes[a.id]["attrs"].get("crown_jewel")]
    if exposed and jewels:
        found = graph.attack_paths(exposed, [a.id for a in jewels])
        for node_id, count in graph.choke_points(found, top=5):
            for jewel in jewels:
                add("segment", node_id,
                    f"segment {node_id}: on {count} attack path(s) to crown jewels",
                    jewel, 0.5)  # fmt: skip
    return sorted(steps.values(), key=lambda s: (-s.weight, s.kind, s.action))


__all__ = ["TECHNIQUES", "AssetRisk", "Register", "Step", "assess", "covers", "incidents_by_asset"]
