"""What correlation works on: alerts from any detector (Vigil's own or a third party's),
reduced to the time, the rule, the level, the ATT&CK tactics and the entities they name,
and the incidents they become."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vigil.events.records import LEVEL_RANK, Alert, Detection, Entity

# The entity kinds an alert can name; incidents are joined on them.
ENTITY_KINDS = ("host", "user", "ip", "process", "hash", "principal")


@dataclass(frozen=True, slots=True)
class AlertIn:
    """One alert as correlation sees it. `source` says who raised it (`vigil`, `wazuh`,
    `suricata`, `csv`...); `labels` carries what a data set says of it (ground truth for
    evaluation, never used to correlate)."""

    id: str
    time: float
    rule: str
    title: str
    level: str = "medium"
    source: str = "vigil"
    entities: tuple[Entity, ...] = ()
    tactics: tuple[str, ...] = ()
    event_time: float | None = None  # when the event behind it happened
    raised: float | None = None  # when the alert was raised (wall clock; MTTD = raised − event)
    labels: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)  # the other tool's alert, as it came

    @property
    def level_rank(self) -> int:
        return LEVEL_RANK.get(self.level, 2)


@dataclass(slots=True)
class Membership:
    """Why an alert is in its incident: the entities it shares with it, or `opened`."""

    alert: str
    time: float
    reason: str
    entities: tuple[Entity, ...] = ()


@dataclass(slots=True)
class Incident:
    """Alerts joined by shared entities within a time window.

    `reasons` has one `Membership` per alert; `merges` one line per incident merged into this
    one; `follows` names the incident this one continues (same entities, after the window
    closed)."""

    id: str
    opened: float
    last: float
    entities: set[Entity] = field(default_factory=set)
    alerts: list[AlertIn] = field(default_factory=list)
    reasons: list[Membership] = field(default_factory=list)
    merges: list[str] = field(default_factory=list)
    rules: dict[str, int] = field(default_factory=dict)  # rule → alerts
    tactics: list[str] = field(default_factory=list)  # in the order first seen
    level: str = "informational"
    surprise: float = 0.0  # Σ over its rules of how rarely each was seen when it joined
    risk: float = 0.0
    follows: str | None = None
    first_event: float | None = None  # the earliest event behind its alerts
    detected: float | None = None  # when its first alert was raised
    earlier: int = 0  # alerts it had before a restart (not in `alerts`: see Correlator.restore)

    @property
    def size(self) -> int:
        return self.earlier + len(self.alerts)

    @property
    def mttd(self) -> float | None:
        """Seconds from the first event behind it to its first alert."""
        if self.first_event is None or self.detected is None:
            return None
        return round(self.detected - self.first_event, 3)

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "opened": self.opened,
            "last": self.last,
            "level": self.level,
            "risk": round(self.risk, 2),
            "alerts": self.size,
            "rules": dict(sorted(self.rules.items(), key=lambda kv: -kv[1])),
            "entities": sorted(f"{kind}:{value}" for kind, value in self.entities),
            "tactics": list(self.tactics),
            "follows": self.follows,
            "merges": list(self.merges),
            "mttd_s": self.mttd,
        }


def from_alert(alert: Alert) -> AlertIn:
    """An alert of the `alerts` stream as correlation sees it (grouped on its event's time,
    else when it was raised)."""
    d = alert.detection
    raised = alert.raised
    external = d.status == "external"  # another tool's: its time is the alert's, no event's
    return AlertIn(
        id=alert.id,
        time=d.time if d.time is not None else (raised or 0.0),
        rule=d.rule_id,
        title=d.rule_title,
        level=d.level,
        source=alert.dataset,
        entities=alert.entities,
        tactics=d.tactics,
        event_time=None if external else d.time,
        raised=raised,
        labels=alert.labels,
        record=d.event if external else {},
    )


def to_alert(alert: AlertIn, source_file: str, detected_at: str, raised: float) -> Alert:
    """Another tool's alert as a record of the `alerts` stream."""
    return Alert(
        id=alert.id,
        detection=to_detection(alert, source_file, detected_at),
        entities=alert.entities,
        dataset=alert.source,
        raised=raised,
        labels=alert.labels,
    )


def to_detection(alert: AlertIn, source_file: str, detected_at: str) -> Detection:
    """Another tool's alert as a Vigil detection (for the alert store): its rule, level,
    tactics, host and the record as it came."""
    from vigil.events import format_time

    return Detection(
        kind=alert.source,
        rule_id=alert.rule,
        rule_title=alert.title,
        level=alert.level,
        status="external",
        tags=tuple(f"attack.{t}" for t in alert.tactics),
        time=alert.time,
        timestamp=format_time(alert.time),
        host=next((v for k, v in alert.entities if k == "host"), None),
        source_file=source_file,
        record_id=None,
        matched_fields={},
        event=alert.record,
        detected_at=detected_at,
    )
