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
    from vigil.store.exercises import ExerciseRuns
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
    exercise_runs: ExerciseRuns  # exercise results reported by `vigil exercise run`

    def access_graph(self) -> AccessGraph:
        """The access graph (attack paths, blast radius)."""
        ...

    def attack_paths(
        self,
        starts: Sequence[str] | None = None,
        ends: Sequence[str] | None = None,
        *,
        per_target: int = 5,
    ) -> dict[str, Any]:
        """{"from", "to", "paths", "choke_points"}: the attack paths from `starts` (the
        internet-exposed assets) to `ends` (the crown jewels)."""
        ...

    def blast_radius(self, node: str, *, depth: int | None = None) -> dict[str, Any]:
        """{"node", "reaches", "moves": {id: moves away}}; NotFound for a node of no known
        relationship."""
        ...

    def segments(self) -> dict[str, Any]:
        """The segment policy in force and what the segments stage made of the flows."""
        ...

    def attack_coverage(self, *, everything: bool = False) -> dict[str, Any]:
        """The ATT&CK matrix as the loaded rules and the latest exercise cover it
        (`vigil.intel.matrix`), with that exercise's figures and gaps (`exercise`)."""
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
        host: str | None = None,
        user: str | None = None,
        ip: str | None = None,
        indicator: str | None = None,
        incident: str | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first, each with its `entities` and `incidents`; the filters as
        `vigil.store.alerts.AlertStore.list` reads them."""
        ...

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        """An alert with its `entities`, the `incidents` it is in and `assets` (what the
        inventory says of its host); None without one."""
        ...

    def incident(self, incident_id: str) -> dict[str, Any]:
        """An incident with its case (`IncidentStore.get`) and `alerts_detail` (its first
        alerts in time order with their entities, each with its `layer`: its logsource),
        `assets` (what the inventory says of its entities) and `runs` (the playbook runs it
        or its alerts started, newest first, each with its `steps` and `undo`). NotFound
        without one."""
        ...

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

    def delete_hunt(self, name: str) -> bool:
        """The saved hunt and its notebook; False without one."""
        ...

    def hunt_notebook(self, name: str, *, limit: int = 1000) -> dict[str, Any]:
        """A saved hunt with its `notebook`: its queries (each with its `result`: columns,
        the first rows, count, seconds, truncated; or `error`) and notes, in the order they
        were added (the last `limit`). NotFound without the saved hunt."""
        ...

    def add_hunt_note(
        self,
        name: str,
        *,
        kind: str,
        text: str,
        author: str,
        since: str | None = None,
        cancel: threading.Event | None = None,
    ) -> dict[str, Any]:
        """Add to a saved hunt's notebook a `note`, or a query (`sql`, or a `sigma` rule with
        `since`) run now within the hunt limits and kept with what it found or the error that
        stopped it; the entry. NotFound without the saved hunt; Overloaded as `hunt_sql`."""
        ...

    def rules(self) -> list[dict[str, Any]]:
        """The loaded rules: id, title, level, status, tags, logsource, path."""
        ...

    def indicators(self, value: str) -> list[dict[str, Any]]: ...

    def intel_stats(self) -> dict[str, Any]: ...

    def add_indicator(
        self,
        type: str,
        value: str,
        *,
        author: str,
        confidence: int | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        """An indicator an analyst names, stored with the source `manual` (the author's say:
        adding it again replaces it), as `indicators` gives it; InputError for a value not
        of its type. Detection matches it from its next load of the indicators."""
        ...

    def recent_indicators(self, *, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        """The indicators most recently added first, as `indicators` gives them."""
        ...

    def sightings(self, *, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        """Indicators seen in events (where, which field, count, first and last time, the
        indicator's type and value), the latest first."""
        ...

    def health(self, *, detail: bool = False) -> dict[str, Any]:
        """{"status": "ok" | "degraded", "problems": [kinds]}; with `detail` (a caller with a
        token), the reasons and the figures."""
        ...
