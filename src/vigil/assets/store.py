"""The inventory in the state database: what every source said of every node and edge,
merged (the load step of every importer, and of passive discovery).

A node met again keeps its id: its attributes are updated (what the newer source says wins),
its sources gain the new one, `first_seen` stays, `last_seen` moves. An edge is known by its
kind, ends and attributes; met again, only its sources and `last_seen` change.

    store = AssetStore(engine)
    report = store.merge(inventory)            # {"nodes_new": 3, "nodes_updated": 1, ...}
    store.nodes(kind="host")                   # a page of hosts
    store.node("host:web01")                   # one, with its edges in and out
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson
from sqlalchemy import Engine, func, select

from vigil.assets.model import Edge, Inventory, Node
from vigil.store import migrate, upsert_insert
from vigil.store.tables import asset_edge_table, asset_node_table

CHUNK = 500  # rows per statement
KEEP = {"first_event": min, "last_event": max}  # attributes merged, not replaced
TELEMETRY = "telemetry"  # the source of what passive discovery found
ENTITY_NODE = {"host": "host", "user": "user", "ip": "address"}  # an entity's kind → a node's
CONTEXT = ("criticality", "crown_jewel", "owner", "segment", "internet_exposed", "os",
           "environment", "tags")  # fmt: skip


def edge_id(edge: Edge) -> str:
    text = orjson.dumps([edge.kind, edge.src, edge.dst, edge.attrs], default=str)
    return hashlib.sha1(text, usedforsecurity=False).hexdigest()


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


CONTEXT_CHUNK = 5000  # node ids per query of `context`


class AssetStore:
    def __init__(self, engine: Engine) -> None:
        migrate(engine)
        self.engine = engine
        self._insert = upsert_insert(engine)

    def merge(self, inventory: Inventory, *, now: float | None = None) -> dict[str, int]:
        """Load what a source gave, in one transaction; what changed, counted."""
        now = time.time() if now is None else now
        nodes = list(inventory.nodes.values())
        edges = list(inventory.edges)
        source = inventory.source
        counts = {"nodes_new": 0, "nodes_updated": 0, "edges_new": 0, "edges_seen": 0}
        with self.engine.begin() as conn:
            for chunk in _chunks(nodes):
                known = {
                    row.id: row
                    for row in conn.execute(
                        select(asset_node_table).where(
                            asset_node_table.c.id.in_([n.id for n in chunk])
                        )
                    )
                }
                rows = [self._node_row(node, known.get(node.id), source, now) for node in chunk]
                counts["nodes_updated"] += len(known)
                counts["nodes_new"] += len(chunk) - len(known)
                insert = self._insert(asset_node_table)
                conn.execute(
                    insert.on_conflict_do_update(
                        index_elements=["id"],
                        set_={
                            c: insert.excluded[c]
                            for c in ("name", "attrs", "sources", "first_seen", "last_seen")
                        },
                    ),
                    rows,
                )
            for edge_chunk in _chunks(edges):
                ids = [edge_id(edge) for edge in edge_chunk]
                seen = {
                    row.id: row
                    for row in conn.execute(
                        select(asset_edge_table.c.id, asset_edge_table.c.sources).where(
                            asset_edge_table.c.id.in_(ids)
                        )
                    )
                }
                counts["edges_seen"] += len(seen)
                counts["edges_new"] += len(edge_chunk) - len(seen)
                rows = []
                for key, edge in zip(ids, edge_chunk, strict=True):
                    old = seen.get(key)
                    sources = _with(orjson.loads(old.sources) if old else [], source)
                    rows.append(
                        {
                            "id": key,
                            "kind": edge.kind,
                            "src": edge.src,
                            "dst": edge.dst,
                            "attrs": _dumps(dict(edge.attrs)),
                            "sources": orjson.dumps(sources).decode(),
                            "first_seen": now,
                            "last_seen": now,
                        }
                    )
                insert = self._insert(asset_edge_table)
                conn.execute(
                    insert.on_conflict_do_update(
                        index_elements=["id"],
                        set_={"sources": insert.excluded.sources, "last_seen": now},
                    ),
                    rows,
                )
        return counts

    @staticmethod
    def _node_row(node: Node, old: Any, source: str, now: float) -> dict[str, Any]:
        attrs = orjson.loads(old.attrs) if old is not None else {}
        for key, value in node.attrs.items():
            keep = KEEP.get(key)
            attrs[key] = keep(attrs[key], value) if keep and key in attrs else value
        sources = _with(orjson.loads(old.sources) if old is not None else [], source)
        named = old is not None and node.name == node.key  # no real name given: keep one
        return {
            "id": node.id,
            "kind": node.kind,
            "name": old.name if named else node.name,
            "attrs": _dumps(attrs),
            "sources": orjson.dumps(sources).decode(),
            "first_seen": old.first_seen if old is not None else now,
            "last_seen": now,
        }

    def retire(self, inventory: Inventory) -> list[Edge]:
        """What a source no longer says, after it gave this whole inventory again (a scan or
        an export re-imported: a policy detached, a user out of a group): its name is taken
        off the edges it named that are not in the inventory, and an edge no source names
        any more is deleted. The deleted edges. (Telemetry is never retired: a batch of
        events is not the whole picture.)"""
        source = inventory.source
        if source == TELEMETRY:
            return []
        keep = {edge_id(edge) for edge in inventory.edges}
        encoded = orjson.dumps(source).decode()  # as the sources column holds it, quoted
        literal = encoded.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        marked = f"%{literal}%"  # narrows the rows; each is checked below
        gone: list[Edge] = []
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(asset_edge_table).where(asset_edge_table.c.sources.like(marked, escape="\\"))
            ).all()
            for row in rows:
                sources = orjson.loads(row.sources)
                if row.id in keep or source not in sources:
                    continue
                rest = [s for s in sources if s != source]
                if rest:
                    conn.execute(
                        asset_edge_table.update()
                        .where(asset_edge_table.c.id == row.id)
                        .values(sources=orjson.dumps(rest).decode())
                    )
                else:
                    conn.execute(asset_edge_table.delete().where(asset_edge_table.c.id == row.id))
                    attrs = tuple(orjson.loads(row.attrs).items())
                    gone.append(Edge(row.kind, row.src, row.dst, attrs))
        return gone

    # --- reading ---------------------------------------------------------------------------

    def nodes(
        self,
        *,
        kind: str | None = None,
        search: str | None = None,
        managed: bool | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        query = select(asset_node_table).order_by(asset_node_table.c.id)
        if kind is not None:
            query = query.where(asset_node_table.c.kind == kind)
        if managed is not None:  # unmanaged: seen in telemetry only
            only_telemetry = asset_node_table.c.sources == orjson.dumps([TELEMETRY]).decode()
            query = query.where(~only_telemetry if managed else only_telemetry)
        if search:
            pattern = f"%{search.lower()}%"
            query = query.where(
                func.lower(asset_node_table.c.id).like(pattern)
                | func.lower(asset_node_table.c.name).like(pattern)
            )
        with self.engine.connect() as conn:
            return [_node(row) for row in conn.execute(query.limit(limit).offset(offset))]

    def node(self, node_id: str, *, most: int | None = None) -> dict[str, Any] | None:
        """A node with its edges out and in (the first `most` of each way)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(asset_node_table).where(asset_node_table.c.id == node_id)
            ).first()
            if row is None:
                return None
            table = asset_edge_table.c
            out = _edges(conn, table.src == node_id, table.dst, most)
            into = _edges(conn, table.dst == node_id, table.src, most)
        return {**_node(row), "edges_out": out, "edges_in": into}

    def inventory(self, kinds: Iterable[str], *, source: str = "store") -> Inventory:
        """The nodes of these kinds and the edges between them, as an inventory (for the
        queries that read one: the cloud privilege-escalation query)."""
        wanted = sorted(set(kinds))
        inventory = Inventory(source)
        with self.engine.connect() as conn:
            for row in conn.execute(
                select(asset_node_table).where(asset_node_table.c.kind.in_(wanted))
            ):
                kind, key = row.id.split(":", 1)
                inventory.nodes[row.id] = Node(kind, key, row.name, orjson.loads(row.attrs))
            for row in conn.execute(select(asset_edge_table)):
                if row.src in inventory.nodes and row.dst in inventory.nodes:
                    attrs = tuple(orjson.loads(row.attrs).items())
                    inventory.edges[Edge(row.kind, row.src, row.dst, attrs)] = None
        return inventory

    def edges(self, kinds: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Every edge (of these kinds)."""
        query = select(asset_edge_table).order_by(asset_edge_table.c.id)
        if kinds is not None:
            query = query.where(asset_edge_table.c.kind.in_(sorted(set(kinds))))
        with self.engine.connect() as conn:
            return [_edge(row) for row in conn.execute(query)]

    def context(self, entities: Iterable[str]) -> dict[str, dict[str, Any]]:
        """What the inventory says of an incident's or an alert's entities ("host:ws1",
        "user:corp\\alice", "ip:10.0.0.5"): criticality, owner, segment, exposure..."""
        ids = {}
        for entity in entities:
            kind, _, value = entity.partition(":")
            if kind in ENTITY_NODE:
                ids[f"{ENTITY_NODE[kind]}:{value}"] = entity
        if not ids:
            return {}
        with self.engine.connect() as conn:
            # an address stands for its host (the one the inventory ties it to)
            addresses = [i for i in ids if i.startswith("address:")]
            if addresses:
                edge = asset_edge_table.c
                tied = [
                    pair
                    for at in range(0, len(addresses), CONTEXT_CHUNK)
                    for pair in conn.execute(
                        select(edge.dst, edge.src)
                        .where(
                            edge.kind == "has_address",
                            edge.dst.in_(addresses[at : at + CONTEXT_CHUNK]),
                        )
                        .order_by(edge.dst, edge.src)
                    )
                ]
                hosts: dict[str, list[str]] = {}
                for address, host in tied:
                    hosts.setdefault(address, []).append(host)
                for address, found in hosts.items():
                    # the host the inventory names, before the one telemetry keyed by the address
                    named = sorted(found, key=lambda h: (h[5:] == address[8:], h))
                    if named[0] not in ids:
                        ids[named[0]] = ids.pop(address)
            wanted = list(ids)
            rows = [  # in chunks: any number of entities, under any database's bound
                row
                for at in range(0, len(wanted), CONTEXT_CHUNK)
                for row in conn.execute(
                    select(asset_node_table).where(
                        asset_node_table.c.id.in_(wanted[at : at + CONTEXT_CHUNK])
                    )
                )
            ]
        out = {}
        for row in rows:
            node = _node(row)
            attrs = node["attrs"]
            out[ids[row.id]] = {
                "asset": row.id,
                "managed": node["managed"],
                **{k: attrs[k] for k in CONTEXT if k in attrs},
            }
        return out

    def ids_where(self, attribute: str) -> list[str]:
        """The ids of the nodes whose attribute `attribute` is true (crown_jewel,
        internet_exposed)."""
        query = select(asset_node_table.c.id, asset_node_table.c.attrs).where(
            asset_node_table.c.attrs.like(f'%"{attribute}":true%')
        )
        with self.engine.connect() as conn:
            return sorted(
                node_id for node_id, attrs in conn.execute(query)
                if orjson.loads(attrs).get(attribute) is True
            )  # fmt: skip

    def counts(self) -> dict[str, dict[str, int]]:
        """Nodes per kind, edges per kind."""
        with self.engine.connect() as conn:
            nodes = conn.execute(
                select(asset_node_table.c.kind, func.count()).group_by(asset_node_table.c.kind)
            ).all()
            edges = conn.execute(
                select(asset_edge_table.c.kind, func.count()).group_by(asset_edge_table.c.kind)
            ).all()
        return {
            "nodes": {kind: int(n) for kind, n in sorted(nodes)},
            "edges": {kind: int(n) for kind, n in sorted(edges)},
        }


def _dumps(value: Any) -> str:
    """JSON text of attributes; an integer past 64 bits (a hostile file's) as the standard
    library writes it."""
    try:
        return orjson.dumps(value, default=str).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, default=str)


def _with(sources: list[str], source: str) -> list[str]:
    return sources if source in sources else [*sources, source]


def _node(row: Any) -> dict[str, Any]:
    sources = orjson.loads(row.sources)
    return {
        "id": row.id,
        "kind": row.kind,
        "name": row.name,
        "attrs": orjson.loads(row.attrs),
        "sources": sources,
        # seen in telemetry, in no inventory source: nobody manages it
        "managed": any(source != TELEMETRY for source in sources),
        "first_seen": row.first_seen,
        "last_seen": row.last_seen,
    }


def _edges(conn: Any, where: Any, other_end: Any, most: int | None = None) -> list[dict[str, Any]]:
    query = select(asset_edge_table).where(where).order_by(asset_edge_table.c.kind, other_end)
    return [_edge(row) for row in conn.execute(query.limit(most))]


def _edge(row: Any) -> dict[str, Any]:
    return {
        "kind": row.kind,
        "src": row.src,
        "dst": row.dst,
        "attrs": orjson.loads(row.attrs),
        "sources": orjson.loads(row.sources),
        "first_seen": row.first_seen,
        "last_seen": row.last_seen,
    }


__all__ = ["AssetStore", "edge_id"]
