"""Correlation as a pipeline stage: alerts in (from the `alerts` stream), incidents and
entity risk written to the store, and what changed published: `IncidentChange`s to
`incidents`, `RiskChange`s to `risk` (the Zero Trust decision point follows them).

Nothing of value lives only in memory. The store is written per batch, in one transaction,
before the batch is acknowledged on the stream; after a restart the stage takes up the
recent incidents, rule counts and entity risk from the store (`restore`), so an attack that
spans a restart stays one incident. A replayed batch adds nothing: alerts already in an
incident are skipped."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence

from vigil.correlate.engine import Correlator, Settings
from vigil.correlate.model import AlertIn, Incident, Membership, from_alert
from vigil.correlate.store import IncidentStore
from vigil.events.records import Alert, Entity, IncidentChange, Progress, RiskChange

RiskListener = Callable[[list[RiskChange]], None]
ChangeListener = Callable[[list[IncidentChange]], None]


class IncidentStage:
    """One at a time: the stage's thread and direct callers (tests, tools) alike."""

    def __init__(
        self,
        store: IncidentStore,
        settings: Settings | None = None,
        context: Callable[[Iterable[Entity]], float] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings or Settings()
        self.context = context  # the assets' points (vigil.assets.context)
        self.correlator = Correlator(self.settings, context)
        self.listeners: list[RiskListener] = []
        self.change_listeners: list[ChangeListener] = []
        self._latest = 0.0  # the latest alert time seen (closes incidents: event time)
        self._lock = threading.Lock()

    def restore(self) -> int:
        """Take up the state the store kept (after a restart); incidents taken up."""
        with self._lock:
            self.correlator = Correlator(self.settings, self.context)
            self._restore()
            return len(self.correlator.incidents)

    def _restore(self) -> None:
        store = self.store
        latest = store.latest()
        if latest is None:
            return
        # open incidents, and the closed ones a new incident may follow
        horizon = 2 * max(self.settings.window, self.settings.span)
        recent = store.recent(latest - horizon)
        self.correlator.restore(recent, store.rule_counts(), store.scores())
        self._latest = latest

    def process(self, records: Sequence[tuple[int, bytes]]) -> list[Incident]:
        """A batch of the `alerts` stream ((offset, bytes of an `Alert`) each; the
        `Progress` of partitioned detection is skipped)."""
        return self.feed(
            [
                from_alert(Alert.from_bytes(record))
                for _, record in records
                if not Progress.given(record)
            ]
        )

    def feed(self, alerts: Sequence[AlertIn]) -> list[Incident]:
        """Correlate a batch of alerts; the incidents they touched. If saving fails, the
        in-memory state is taken up again from the store (the batch will come again, and
        alerts not saved are correlated afresh, never counted twice)."""
        with self._lock:
            try:
                return self._feed(alerts)
            except Exception:
                self.correlator = Correlator(self.settings, self.context)
                self._restore()
                raise

    def _feed(self, alerts: Sequence[AlertIn]) -> list[Incident]:
        known = self.store.known_alerts([a.id for a in alerts])
        # in stream order, not sorted by time: then the incidents depend on the stream alone,
        # never on how its batches happen to fall (the correlator places late alerts itself)
        fresh = []
        for alert in alerts:  # once each (a partition taken over raises some again)
            if alert.id not in known:
                known.add(alert.id)
                fresh.append(alert)
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
        if self.change_listeners:
            changes = _changes(alive, members, gone)
            for change_listener in self.change_listeners:
                change_listener(changes)
        return alive


def _changes(
    alive: Sequence[Incident],
    members: Sequence[tuple[str, Membership]],
    gone: Sequence[tuple[str, str]],
) -> list[IncidentChange]:
    now = time.time()
    joined: dict[str, list[str]] = {}
    opened: set[str] = set()
    for incident_id, member in members:
        joined.setdefault(incident_id, []).append(member.alert)
        if member.reason.startswith("opened"):
            opened.add(incident_id)
    changes = [IncidentChange(old, "merged", now, into=into) for old, into in gone]
    for incident in alive:
        changes.append(
            IncidentChange(
                incident.id,
                "opened" if incident.id in opened else "grown",
                now,
                level=incident.level,
                risk=round(incident.risk, 3),
                size=incident.size,
                alerts=tuple(joined.get(incident.id, ())),
                entities=tuple(sorted(incident.entities))[:100],
            )
        )
    return changes
