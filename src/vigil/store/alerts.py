"""Alerts: detections the pipeline raised, kept in the state database under deterministic ids,
so that processing an event again (after a crash, a replay, a re-run hunt) never makes a
second alert for the same finding."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Engine, select

from vigil.events.records import Alert, Detection
from vigil.store import migrate, upsert_insert
from vigil.store.tables import alert_table


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
        with self.engine.begin() as conn:  # rowcount of many rows: -1 on PostgreSQL
            return len(conn.execute(insert.returning(alert_table.c.id), rows).all())

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
    ) -> list[dict[str, Any]]:
        """Newest first; `events`: only alerts on events of these stream offsets (inclusive),
        as an ingest's reply gives them."""
        query = select(alert_table).order_by(alert_table.c.created.desc(), alert_table.c.id)
        if events is not None:
            query = query.where(alert_table.c.event_offset.between(*events))
        if since is not None:
            query = query.where(alert_table.c.time >= since)
        if level is not None:
            query = query.where(alert_table.c.level == level)
        if rule_id is not None:
            query = query.where(alert_table.c.rule_id == rule_id)
        if kind is not None:
            query = query.where(alert_table.c.kind == kind)
        with self.engine.connect() as conn:
            rows = conn.execute(query.limit(limit).offset(offset)).all()
        return [_public(row) for row in rows]

    def get(self, alert_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(alert_table).where(alert_table.c.id == alert_id)).first()
        return _public(row) if row is not None else None

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


def _public(row: Any) -> dict[str, Any]:
    out = {str(k): v for k, v in row._mapping.items()}
    for name in ("tags", "matched_fields", "event", "details"):
        out[name] = orjson.loads(out[name])
    return out
