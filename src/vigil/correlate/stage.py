"""Correlation as a pipeline stage: the alerts of each batch in, incidents and entity risk
written, risk changes handed to whoever follows them (the Zero Trust decision point). A
replayed batch adds nothing: alerts already in an incident are skipped."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from vigil.correlate.engine import Correlator, Settings
from vigil.correlate.model import AlertIn, Incident, Membership
from vigil.correlate.store import IncidentStore
from vigil.events.records import RiskChange

RiskListener = Callable[[list[RiskChange]], None]


class IncidentStage:
    """One at a time: the detection thread and alert imports both feed it."""

    def __init__(self, store: IncidentStore, settings: Settings | None = None) -> None:
        self.store = store
        self.settings = settings
        self.correlator = Correlator(settings)
        self.listeners: list[RiskListener] = []
        self._latest = 0.0  # the latest alert time seen (closes incidents: event time)
        self._lock = threading.Lock()

    def feed(self, alerts: Sequence[AlertIn]) -> list[Incident]:
        """Correlate a batch of alerts; the incidents they touched. If saving fails, the
        in-memory state is dropped (the batch will come again, and alerts not saved are
        correlated afresh, never counted twice)."""
        with self._lock:
            try:
                return self._feed(alerts)
            except Exception:
                self.correlator = Correlator(self.settings)
                raise

    def _feed(self, alerts: Sequence[AlertIn]) -> list[Incident]:
        known = self.store.known_alerts([a.id for a in alerts])
        fresh = sorted((a for a in alerts if a.id not in known), key=lambda a: a.time)
        if not fresh:
            return []
        correlator = self.correlator
        touched: dict[str, Incident] = {}
        members: list[tuple[str, Membership]] = []
        for alert in fresh:
            incident = correlator.add(alert)
            touched[incident.id] = incident
            members.append((incident.id, incident.reasons[-1]))
            self._latest = max(self._latest, alert.time)
        gone, correlator.gone = correlator.gone, []
        alive = [i for i in touched.values() if i.id in correlator.incidents]
        risk = correlator.take_risk_changes()
        self.store.save(alive, members, risk, gone)
        correlator.prune(self._latest)
        for listener in self.listeners:
            listener(risk)
        return alive
