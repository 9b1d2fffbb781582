"""Entity risk: points from each alert naming the entity, halved every `half_life`
seconds, updated per alert (not in an hourly batch) and readable at any instant.

    risk(entity, t) = Σ points(alert) · 2^(−(t − t_alert) / half_life)   over t_alert ≤ t

Each entity keeps one (value, as-of time) pair, so an update and a read are O(1).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vigil.events.records import Entity, RiskChange

# Points an alert gives each entity it names, by level.
LEVEL_POINTS = {"informational": 1.0, "low": 5.0, "medium": 10.0, "high": 25.0, "critical": 50.0}
DEFAULT_HALF_LIFE = 24 * 3600.0


@dataclass(slots=True)
class _Score:
    value: float
    at: float


class EntityRisk:
    """Decaying risk per entity."""

    def __init__(self, half_life: float = DEFAULT_HALF_LIFE) -> None:
        if half_life <= 0:
            raise ValueError("the half-life of entity risk is a positive number of seconds")
        self.half_life = half_life
        self._scores: dict[Entity, _Score] = {}

    def decay(self, seconds: float) -> float:
        """The factor `seconds` of decay multiply a risk by."""
        return float(2.0 ** (-seconds / self.half_life))

    def add(self, entity: Entity, points: float, at: float) -> RiskChange:
        """Add an alert's points at time `at`. An alert older than the last update counts
        with the decay it has had since."""
        score = self._scores.get(entity)
        if score is None:
            score = self._scores[entity] = _Score(0.0, at)
        if at >= score.at:
            score.value = score.value * self.decay(at - score.at) + points
            score.at = at
        else:
            score.value += points * self.decay(score.at - at)
        return RiskChange(entity, score.value, score.at, points)

    def restore(self, entity: Entity, risk: float, at: float) -> None:
        """An entity's risk as kept (after a restart)."""
        self._scores[entity] = _Score(risk, at)

    def alert(self, entities: Iterable[Entity], level: str, at: float) -> list[RiskChange]:
        points = LEVEL_POINTS.get(level, LEVEL_POINTS["medium"])
        return [self.add(entity, points, at) for entity in entities]

    def risk(self, entity: Entity, at: float) -> float:
        """The entity's risk at time `at` (0 for an entity never alerted on)."""
        score = self._scores.get(entity)
        if score is None:
            return 0.0
        if at <= score.at:
            return score.value
        return score.value * self.decay(at - score.at)

    def top(self, at: float, limit: int = 20) -> list[tuple[Entity, float]]:
        ranked = sorted(((e, self.risk(e, at)) for e in self._scores), key=lambda p: -p[1])
        return ranked[:limit]

    def __len__(self) -> int:
        return len(self._scores)
