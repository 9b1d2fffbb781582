"""The respond stages: alerts (on `alerts`) and incident changes (on `incidents`) matched to
the playbooks; each match becomes a durable run, written before the stage commits its
position, then executed by the engine's workers, which publish every step on `actions`."""

from __future__ import annotations

from collections.abc import Sequence

from vigil.events.records import Alert, IncidentChange, Progress
from vigil.respond.engine import Responder


class AlertResponseStage:
    def __init__(self, responder: Responder) -> None:
        self.responder = responder

    def restore(self) -> None:
        return None  # the runs are in the state database

    def process(self, records: Sequence[tuple[int, bytes]]) -> list[str]:
        alerts = [Alert.from_bytes(data) for _, data in records if not Progress.given(data)]
        return self.responder.on_alerts(alerts)


class IncidentResponseStage:
    def __init__(self, responder: Responder) -> None:
        self.responder = responder

    def restore(self) -> None:
        return None

    def process(self, records: Sequence[tuple[int, bytes]]) -> list[str]:
        return self.responder.on_incidents([IncidentChange.from_bytes(d) for _, d in records])


__all__ = ["AlertResponseStage", "IncidentResponseStage"]
