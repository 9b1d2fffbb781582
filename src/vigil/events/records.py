"""The records stages hand each other on streams, defined once, low in the stack: a
`Detection` (what a rule found), an `Alert` (a detection as the pipeline keeps it: id,
entities, where its event is), a `RiskChange`, an `IncidentChange`, and the `Progress` of
partitioned detection (on `alerts`, between the alerts). Each serialises to bytes for a
stream (`to_bytes`, `from_bytes`: JSON)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

Entity = tuple[str, str]  # (kind, value), the value as a lower-case string

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


def tags_match(wanted: Iterable[str], tags: Iterable[str]) -> bool:
    """Any of the wanted ATT&CK tags is among the tags, a technique matching its
    sub-techniques too: attack.t1003 matches attack.t1003 and attack.t1003.001."""
    have = [t.lower() for t in tags]
    return any(t == w or t.startswith(w + ".") for w in (x.lower() for x in wanted) for t in have)


def detected_now() -> str:
    """The one clock of `detected_at` (when Vigil raised a detection, for MTTD): UTC, in
    milliseconds, ISO 8601 with `Z`."""
    return datetime.now(tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alert_id(detection: Detection, identity: str) -> str:
    """An alert's id: the detector, the rule and what identifies the event (its stream
    offset, or file and record) — the same finding always gets the same id."""
    text = f"{detection.kind}\0{detection.rule_id}\0{identity}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)


@dataclass(frozen=True, slots=True)
class Alert:
    """A detection the pipeline keeps: its deterministic `id` (the same finding always has
    the same one), the `entities` its event names (from the ECS view), the `dataset` it came
    from (`vigil` for Vigil's own, else the other tool: `suricata`, `wazuh`...), the
    offset of its event on the `events` stream (None for correlations and imports), when it
    was raised (epoch s, wall clock) and, for another tool's alert, what a data set says of
    it (`labels`: ground truth for evaluation, never used to correlate)."""

    id: str
    detection: Detection
    entities: tuple[Entity, ...] = ()
    dataset: str = "vigil"
    offset: int | None = None
    raised: float | None = None
    labels: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return _dumps(
            {
                "id": self.id,
                "detection": self.detection,  # orjson writes dataclasses itself
                "entities": self.entities,
                "dataset": self.dataset,
                "offset": self.offset,
                "raised": self.raised,
                "labels": self.labels,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Alert:
        value = orjson.loads(data)
        detection = value["detection"]
        detection["tags"] = tuple(detection["tags"])
        return cls(
            id=value["id"],
            detection=Detection(**detection),
            entities=tuple((str(kind), str(name)) for kind, name in value["entities"]),
            dataset=value["dataset"],
            offset=value["offset"],
            raised=value["raised"],
            labels=value["labels"],
        )


PROGRESS = b'{"progress":'  # how a `Progress` record starts (an `Alert` never does)


@dataclass(frozen=True, slots=True)
class Progress:
    """How far detection got on partitions of `events`: for each partition held, the
    offset before which every one of its events is detected on and its alerts published
    (they are on `alerts` before this record). A reader of `alerts` that orders the alerts
    of several partitions by their events' offsets releases those below every partition's
    progress (`vigil.serve.partitions.InEventOrder`); other readers skip these records."""

    upto: dict[int, int]  # partition → offset
    worker: str = ""

    def to_bytes(self) -> bytes:
        return _dumps({"progress": {str(p): at for p, at in self.upto.items()}, "by": self.worker})

    @classmethod
    def from_bytes(cls, data: bytes) -> Progress:
        value = orjson.loads(data)
        return cls({int(p): int(at) for p, at in value["progress"].items()}, str(value["by"]))

    @staticmethod
    def given(data: bytes | bytearray | memoryview) -> bool:
        """Whether a record of `alerts` is a `Progress` (not an `Alert`)."""
        return bytes(data[: len(PROGRESS)]) == PROGRESS


@dataclass(frozen=True, slots=True)
class RiskChange:
    """One entity's risk after an alert: pushed to whoever follows risk (Zero Trust)."""

    entity: Entity
    risk: float
    at: float
    delta: float

    def to_bytes(self) -> bytes:
        kind, value = self.entity
        return _dumps(
            {"kind": kind, "value": value, "risk": self.risk, "delta": self.delta, "at": self.at}
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> RiskChange:
        value = orjson.loads(data)
        return cls((value["kind"], value["value"]), value["risk"], value["at"], value["delta"])


@dataclass(frozen=True, slots=True)
class AssetChange:
    """Inventory nodes a source (an import: osquery, a CMDB export...) changed, by id, once
    the inventory holds the change: for whoever decides on the inventory (Zero Trust)."""

    source: str
    nodes: tuple[str, ...]
    at: float

    def to_bytes(self) -> bytes:
        return _dumps({"source": self.source, "nodes": self.nodes, "at": self.at})

    @classmethod
    def from_bytes(cls, data: bytes) -> AssetChange:
        value = orjson.loads(data)
        return cls(str(value["source"]), tuple(map(str, value["nodes"])), float(value["at"]))


@dataclass(frozen=True, slots=True)
class IncidentChange:
    """An incident opened or grown by a batch of alerts (`alerts`: those that joined it), or
    merged into another (`into`)."""

    incident: str
    change: str  # "opened", "grown" or "merged"
    at: float  # when (wall clock)
    level: str = "informational"
    risk: float = 0.0
    size: int = 0
    alerts: tuple[str, ...] = ()
    entities: tuple[Entity, ...] = ()
    into: str | None = None

    def to_bytes(self) -> bytes:
        return _dumps(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> IncidentChange:
        value = orjson.loads(data)
        value["alerts"] = tuple(value["alerts"])
        value["entities"] = tuple((str(k), str(v)) for k, v in value["entities"])
        return cls(**value)


@dataclass(frozen=True, slots=True)
class Action:
    """A response step's change (`vigil.respond`): requested, waiting for approval, done,
    failed, refused by a guardrail, compensated... published on `actions`."""

    run: str
    playbook: str
    step: str
    action: str
    state: str
    at: float
    dry_run: bool = False
    subject: str = ""  # the alert or incident behind the run
    inputs: dict[str, Any] = field(default_factory=dict)
    detail: str = ""

    def to_bytes(self) -> bytes:
        return _dumps(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> Action:
        return cls(**orjson.loads(data))
