"""What the inventory says of an incident's entities: how much an attack on them matters.
Correlation adds these points to an incident's risk, so an attack on a crown jewel outranks
the same attack on a kiosk.

    context = AssetContext(engine)
    context.points([("host", "db1"), ("user", "corp\\\\alice")])   # 3.0 when db1 is a crown jewel
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import orjson
from sqlalchemy import Engine, select

from vigil.assets.store import ENTITY_NODE
from vigil.store.tables import asset_node_table

# points an incident gains for the most critical asset it touches
CRITICALITY_POINTS = {"critical": 3.0, "high": 1.5, "medium": 0.5}
CROWN_JEWEL_POINTS = 3.0
EXPOSED_POINTS = 0.5  # reachable from the internet: the way in
FRESH_S = 60.0  # what the inventory said of an entity is asked again after this long


class AssetContext:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._known: dict[str, tuple[float, float]] = {}  # node id → (asked at, points)

    def points(self, entities: Iterable[tuple[str, str]]) -> float:
        """The points of the most critical asset among the entities (0 for none known)."""
        ids = [f"{ENTITY_NODE[kind]}:{value}" for kind, value in entities if kind in ENTITY_NODE]
        if not ids:
            return 0.0
        now = time.monotonic()
        unknown = [i for i in ids if now - self._known.get(i, (-FRESH_S - 1, 0.0))[0] > FRESH_S]
        if unknown:
            found = dict.fromkeys(unknown, 0.0)
            query = select(asset_node_table.c.id, asset_node_table.c.attrs).where(
                asset_node_table.c.id.in_(unknown)
            )
            with self.engine.connect() as conn:
                for node_id, attrs in conn.execute(query):
                    found[node_id] = node_points(orjson.loads(attrs))
            self._known.update((i, (now, p)) for i, p in found.items())
        return max(self._known[i][1] for i in ids)


def node_points(attrs: dict[str, object]) -> float:
    """An asset's points: crown jewel or criticality, and internet exposure."""
    points = CROWN_JEWEL_POINTS if attrs.get("crown_jewel") else 0.0
    points = max(points, CRITICALITY_POINTS.get(str(attrs.get("criticality")), 0.0))
    return points + (EXPOSED_POINTS if attrs.get("internet_exposed") else 0.0)


__all__ = ["AssetContext", "node_points"]
