"""The assets stage: what passive discovery found in each batch of events (the
`relationships` stream, published by the detect stage, which has the events parsed; and
imports made through the API, each the whole of its source: what it no longer names is
retired) merged
into the inventory in the state database, one transaction per batch, and into the access
graph in memory, which `restore` rebuilds from the database after a restart. The host nodes
an import (not passive discovery) gave are announced once merged (`AssetChange` on the
`inventory` stream), so what decides on a host's posture and tags (Zero Trust) knows at
once."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from sqlalchemy import Engine

from vigil.assets.graph import AccessGraph
from vigil.assets.model import Inventory
from vigil.assets.store import TELEMETRY, AssetStore
from vigil.events.records import AssetChange


class AssetStage:
    def __init__(
        self, engine: Engine, announce: Callable[[Sequence[AssetChange]], object] | None = None
    ) -> None:
        self.store = AssetStore(engine)
        self.engine = engine
        self.graph = AccessGraph()
        self.announce = announce

    def restore(self) -> int:
        """The access graph of what the database holds; its moves."""
        self.graph = AccessGraph.from_store(self.engine)
        return len(self.graph)

    def process(self, records: Sequence[tuple[int, bytes]]) -> dict[str, int]:
        """A batch of `relationships` records (`Inventory.to_bytes` each): into the store,
        then into the graph (a batch done again merges into the same nodes and edges)."""
        by_source: dict[str, Inventory] = {}  # each merged as its own source says
        for _, record in records:
            found = Inventory.from_bytes(record)
            known = by_source.get(found.source)
            if known is None:
                by_source[found.source] = found
            else:
                known.update(found)
        counts: dict[str, int] = {}
        for batch in by_source.values():
            for name, count in self.store.merge(batch).items():
                counts[name] = counts.get(name, 0) + count
            self.graph.add((edge.src, edge.dst, edge.kind) for edge in batch.edges)
            # an import is the source's whole picture: what it no longer says goes
            gone = self.store.retire(batch)
            self.graph.remove((edge.src, edge.dst, edge.kind) for edge in gone)
            counts["edges_gone"] = counts.get("edges_gone", 0) + len(gone)
        changes = [
            AssetChange(source, hosts, time.time())
            for source, batch in by_source.items()
            if source != TELEMETRY
            and (hosts := tuple(n.id for n in batch.nodes.values() if n.kind == "host"))
        ]
        if changes and self.announce is not None:
            self.announce(changes)
        return counts
