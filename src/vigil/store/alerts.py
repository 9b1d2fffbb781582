"""Alerts: detections the pipeline raised, kept in the state database under deterministic ids,
so that processing an event again (after a crash, a replay, a re-run hunt) never makes a
second alert for the same finding."""

from __future__ import annotations

import builtins
import time
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Engine, Select, exists, select

from vigil.events.entities import bounded, entity_values
from vigil.events.records import Alert, Detection
from vigil.store import migrate, upsert_insert
from vigil.store.tables import alert_entity_table, alert_table, incident_alert_table

# The entity kinds the alerts are filtered by (`list`), as the query string names them.
ENTITY_FILTERS = ("host", "user", "ip", "indicator")


class AlertStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        migrate(engine)
        self._insert = upsert_insert(engine)

    def add(self, alerts: Sequence[Alert]) -> int:
        """Store alerts; ids already stored are left as they are. Returns how many were
        new."""
        if not alerts:
            return 0
        now = time.time()
        rows = [_row(alert.id, alert.detection, alert.offset, now) for alert in alerts]
        insert = self._insert(alert_table).on_conflict_do_nothing(index_elements=["id"])
        named = self._insert(alert_entity_table).on_conflict_do_nothing()
        with self.engine.begin() as conn:  # rowcount of many rows: -1 on PostgreSQL
            new = set(conn.execute(insert.returning(alert_table.c.id), rows).scalars())
            entities = [
                {"alert_id": alert.id, "kind": kind, "value": value, "created": now}
                for alert in alerts
                if alert.id in new
                for kind, value in _entities(alert)
            ]
            if entities:
                conn.execute(named, entities)
        return len(new)

    def list(
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
        """Newest first (then by id); `events`: only alerts on events of these stream offsets
        (inclusive), as an ingest's reply gives them; `host`, `user`, `ip`: only alerts
        naming that entity (compared as entities are: lower case, `DOMAIN\\user` is
        `user`); `indicator`: only alerts raised on that indicator's value; `incident`: only
        the alerts of that incident. Each alert comes with its `entities` ([kind, value]) and
        the `incidents` it is in.

        The page's ids are read from an index alone (the entity's, or created and id), then
        its rows: an offset far down a million alerts stays cheap."""
        a = alert_table.c
        where: list[ColumnElement[bool]] = []
        if events is not None:
            where.append(a.event_offset.between(*events))
        if since is not None:
            where.append(a.time >= since)
        if level is not None:
            where.append(a.level == level)
        if rule_id is not None:
            where.append(a.rule_id == rule_id)
        if kind is not None:
            where.append(a.kind == kind)
        wanted = [
            (name, needle(name, value))
            for name, value in zip(ENTITY_FILTERS, (host, user, ip, indicator), strict=True)
            if value
        ]
        ids: Select[Any]
        if wanted:  # led by the first entity's index, in the alerts' order
            lead = alert_entity_table.alias("lead")
            ids = (
                select(lead.c.alert_id)
                .where(lead.c.kind == wanted[0][0], lead.c.value == wanted[0][1])
                .order_by(lead.c.created.desc(), lead.c.alert_id.desc())
            )
            for name, value in wanted[1:]:
                other = alert_entity_table.alias()
                ids = ids.where(
                    exists().where(
                        other.c.alert_id == lead.c.alert_id,
                        other.c.kind == name,
                        other.c.value == value,
                    )
                )
            if incident:
                member = incident_alert_table.c
                ids = ids.where(
                    exists().where(
                        member.alert_id == lead.c.alert_id, member.incident_id == incident
                    )
                )
            if where:
                ids = ids.join(alert_table, a.id == lead.c.alert_id).where(*where)
        else:
            ids = select(a.id).where(*where).order_by(a.created.desc(), a.id.desc())
            if incident:
                member = incident_alert_table.c
                ids = ids.join(incident_alert_table, member.alert_id == a.id).where(
                    member.incident_id == incident
                )
        with self.engine.connect() as conn:
            page = list(conn.execute(ids.limit(limit).offset(offset)).scalars())
            if not page:
                return []
            rows = {row.id: row for row in conn.execute(select(alert_table).where(a.id.in_(page)))}
            return _described(conn, [rows[i] for i in page if i in rows])

    def get(self, alert_id: str) -> dict[str, Any] | None:
        """An alert, with its `entities` and the `incidents` it is in."""
        found = self.many([alert_id])
        return found[0] if found else None

    def many(self, alert_ids: Sequence[str]) -> builtins.list[dict[str, Any]]:
        """These alerts in the order given (an unknown id is left out), each as `get` gives
        it: three lookups for them all (an incident's timeline)."""
        if not alert_ids:
            return []
        with self.engine.connect() as conn:
            query = select(alert_table).where(alert_table.c.id.in_(list(alert_ids)))
            rows = {row.id: row for row in conn.execute(query)}
            return _described(conn, [rows[i] for i in alert_ids if i in rows])

    def count(self) -> int:
        from sqlalchemy import func

        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(alert_table)).scalar_one())


def _dumps(value: Any) -> str:
    """A value as JSON; one that cannot be (nested past what the encoder allows, ...) is
    kept as the reason and its text cut short, so the alert is stored all the same."""
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, ValueError) as exc:  # orjson.JSONEncodeError is a TypeError
        return orjson.dumps({"_vigil_unwritable": str(exc), "text": repr(value)[:4096]}).decode()


def _row(identifier: str, d: Detection, offset: int | None, now: float) -> dict[str, Any]:
    return {
        "id": identifier,
        "kind": d.kind,
        "rule_id": d.rule_id,
        "rule_title": d.rule_title,
        "level": d.level,
        "tags": _dumps(list(d.tags)),
        "time": d.time,
        "host": d.host,
        "source": d.source_file,
        "record": None if d.record_id is None else str(d.record_id),
        "event_offset": offset,
        "detected_at": d.detected_at,
        "created": now,
        "matched_fields": _dumps(d.matched_fields),
        "event": _dumps(d.event),
        "details": _dumps(d.details),
    }


def needle(kind: str, value: str) -> str:
    """A filter's value as the alerts' entities hold it (`ENTITY_FILTERS`)."""
    if kind != "indicator":
        found = entity_values(kind, value)
        if found:
            return found[0]
    return bounded(value.strip().lower())


def _entities(alert: Alert) -> list[tuple[str, str]]:
    """The (kind, value) pairs an alert is found by: its entities, its detection's host, and
    for an indicator alert the indicator's value."""
    found = {(kind, bounded(value.lower())) for kind, value in alert.entities if len(kind) <= 16}
    d = alert.detection
    if d.host:
        found.update(("host", value) for value in entity_values("host", d.host))
    indicator = d.details.get("indicator") if d.kind == "indicator" else None
    if isinstance(indicator, dict) and indicator.get("value"):
        found.add(("indicator", needle("indicator", str(indicator["value"]))))
    return sorted(found)


def _described(conn: Any, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Alerts as the API gives them, with their entities and incidents (two lookups by
    alert id for the whole page)."""
    out = [_public(row) for row in rows]
    ids = [alert["id"] for alert in out]
    named: dict[str, list[list[str]]] = {i: [] for i in ids}
    incidents: dict[str, list[str]] = {i: [] for i in ids}
    e, m = alert_entity_table.c, incident_alert_table.c
    query = select(e.alert_id, e.kind, e.value).where(e.alert_id.in_(ids))
    for alert_id, kind, value in conn.execute(query.order_by(e.alert_id, e.kind, e.value)):
        named[alert_id].append([kind, value])
    query = select(m.alert_id, m.incident_id).where(m.alert_id.in_(ids))
    for alert_id, incident_id in conn.execute(query.order_by(m.alert_id, m.incident_id)):
        incidents[alert_id].append(incident_id)
    for alert in out:
        alert["entities"] = named[alert["id"]]
        alert["incidents"] = incidents[alert["id"]]
    return out


def _public(row: Any) -> dict[str, Any]:
    out = {str(k): v for k, v in row._mapping.items()}
    for name in ("tags", "matched_fields", "event", "details"):
        out[name] = orjson.loads(out[name])
    return out
