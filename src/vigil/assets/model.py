"""The asset inventory's model: nodes (hosts, services, software, vulnerabilities,
identities, policies, cloud resources...) and the edges between them (logon, flow,
member-of, can-assume, has-permission, runs, vulnerable-to...). An importer or the passive
discovery stage produces an `Inventory` (nodes, edges, and a report of what was read and set
aside); the store merges it (`vigil.store.assets`).

A node is known by its kind and key (`host:web01`, `software:openssl@1.1.1k`,
`vulnerability:cve-2021-3711`, `user:arn:aws:iam::123:user/alice`): two sources naming the
same thing merge into one node, each adding its attributes and its name to `sources`.

    inventory = Inventory("nmap:scan.xml")
    host = inventory.node("host", "10.0.0.5", name="web01", os="Linux 5.4")
    service = inventory.node("service", "10.0.0.5:tcp/443", name="https", port=443)
    inventory.edge("exposes", host, service)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from vigil.ingest import FileReport

# What a node can be; what an edge can say. Importers use these names only.
NODE_KINDS = frozenset(
    {
        "host",  # a machine: key its host name (lower case), else its address
        "address",  # an IP or MAC address: key the address
        "service",  # a listening port of a host: key "<host key>:<proto>/<port>"
        "software",  # a package or product: key "<name>@<version>" (lower case)
        "vulnerability",  # key the CVE (or the scanner's id) in lower case
        "user",  # an identity: key its name, or its ARN for a cloud one
        "group",
        "role",
        "policy",  # a permission document: key its ARN or name
        "cloud_resource",  # key its ARN or provider id
        "container",  # key its image reference or id
        "application",
        "data_store",
    }
)
EDGE_KINDS = frozenset(
    {
        "has_address",  # host → address
        "exposes",  # host → service
        "runs",  # host / container / service → software
        "vulnerable_to",  # software (or host, service) → vulnerability
        "logon",  # user → host
        "flow",  # host → host (attributes: port, proto)
        "admin_of",  # user / group → host
        "member_of",  # user → group
        "can_assume",  # principal → role (a trust relationship)
        "has_policy",  # user / group / role → policy
        "has_permission",  # principal → resource (attributes: action, statement)
    }
)


@dataclass(slots=True)
class Node:
    kind: str
    key: str
    name: str
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.key}"


@dataclass(frozen=True, slots=True)
class Edge:
    kind: str
    src: str  # a node's id
    dst: str
    attrs: tuple[tuple[str, Any], ...] = ()  # small and hashable: port, action...


@dataclass
class Inventory:
    """What one source gave: nodes by id (a node met twice is merged), edges (each once),
    and the report (records read, set aside with their reasons)."""

    source: str
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: dict[Edge, None] = field(default_factory=dict)  # ordered, each once
    report: FileReport = field(init=False)

    def __post_init__(self) -> None:
        self.report = FileReport(self.source)

    def node(self, kind: str, key: str, *, name: str | None = None, **attrs: Any) -> Node:
        """The node `kind:key` (made, or merged with what is known of it: attributes given
        here win unless None)."""
        if kind not in NODE_KINDS:
            raise ValueError(f"not a kind of asset: {kind!r}")
        key = str(key).strip()
        if not key:
            raise ValueError(f"a {kind} needs a key")
        name = str(name).strip() if name is not None else None  # a file may hold anything
        node_id = f"{kind}:{key}"
        known = self.nodes.get(node_id)
        if known is None:
            known = self.nodes[node_id] = Node(kind, key, name or key)
        elif name and name != key:  # a real name, not the key again
            known.name = name
        known.attrs.update({k: v for k, v in attrs.items() if v is not None})
        return known

    def edge(self, kind: str, src: Node | str, dst: Node | str, **attrs: Any) -> Edge:
        if kind not in EDGE_KINDS:
            raise ValueError(f"not a kind of relationship: {kind!r}")
        made = Edge(
            kind,
            src.id if isinstance(src, Node) else src,
            dst.id if isinstance(dst, Node) else dst,
            tuple(sorted((k, _scalar(v)) for k, v in attrs.items() if v is not None)),
        )
        self.edges[made] = None
        return made

    def update(self, other: Inventory) -> None:
        """Take in what another inventory holds (its nodes merged, its edges added)."""
        for node in other.nodes.values():
            self.node(node.kind, node.key, name=node.name, **node.attrs)
        self.edges.update(other.edges)

    def to_bytes(self) -> bytes:
        """The nodes and edges as a stream record (the report stays with the reader)."""
        return orjson.dumps(
            {
                "source": self.source,
                "nodes": [(n.kind, n.key, n.name, n.attrs) for n in self.nodes.values()],
                "edges": [(e.kind, e.src, e.dst, e.attrs) for e in self.edges],
            },
            default=str,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Inventory:
        value = orjson.loads(data)
        inventory = cls(str(value["source"]))
        for kind, key, name, attrs in value["nodes"]:
            inventory.nodes[f"{kind}:{key}"] = Node(kind, key, name, dict(attrs))
        for kind, src, dst, attrs in value["edges"]:
            inventory.edges[Edge(kind, src, dst, tuple((k, v) for k, v in attrs))] = None
        return inventory

    def count(self, kind: str) -> int:
        return sum(1 for node in self.nodes.values() if node.kind == kind)

    def edge_count(self, kind: str) -> int:
        return sum(1 for edge in self.edges if edge.kind == kind)


def _scalar(value: Any) -> str | int | float | bool:
    """An edge attribute as a small hashable value that any store keeps: a list or object,
    or an integer past 64 bits (from a hostile log), becomes its JSON text."""
    if isinstance(value, bool | float | str):
        return value
    if isinstance(value, int):
        return value if -(1 << 63) <= value < (1 << 63) else str(value)
    try:
        return orjson.dumps(value, default=str).decode()
    except orjson.JSONEncodeError:  # an integer past 64 bits inside
        return str(value)
