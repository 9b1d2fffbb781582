"""What the inventory says of an incident's entities: how much an attack on them matters.
Correlation adds these points to an incident's risk, so an attack on a crown jewel outranks
the same attack on a kiosk.

    context = AssetContext(engine)
    context.points([("host", "db1"), ("user", "corp\\\\alice")])   # 3.0 when db1 is a crown jewel
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from sqlalchemy import Engine

from vigil.assets.store import ENTITY_NODE, AssetStore

# points an incident gains for the most critical asset it touches
CRITICALITY_POINTS = {"critical": 3.0, "high": 1.5, "medium": 0.5}
CROWN_JEWEL_POINTS = 3.0
EXPOSED_POINTS = 0.5  # reachable from the internet: the way in
FRESH_S = 60.0  # what the inventory said of an entity is asked again after this long
MAX_KNOWN = 100_000  # entities remembered


class AssetContext:
    def __init__(self, engine: Engine) -> None:
        self.store = AssetStore(engine)
        self._known: dict[str, tuple[float, float]] = {}  # entity → (asked at, points)

    def points(self, entities: Iterable[tuple[str, str]]) -> float:
        """The points of the most critical asset among the entities (0 for none known)."""
        wanted = [f"{kind}:{value}" for kind, value in entities if kind in ENTITY_NODE]
        if not wanted:
            return 0.0
        now = time.monotonic()
        unknown = [e for e in wanted if now - self._known.get(e, (-FRESH_S - 1, 0.0))[0] > FRESH_S]
        if unknown:
            if len(self._known) > MAX_KNOWN:  # a long-running stage: forget, ask again
                self._known.clear()
            found = self.store.context(unknown)
            for entity in unknown:
                context = found.get(entity)
                self._known[entity] = (now, node_points(context) if context else 0.0)
        return max(self._known[e][1] for e in wanted)


def node_points(attrs: dict[str, object]) -> float:
    """An asset's points: crown jewel or criticality, and internet exposure."""
    points = CROWN_JEWEL_POINTS if attrs.get("crown_jewel") else 0.0
    points = max(points, CRITICALITY_POINTS.get(str(attrs.get("criticality")), 0.0))
    return points + (EXPOSED_POINTS if attrs.get("internet_exposed") else 0.0)


__all__ = ["AssetContext", "node_points"]
