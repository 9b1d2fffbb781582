"""The access graph in memory (rustworkx): which node an attacker who holds one can reach
next, updated edge by edge as sources and telemetry report relationships, never rebuilt
whole. The state database is the record (`AccessGraph.from_store` loads it); this is the
index the path queries run on.

Each kind of relationship says how an attacker moves along it (`MOVES`): a user's logon
opens the host to whoever holds the user's credentials, and the host holds the sessions of
those who log on to it (so both ways); a flow lets one host attack the other's port; a
service compromised gives its host. Kinds that describe rather than give access (runs,
vulnerable_to, has_policy) are not moves.

    graph = AccessGraph()
    graph.add([("user:alice", "host:ws1", "logon"), ("host:ws1", "host:db1", "flow")])
    graph.attack_paths(["user:alice"], ["host:db1"])   # [Path(nodes=[...], kinds=[...])]
    graph.blast_radius("user:alice")                   # every node it can reach
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import rustworkx as rx
from sqlalchemy import Engine, select

from vigil.store.tables import asset_edge_table

FORWARD, BACK = 1, 2
MOVES = {  # kind → the directions an attacker moves along it
    "flow": FORWARD,
    "admin_of": FORWARD,
    "member_of": FORWARD,  # a user holds its groups' rights
    "can_assume": FORWARD,
    "has_permission": FORWARD,
    "logon": FORWARD | BACK,  # credentials open the host; the host holds the session
    "has_address": FORWARD | BACK,  # an address is its host
    "exposes": BACK,  # a compromised service gives its host
}
KIND_BIT = {kind: 1 << n for n, kind in enumerate(sorted(MOVES))}
LOAD_CHUNK = 50_000


@dataclass(frozen=True, slots=True)
class Path:
    nodes: tuple[str, ...]
    kinds: tuple[tuple[str, ...], ...]  # the relationships between each node and the next

    def __len__(self) -> int:
        return len(self.nodes) - 1


class AccessGraph:
    def __init__(self) -> None:
        # the moves, forwards and backwards (the same node indices: a search from a target
        # runs backwards); each move once, its kinds in `moves` (from << 32 | to → bits)
        self.graph: rx.PyDiGraph = rx.PyDiGraph()
        self.backwards: rx.PyDiGraph = rx.PyDiGraph()
        self.index: dict[str, int] = {}
        self.moves: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.moves)

    @classmethod
    def from_store(cls, engine: Engine) -> AccessGraph:
        """The graph of every relationship the state database holds."""
        graph = cls()
        query = select(asset_edge_table.c.src, asset_edge_table.c.dst, asset_edge_table.c.kind)
        with engine.connect() as conn:
            result = conn.execution_options(yield_per=LOAD_CHUNK).execute(query)
            for rows in result.partitions():
                graph.add((row.src, row.dst, row.kind) for row in rows)
        return graph

    def node(self, node_id: str) -> int:
        found = self.index.get(node_id)
        if found is None:
            found = self.index[node_id] = self.graph.add_node(node_id)
            self.backwards.add_node(None)
        return found

    def add(self, edges: Iterable[tuple[str, str, str]]) -> int:
        """Relationships (src id, dst id, kind) in; the moves they gave that were new."""
        node, moves_of = self.node, self.moves
        fresh: list[tuple[int, int]] = []
        for src, dst, kind in edges:
            moves = MOVES.get(kind)
            if not moves:
                continue
            bit = KIND_BIT[kind]
            a, b = node(src), node(dst)
            for x, y, way in ((a, b, FORWARD), (b, a, BACK)):
                if moves & way:
                    key = x << 32 | y
                    known = moves_of.get(key)
                    if known is None:
                        fresh.append((x, y))
                        moves_of[key] = bit
                    elif not known & bit:
                        moves_of[key] = known | bit
        self.graph.extend_from_edge_list(fresh)
        self.backwards.extend_from_edge_list([(y, x) for x, y in fresh])
        return len(fresh)

    def remove(self, edges: Iterable[tuple[str, str, str]]) -> int:
        """Relationships (src id, dst id, kind) no source names any more; the moves gone."""
        removed = 0
        for src, dst, kind in edges:
            moves = MOVES.get(kind)
            a, b = self.index.get(src), self.index.get(dst)
            if not moves or a is None or b is None:
                continue
            bit = KIND_BIT[kind]
            for x, y, way in ((a, b, FORWARD), (b, a, BACK)):
                key = x << 32 | y
                known = self.moves.get(key)
                if moves & way and known is not None and known & bit:
                    if known == bit:  # no other kind gives this move
                        del self.moves[key]
                        self.graph.remove_edge(x, y)
                        self.backwards.remove_edge(y, x)
                        removed += 1
                    else:
                        self.moves[key] = known & ~bit
        return removed

    def kinds(self, src: str, dst: str) -> tuple[str, ...]:
        bits = self.moves[self.index[src] << 32 | self.index[dst]]
        return tuple(kind for kind, bit in KIND_BIT.items() if bits & bit)

    # --- queries ---------------------------------------------------------------------------

    def attack_paths(
        self, sources: Iterable[str], targets: Iterable[str], *, per_target: int = 10
    ) -> list[Path]:
        """The shortest path from each source that can reach each target (at most
        `per_target` sources per target, the nearest first), shortest paths first. One
        search per target, backwards from it."""
        starts = {self.index[s]: s for s in sources if s in self.index}
        paths: list[Path] = []
        for target in targets:
            end = self.index.get(target)
            if end is None or not starts:
                continue
            found = [Path((target,), ())] if end in starts else []
            routes = rx.digraph_dijkstra_shortest_paths(
                self.backwards, end, target=None, default_weight=1.0
            )
            for start in starts:
                if start != end and start in routes:
                    found.append(self._path(list(reversed(routes[start]))))
            found.sort(key=lambda p: (len(p), p.nodes))
            paths.extend(found[:per_target])
        paths.sort(key=lambda p: (len(p), p.nodes))
        return paths

    def blast_radius(self, node_id: str, *, depth: int | None = None) -> dict[str, int]:
        """Every node reachable from `node_id` (within `depth` moves), by id → moves away."""
        start = self.index.get(node_id)
        if start is None:
            return {}
        out: dict[str, int] = {}
        for distance, layer in enumerate(rx.bfs_layers(self.graph, [start])):
            if depth is not None and distance > depth:
                break
            if distance:
                for index in layer:
                    out[self.graph[index]] = distance
        return out

    @staticmethod
    def choke_points(paths: Iterable[Path], *, top: int = 10) -> list[tuple[str, int]]:
        """The nodes inside the most attack paths (not their ends): where segmenting or
        hardening cuts the most paths."""
        counts: Counter[str] = Counter()
        for path in paths:
            counts.update(set(path.nodes[1:-1]))
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]

    def moves_among(
        self, node_ids: Iterable[str], *, most: int = 1000
    ) -> list[tuple[str, str, tuple[str, ...]]]:
        """The moves between these nodes (at most `most`), with their kinds: the edges of a
        drawing of part of the graph."""
        wanted = {self.index[n]: n for n in node_ids if n in self.index}
        out: list[tuple[str, str, tuple[str, ...]]] = []
        for a, src in wanted.items():
            for b in self.graph.successor_indices(a):
                dst = wanted.get(b)
                if dst is not None:
                    out.append((src, dst, self.kinds(src, dst)))
                    if len(out) >= most:
                        return out
        return out

    def _path(self, route: list[int]) -> Path:
        nodes = tuple(self.graph[i] for i in route)
        return Path(nodes, tuple(self.kinds(a, b) for a, b in pairwise(nodes)))

    def edges(self) -> Iterator[tuple[str, str, tuple[str, ...]]]:
        for a, b in self.graph.edge_list():
            yield self.graph[a], self.graph[b], self.kinds(self.graph[a], self.graph[b])


def summary(path: Path) -> dict[str, Any]:
    return {"nodes": list(path.nodes), "kinds": [list(k) for k in path.kinds], "hops": len(path)}


__all__ = ["MOVES", "AccessGraph", "Path", "summary"]
