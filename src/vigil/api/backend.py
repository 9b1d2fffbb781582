"""What the API serves: the `Backend` protocol `vigil serve` implements (the pipeline, the
stores, the loaded rules). The API layer only parses requests, checks roles and renders."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from vigil.assets.graph import AccessGraph
    from vigil.assets.risk import Register
    from vigil.assets.store import AssetStore
    from vigil.correlate import IncidentStore
    from vigil.ingest import Problem
    from vigil.respond.engine import Responder
    from vigil.serve.service import IngestAck
    from vigil.zerotrust.grants import Grants
    from vigil.zerotrust.log import DecisionLog
    from vigil.zerotrust.pdp import DecisionPoint
    from vigil.zerotrust.sessions import Sessions
    from vigil.zerotrust.ssf import Transmitter


class Backend(Protocol):
    incident_store: IncidentStore  # incidents and their cases
    asset_store: AssetStore  # the inventory
    responder: Responder | None  # response playbooks and their runs (None: [respond] off)
    pdp: DecisionPoint  # Zero Trust: the access decision point
    decision_log: DecisionLog  # every decision, durable, anchored in the audit chain
    sessions: Sessions  # sessions verified continuously, revoked when no longer allowed
    transmitter: Transmitter  # Security Event Tokens to the receivers
    grants: Grants  # just-in-time access

    def access_graph(self) -> AccessGraph:
        """The access graph (attack paths, blast radius)."""
        ...

    def segments(self) -> dict[str, Any]:
        """The segment policy in force and what the segments stage made of the flows."""
        ...

    def risk_register(self) -> Register:
        """Every asset ranked with its reasons, and the roadmap."""
        ...

    def import_assets(self, data: bytes, name: str, format: str | None = None) -> dict[str, Any]:
        """A scan, inventory or IAM export into the inventory and the access graph."""
        ...

    def import_alerts(
        self, name: str, data: bytes, kind: str, mapping: list[str] | None = None
    ) -> dict[str, Any]:
        """Other tools' alerts (wazuh, suricata, ait; csv and json with a KEY=COLUMN
        mapping) into alerts and incidents."""
        ...

    def entities(self, *, limit: int = 50) -> list[dict[str, Any]]:
        """Entities by risk: as of their last alert (`risk`) and decayed to now."""
        ...

    def check_intake(self, count: int = 1) -> None:
        """Raise what `ingest` would before a body is read: Overloaded when the backlog is
        full, StorageFull while the data folder's disk has no room."""
        ...

    def ingest(self, lines: Sequence[bytes | bytearray], *, source: str) -> IngestAck:
        """Append JSON texts (one event each) durably. Raises Overloaded when the backlog
        is full, TooLarge when they could never fit it, StorageUnavailable / StorageFull
        when the data folder refuses the write."""
        ...

    def set_aside(self, source: str, rejected: Sequence[tuple[Problem, bytes | bytearray]]) -> None:
        """Records refused at intake, kept with their reason."""
        ...

    def alerts(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        since: float | None = None,
        level: str | None = None,
        rule_id: str | None = None,
        kind: str | None = None,
        events: tuple[int, int] | None = None,
    ) -> list[dict[str, Any]]: ...

    def alert(self, alert_id: str) -> dict[str, Any] | None: ...

    def hunt_sql(
        self, query: str, *, limit: int = 10_000, cancel: threading.Event | None = None
    ) -> dict[str, Any]:
        """{"columns": [...], "rows": [[...]], "seconds": s, "truncated": bool}; raises
        vigil.hunt.HuntError (HuntStopped past its time or once `cancel` is set), and
        Overloaded when every hunt place is taken."""
        ...

    def hunt_sigma(
        self, rule: str, *, since: str | None = None, cancel: threading.Event | None = None
    ) -> dict[str, Any]:
        """Retro-hunt stored events with one Sigma rule (YAML text): {"detections": [...],
        "seconds": s, "truncated": bool}; raises as `hunt_sql`."""
        ...

    def saved_hunts(self) -> list[dict[str, Any]]: ...

    def save_hunt(
        self, name: str, *, query: str | None, sigma: str | None, every_seconds: int
    ) -> dict[str, Any]: ...

    def delete_hunt(self, name: str) -> bool: ...

    def rules(self) -> list[dict[str, Any]]:
        """The loaded rules: id, title, level, status, tags, logsource, path."""
        ...

    def indicators(self, value: str) -> list[dict[str, Any]]: ...

    def intel_stats(self) -> dict[str, Any]: ...

    def health(self, *, detail: bool = False) -> dict[str, Any]:
        """{"status": "ok" | "degraded", "problems": [kinds]}; with `detail` (a caller with a
        token), the reasons and the figures."""
        ...
