"""Alerts into incidents, one alert at a time.

An alert joins the open incident that names one of its entities; when it names entities of
several open incidents, they are merged. An incident stays open while its alerts come less
than `window` seconds apart and for at most `span` seconds from its first alert (as
Sentinel's alert grouping does); activity that goes on after that opens a new incident that
`follows` the old one. Every join and merge records which entities made it.

Severity is the highest alert level, raised one step when the incident's ATT&CK tactics
progress along the kill chain (three or more tactics in kill-chain order).

Risk ranks incidents: for each rule the first time it appears in an incident, its
surprise, log2(alerts seen / alerts of that rule seen + 1), learned as the alerts come; plus
log2(1 + alerts in the incident); plus the points of its level; plus the points of the most
critical asset it touches (`vigil.assets.context`: crown jewel, criticality, exposure). A
burst of rules rarely seen outranks a steady stream of common ones, however long, and an
attack on a crown jewel the same attack on a kiosk.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from vigil.correlate.model import AlertIn, Incident, Membership
from vigil.correlate.risk import LEVEL_POINTS, EntityRisk
from vigil.detect.detection import LEVELS, TACTICS
from vigil.events.records import Entity, RiskChange


@dataclass(frozen=True, slots=True)
class Settings:
    window: float = 1800.0  # an incident closes after this long without an alert
    span: float = 3600.0  # and at the latest this long after its first alert
    half_life: float = 24 * 3600.0  # entity risk halves in this long
    progression: int = 3  # tactics in kill-chain order that raise the level one step


class Correlator:
    """Incremental alert → incident grouping, with entity risk."""

    def __init__(
        self,
        settings: Settings | None = None,
        context: Callable[[Iterable[Entity]], float] | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.context = context  # points for the assets an incident touches (their criticality)
        self.incidents: dict[str, Incident] = {}
        self.risk = EntityRisk(self.settings.half_life)
        self._open: dict[Entity, str] = {}  # entity → the incident that last named it
        self._rule_seen: Counter[str] = Counter()
        self._seen = 0
        self.risk_changes: list[RiskChange] = []  # since last taken (`take_risk_changes`)
        self.gone: list[tuple[str, str]] = []  # (merged incident, the one it went into)
        self._touched: dict[str, float] = {}  # incident → when it last grew (monotonic)

    # --- feeding ---------------------------------------------------------------------------

    def feed(self, alerts: Iterable[AlertIn]) -> None:
        for alert in alerts:
            self.add(alert)

    def add(self, alert: AlertIn) -> Incident:
        entities = alert.entities or (("rule", alert.rule),)
        named = [(e, self._open.get(e)) for e in entities]
        live: dict[str, list[Entity]] = {}
        closed: list[str] = []
        for entity, incident_id in named:
            if incident_id is None:
                continue
            known = self.incidents.get(incident_id)  # None: closed and pruned
            if known is not None and self._is_open(known, alert.time):
                live.setdefault(incident_id, []).append(entity)
            elif incident_id not in closed:
                closed.append(incident_id)
        if not live:
            incident = self._open_incident(alert, closed[0] if closed else None)
            incident.reasons.append(
                Membership(
                    alert.id,
                    alert.time,
                    f"opened: continues {closed[0]} (its window closed)"
                    if closed
                    else "opened: no open incident names its entities",
                )
            )
        else:
            ordered = sorted(live, key=lambda i: self.incidents[i].opened)
            incident = self.incidents[ordered[0]]
            for other_id in ordered[1:]:
                self._merge(incident, self.incidents.pop(other_id), alert, tuple(live[other_id]))
            shared = tuple(live[incident.id])
            # after the merges' own reasons: an alert's reason is the last when it has joined
            incident.reasons.append(
                Membership(alert.id, alert.time, "shares " + _names(shared), shared)
            )
        self._join(incident, alert, entities)
        return incident

    def _is_open(self, incident: Incident, at: float) -> bool:
        """Whether an alert at `at` belongs in the incident's time: not past its window or
        span, and not from long before it began."""
        s = self.settings
        return (
            at - incident.last <= s.window
            and at - incident.opened < s.span
            and incident.opened - at <= s.window
        )

    def _open_incident(self, alert: AlertIn, follows: str | None) -> Incident:
        digest = hashlib.sha256(alert.id.encode("utf-8", "replace")).hexdigest()[:16]
        incident = Incident(id=f"INC-{digest}", opened=alert.time, last=alert.time)
        incident.follows = follows
        self.incidents[incident.id] = incident
        return incident

    def _merge(
        self, into: Incident, other: Incident, alert: AlertIn, shared: tuple[Entity, ...]
    ) -> None:
        self.gone.append((other.id, into.id))
        into.merges.append(
            f"{other.id} merged at alert {alert.id}: it shares {_names(shared)} "
            f"({other.size} alerts)"
        )
        for member in other.alerts:
            into.alerts.append(member)
        into.earlier += other.earlier
        into.reasons.extend(other.reasons)
        into.merges.extend(other.merges)
        into.entities |= other.entities
        for rule, count in other.rules.items():
            if rule not in into.rules:
                into.surprise += self._surprise(rule)
            into.rules[rule] = into.rules.get(rule, 0) + count
        for tactic in other.tactics:
            if tactic not in into.tactics:
                into.tactics.append(tactic)
        if LEVELS.index(other.level) > LEVELS.index(into.level):
            into.level = other.level
        into.opened = min(into.opened, other.opened)
        into.last = max(into.last, other.last)
        if other.detected is not None:
            seen = into.detected
            into.detected = other.detected if seen is None else min(seen, other.detected)
        if other.first_event is not None:
            first = into.first_event
            into.first_event = other.first_event if first is None else min(first, other.first_event)
        for entity in other.entities:
            if self._open.get(entity) == other.id:
                self._open[entity] = into.id

    def _join(self, incident: Incident, alert: AlertIn, entities: tuple[Entity, ...]) -> None:
        self._touched[incident.id] = time.monotonic()
        incident.alerts.append(alert)
        incident.last = max(incident.last, alert.time)
        incident.entities.update(entities)
        if alert.rule not in incident.rules:
            incident.rules[alert.rule] = 0
            incident.surprise += self._surprise(alert.rule)
        incident.rules[alert.rule] += 1
        for tactic in alert.tactics:
            if tactic not in incident.tactics:
                incident.tactics.append(tactic)
        if alert.event_time is not None:
            first = incident.first_event
            incident.first_event = (
                alert.event_time if first is None else min(first, alert.event_time)
            )
        if alert.raised is not None:
            seen = incident.detected
            incident.detected = alert.raised if seen is None else min(seen, alert.raised)
        incident.level = self._level(incident, alert)
        incident.risk = self.score(incident)
        for entity in entities:
            self._open[entity] = incident.id
        self._rule_seen[alert.rule] += 1
        self._seen += 1
        if alert.entities:
            self.risk_changes.extend(self.risk.alert(alert.entities, alert.level, alert.time))

    def _surprise(self, rule: str) -> float:
        return math.log2((self._seen + 1) / (self._rule_seen[rule] + 1))

    def _level(self, incident: Incident, alert: AlertIn) -> str:
        top = max(LEVELS.index(incident.level), alert.level_rank)
        if top < 0:
            top = 2
        if progresses(incident.tactics, self.settings.progression):
            top = min(top + 1, len(LEVELS) - 1)
        return LEVELS[top]

    # --- after a restart ---------------------------------------------------------------------

    def restore(
        self,
        incidents: Iterable[Incident],
        rule_counts: dict[str, int],
        scores: Iterable[tuple[Entity, float, float]],
    ) -> None:
        """Take up where a stopped correlator left off, from what its store kept: recent
        incidents (their alerts only counted, in `earlier`), oldest first, so each entity
        points at the latest incident that named it; how often each rule was seen; the
        entity risk scores ((entity, risk, as of)). Alerts that come next join, merge and
        follow as they would have without the restart."""
        for incident in incidents:
            self.incidents[incident.id] = incident
            for entity in incident.entities:
                self._open[entity] = incident.id
        self._rule_seen.update(rule_counts)
        self._seen = sum(self._rule_seen.values())
        for entity, risk, at in scores:
            self.risk.restore(entity, risk, at)

    # --- reading ---------------------------------------------------------------------------

    def score(self, incident: Incident) -> float:
        """The incident's risk (see the module docstring)."""
        return (
            incident.surprise
            + math.log2(1 + incident.size)
            + LEVEL_POINTS.get(incident.level, LEVEL_POINTS["medium"])
            + (self.context(incident.entities) if self.context is not None else 0.0)
        )

    def ranked(self) -> list[Incident]:
        """Incidents, highest risk first."""
        return sorted(self.incidents.values(), key=lambda i: i.risk, reverse=True)

    def prune(self, now: float) -> list[str]:
        """Forget incidents closed by `now` (event time: their window or span is over) that
        have also had no alert for a window of this machine's time: a long-running stage
        keeps only live ones in memory, and one alert stamped in the future cannot close
        the others. The entities still say which incident last named them, so the next one
        `follows` it. Ids of those forgotten."""
        idle_since = time.monotonic() - self.settings.window
        closed = [
            i
            for i, incident in self.incidents.items()
            if not self._is_open(incident, now) and self._touched.get(i, 0.0) < idle_since
        ]
        for incident_id in closed:
            del self.incidents[incident_id]
            self._touched.pop(incident_id, None)
        return closed

    def take_risk_changes(self) -> list[RiskChange]:
        changes, self.risk_changes = self.risk_changes, []
        return changes

    def __iter__(self) -> Iterator[Incident]:
        return iter(self.incidents.values())


def progresses(tactics: list[str], steps: int) -> bool:
    """Whether `steps` of the tactics (in the order first seen) follow the kill chain."""
    order = [TACTICS.index(t) for t in tactics if t in TACTICS]
    if len(order) < steps:
        return False
    # longest increasing subsequence, small input
    best: list[int] = []
    for rank in order:
        length = 1 + max((best[i] for i in range(len(best)) if order[i] < rank), default=0)
        best.append(length)
    return max(best) >= steps


def _names(entities: tuple[Entity, ...]) -> str:
    return ", ".join(f"{kind} {value}" for kind, value in entities)
