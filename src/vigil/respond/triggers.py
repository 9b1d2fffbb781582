"""Which playbooks an alert or an incident change triggers, and what their templates then
read (the context: `alert`, `incident`, `entity`, `entities`).

    matches_alert(playbook.trigger, alert, tagged)   # True / False
    alert_context(alert)                             # {"alert": {...}, "entity": {...}, ...}

`tagged(entities, tags)` says whether an entity carries one of the tags in the inventory;
`incident(id)` gives an incident's record (its tactics and rules).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from vigil.events.records import Alert, IncidentChange, level_rank, tags_match
from vigil.respond.playbook import Trigger

Entities = Iterable[tuple[str, str]]
Tagged = Callable[[Entities, Sequence[str]], bool]


def _names(entities: Entities, kind: str | None) -> bool:
    return kind is None or any(k == kind for k, _ in entities)


def matches_alert(trigger: Trigger, alert: Alert, tagged: Tagged) -> bool:
    d = alert.detection
    if trigger.rules and d.rule_id not in trigger.rules and d.rule_title not in trigger.rules:
        return False
    if trigger.level and level_rank(d.level) < level_rank(trigger.level):
        return False
    if trigger.tags and not tags_match(trigger.tags, d.tags):
        return False
    if trigger.dataset and alert.dataset not in trigger.dataset:
        return False
    if not _names(alert.entities, trigger.entity):
        return False
    return not trigger.asset_tags or tagged(alert.entities, trigger.asset_tags)


def matches_incident(
    trigger: Trigger,
    change: IncidentChange,
    tagged: Tagged,
    incident: Callable[[str], dict[str, Any]],
) -> bool:
    if change.change == "merged":
        return False
    if trigger.level and level_rank(change.level) < level_rank(trigger.level):
        return False
    if trigger.risk is not None and change.risk < trigger.risk:
        return False
    if not _names(change.entities, trigger.entity):
        return False
    if trigger.tags or trigger.rules:
        found = incident(change.incident)
        if trigger.tags and not tags_match(
            trigger.tags, [f"attack.{t}" for t in found.get("tactics", [])]
        ):
            return False
        if trigger.rules and not set(trigger.rules) & set(found.get("rules", {})):
            return False
    return not trigger.asset_tags or tagged(change.entities, trigger.asset_tags)


def _entities(pairs: Entities) -> dict[str, Any]:
    first: dict[str, str] = {}
    every: dict[str, list[str]] = {}
    for kind, value in pairs:
        first.setdefault(kind, value)
        every.setdefault(kind, []).append(value)
    return {"entity": first, "entities": every}


def alert_context(alert: Alert) -> dict[str, Any]:
    d = alert.detection
    shown = {
        "id": alert.id,
        "rule_id": d.rule_id,
        "rule_title": d.rule_title,
        "level": d.level,
        "tags": list(d.tags),
        "host": d.host,
        "timestamp": d.timestamp,
        "dataset": alert.dataset,
        "matched": d.matched_fields,
        "details": d.details,
        "event": d.event,
    }
    return {"alert": shown, "incident": None, **_entities(alert.entities)}


def incident_context(change: IncidentChange) -> dict[str, Any]:
    shown = {
        "id": change.incident,
        "level": change.level,
        "risk": change.risk,
        "size": change.size,
        "alerts": list(change.alerts),
    }
    return {"alert": None, "incident": shown, **_entities(change.entities)}


def manual_context(given: dict[str, Any]) -> dict[str, Any]:
    """The context of a run started by hand: what was given, the rest empty."""
    entity = dict(given.get("entity") or {})
    return {
        "alert": given.get("alert"),
        "incident": given.get("incident"),
        "entity": entity,
        "entities": given.get("entities") or {k: [v] for k, v in entity.items()},
    }


__all__ = [
    "alert_context",
    "incident_context",
    "manual_context",
    "matches_alert",
    "matches_incident",
]
