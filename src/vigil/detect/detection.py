"""The `Detection` result every detector (Sigma, indicators, anomalies) produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LEVELS = ("informational", "low", "medium", "high", "critical")
LEVEL_RANK = {name: rank for rank, name in enumerate(LEVELS)}


def level_rank(level: str) -> int:
    return LEVEL_RANK.get(level, -1)


@dataclass(frozen=True, slots=True)
class Detection:
    """One detection: which rule fired on which event, and why.

    `kind` names the detector ("sigma", "correlation", later "indicator", ...). `event` holds
    the event's native fields; `matched_fields` the fields whose values made the rule true.
    `time` is the event time (epoch seconds), `detected_at` when Vigil raised it (for MTTD).
    """

    kind: str
    rule_id: str
    rule_title: str
    level: str
    status: str
    tags: tuple[str, ...]
    time: float | None
    timestamp: str | None
    host: str | None
    source_file: str
    record_id: int | str | None
    matched_fields: dict[str, Any]
    event: dict[str, Any]
    detected_at: str
    rule_path: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def attack_tags(self) -> tuple[str, ...]:
        return tuple(t for t in self.tags if t.startswith("attack."))

    @property
    def techniques(self) -> tuple[str, ...]:
        return tuple(
            t[7:].upper() for t in self.tags if t.startswith("attack.t") and t[8:9].isdigit()
        )

    @property
    def tactics(self) -> tuple[str, ...]:
        return tactics_of(self.tags)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "rule_id": self.rule_id,
            "rule_title": self.rule_title,
            "level": self.level,
            "status": self.status,
            "tags": list(self.tags),
            "timestamp": self.timestamp,
            "host": self.host,
            "source_file": self.source_file,
            "record_id": self.record_id,
            "matched_fields": self.matched_fields,
            "event": self.event,
            "detected_at": self.detected_at,
            "rule_path": self.rule_path,
            **({"details": self.details} if self.details else {}),
        }


# ATT&CK tactic tags as Sigma writes them.
TACTICS = (
    "reconnaissance",
    "resource-development",
    "initial-access",
    "execution",
    "persistence",
    "privilege-escalation",
    "defense-evasion",
    "credential-access",
    "discovery",
    "lateral-movement",
    "collection",
    "command-and-control",
    "exfiltration",
    "impact",
)


def tactics_of(tags: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """ATT&CK tactics named by `attack.<tactic>` tags (`_` and `-` spellings alike)."""
    found = []
    for tag in tags:
        if tag.startswith("attack."):
            name = tag[7:].replace("_", "-")
            if name in TACTICS and name not in found:
                found.append(name)
    return tuple(found)
