"""Incidents and their cases in the state database: each incident with its alerts (and why
each joined), entity risk, and the case workflow an analyst drives — status (new → triaged
→ contained → resolved, or false positive), assignee, notes, tasks, evidence files kept by
SHA-256, and one timeline of all of it. Time stamps give MTTD, MTTA, MTTC and MTTR."""

from __future__ import annotations

import hashlib
import math
import shutil
import time
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from sqlalchemy import (
    Engine,
    Integer,
    cast,
    func,
    select,
    update,
)

from vigil.correlate.model import Incident, Membership
from vigil.correlate.risk import LEVEL_POINTS
from vigil.errors import Conflict, Invalid, NotFound
from vigil.events.records import RiskChange
from vigil.store import migrate, upsert_insert
from vigil.store.tables import (
    case_entry_table,
    entity_risk_table,
    incident_alert_table,
    incident_table,
)

STATUSES = ("new", "triaged", "contained", "resolved", "false_positive")
# where each status may go; a closed case can be reopened (back to triaged)
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "new": ("triaged", "contained", "resolved", "false_positive"),
    "triaged": ("contained", "resolved", "false_positive"),
    "contained": ("resolved", "false_positive"),
    "resolved": ("triaged",),
    "false_positive": ("triaged",),
}
_STAMP = {"triaged": "triaged_at", "contained": "contained_at", "resolved": "resolved_at"}
CLOSED = ("resolved", "false_positive")  # what `status=open` leaves out
SORTS = ("risk", "opened", "last", "alerts")  # what `ranked` sorts by


def clean_file_name(name: str) -> str:
    """A file name someone sent, safe to show and to offer for download: its last path
    part, without control, format (bidi overrides, zero-width) or unassigned characters,
    leading dots and spaces (so no `..` and no hidden name), at most 255 characters."""
    last = name.replace("\\", "/").rsplit("/", 1)[-1]
    kept = "".join(
        c for c in unicodedata.normalize("NFC", last) if unicodedata.category(c)[0] != "C"
    )
    return kept.strip(" .")[:255].rstrip(" .") or "evidence"


class IncidentStore:
    def __init__(self, engine: Engine, evidence: Path | None = None) -> None:
        self.engine = engine
        self.evidence = evidence
        migrate(engine)
        self._insert = upsert_insert(engine)

    # --- written by the correlation stage ------------------------------------------------

    def known_alerts(self, ids: Sequence[str]) -> set[str]:
        """Which of these alerts are in an incident already (a replayed batch)."""
        if not ids:
            return set()
        column = incident_alert_table.c.alert_id
        with self.engine.connect() as conn:
            return set(conn.execute(select(column).where(column.in_(list(ids)))).scalars())

    def save(
        self,
        incidents: Iterable[Incident],
        members: Sequence[tuple[str, Membership]] = (),
        risk: Sequence[RiskChange] = (),
        gone: Sequence[tuple[str, str]] = (),
    ) -> None:
        """In one transaction: incidents (new or grown), the alerts that joined them
        (`members`: (incident id, membership)), incidents merged into others (`gone`:
        (merged id, into id), in the order they happened) and entity risk."""
        now = time.time()
        rows = [_incident_row(incident) for incident in incidents]
        linked = [
            {"alert_id": m.alert, "incident_id": incident_id, "time": m.time, "reason": m.reason}
            for incident_id, m in members
        ]
        latest: dict[tuple[str, str], RiskChange] = {}
        for change in risk:
            latest[change.entity] = change
        scores = [
            {"kind": kind, "value": value, "risk": c.risk, "as_of": c.at}
            for (kind, value), c in latest.items()
        ]
        # one statement per table, many rows each (compiled once, executed as a batch)
        grown = {incident_id for incident_id, _ in members}
        with self.engine.begin() as conn:
            closed = {}
            if grown:
                closed = dict(
                    conn.execute(
                        select(incident_table.c.id, incident_table.c.status).where(
                            incident_table.c.id.in_(list(grown)),
                            incident_table.c.status.in_(("resolved", "false_positive")),
                        )
                    ).all()
                )
            if rows:
                insert = self._insert(incident_table)
                conn.execute(
                    insert.on_conflict_do_update(
                        index_elements=["id"],
                        set_={name: insert.excluded[name] for name in (*_ROW, "updated")},
                    ),
                    [{**row, "created": now, "updated": now, "status": "new"} for row in rows],
                )
            if linked:
                insert = self._insert(incident_alert_table)
                conn.execute(insert.on_conflict_do_nothing(index_elements=["alert_id"]), linked)
            for old, into in gone:
                self._merge_case(conn, old, into, now)
                for table in (incident_alert_table, case_entry_table):
                    conn.execute(
                        update(table).where(table.c.incident_id == old).values(incident_id=into)
                    )
                conn.execute(incident_table.delete().where(incident_table.c.id == old))
            for incident_id, status in closed.items():
                # new activity on a closed case reopens it: it must not stay hidden
                conn.execute(
                    update(incident_table)
                    .where(incident_table.c.id == incident_id)
                    .values(status="triaged", updated=now)
                )
                self._entry(conn, incident_id, now, "status", "vigil",
                            f"{status} → triaged (new alerts)",
                            {"from": status, "to": "triaged", "note": "reopened"})  # fmt: skip
            if scores:
                insert = self._insert(entity_risk_table)
                conn.execute(
                    insert.on_conflict_do_update(
                        index_elements=["kind", "value"],
                        set_={"risk": insert.excluded.risk, "as_of": insert.excluded.as_of},
                    ),
                    scores,
                )

    def _merge_case(self, conn: Any, old: str, into: str, now: float) -> None:
        """Keep the case of an incident merged into another: the further status, the
        earliest stamps, an assignee."""
        rows = {
            row["id"]: row
            for row in conn.execute(
                select(incident_table).where(incident_table.c.id.in_((old, into)))
            ).mappings()
        }
        if old not in rows or into not in rows:
            return
        gone, kept = rows[old], rows[into]
        values: dict[str, Any] = {}
        for column in ("created", "triaged_at", "contained_at", "resolved_at"):
            stamps = [r[column] for r in (gone, kept) if r[column] is not None]
            if stamps and min(stamps) != kept[column]:
                values[column] = min(stamps)
        if kept["status"] == "new" and gone["status"] != "new":
            values["status"] = gone["status"]
        if kept["assignee"] is None and gone["assignee"] is not None:
            values["assignee"] = gone["assignee"]
        if values:
            conn.execute(update(incident_table).where(incident_table.c.id == into).values(**values))
        if gone["status"] != "new" or gone["assignee"] is not None:
            self._entry(conn, into, now, "merge", "vigil",
                        f"{old} merged in (it was {gone['status']})",
                        {"merged": old, "status": gone["status"]})  # fmt: skip

    # --- read ---------------------------------------------------------------------------

    def ranked(
        self,
        *,
        status: str | None = None,
        level: str | None = None,
        assignee: str | None = None,
        entity: str | None = None,
        sort: str = "risk",
        order: str = "desc",
        limit: int = 50,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Incidents, the riskiest first unless `sort` (risk, opened, last, alerts) and
        `order` (asc, desc) say otherwise, ties by id. `status` is one of STATUSES or `open`
        (neither resolved nor false positive); `entity` is `kind:value` (`host:ws-1`) or a
        text any entity holds."""
        if sort not in SORTS or order not in ("asc", "desc"):
            raise Invalid(
                f"sort by one of {', '.join(SORTS)}, asc or desc (not {sort!r} {order!r})"
            )
        column, ties = incident_table.c[sort], incident_table.c.id
        query = _filtered(select(incident_table), status, level, assignee, entity).order_by(
            *((column.asc(), ties.asc()) if order == "asc" else (column.desc(), ties.desc()))
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query.limit(limit).offset(offset)).mappings().all()
        return [_incident_dict(row) for row in rows]

    def get(self, incident_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(incident_table).where(incident_table.c.id == incident_id))
                .mappings()
                .first()
            )
            if row is None:
                raise NotFound(f"no incident {incident_id}")
            members = (
                conn.execute(
                    select(incident_alert_table)
                    .where(incident_alert_table.c.incident_id == incident_id)
                    .order_by(incident_alert_table.c.time)
                )
                .mappings()
                .all()
            )
        out = _incident_dict(row)
        out["alert_ids"] = [m["alert_id"] for m in members]
        out["reasons"] = [{"alert": m["alert_id"], "reason": m["reason"]} for m in members]
        out["timeline"] = self.timeline(incident_id)
        out["tasks"] = self.tasks(incident_id)
        return out

    def open_by_level(self) -> dict[str, int]:
        """Incidents not yet resolved (nor found false), counted by level."""
        column = incident_table.c
        query = (
            select(column.level, func.count())
            .where(column.status.not_in(("resolved", "false_positive")))
            .group_by(column.level)
        )
        with self.engine.connect() as conn:
            return {str(level): int(n) for level, n in conn.execute(query)}

    def open_entities(self, limit: int = 100_000) -> list[dict[str, Any]]:
        """The entities of the incidents still open, riskiest first: [{"id", "entities"}]
        (only that column read: what the risk register counts)."""
        c = incident_table.c
        query = (
            select(c.id, c.entities)
            .where(c.status.not_in(("resolved", "false_positive")))
            .order_by(c.risk.desc(), c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [{"id": i, "entities": orjson.loads(e)} for i, e in conn.execute(query)]

    def count(
        self,
        *,
        status: str | None = None,
        level: str | None = None,
        assignee: str | None = None,
        entity: str | None = None,
    ) -> int:
        """Incidents, or those `ranked` lists with the same filters."""
        query = _filtered(
            select(func.count()).select_from(incident_table), status, level, assignee, entity
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def latest(self) -> float | None:
        """The time of the latest alert in any incident (event time), None with none."""
        with self.engine.connect() as conn:
            value = conn.execute(select(func.max(incident_table.c.last))).scalar()
        return None if value is None else float(value)

    def incidents_of(self, alert_ids: Sequence[str]) -> list[str]:
        """The incidents these alerts are in."""
        column = incident_alert_table.c
        with self.engine.connect() as conn:
            found = conn.execute(
                select(column.incident_id).where(column.alert_id.in_(list(alert_ids))).distinct()
            )
            return sorted(found.scalars())

    def recent(self, since: float) -> list[Incident]:
        """Incidents whose last alert is at or after `since` (event time), as correlation
        holds them (their alerts counted, not listed), the longest idle first."""
        query = (
            select(incident_table)
            .where(incident_table.c.last >= since)
            .order_by(incident_table.c.last, incident_table.c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [_incident_of(row) for row in rows]

    def rule_counts(self) -> dict[str, int]:
        """Alerts per rule over every incident (how often each rule has been seen)."""
        counts: dict[str, int] = {}
        with self.engine.connect() as conn:
            for (rules,) in conn.execute(select(incident_table.c.rules)):
                for rule, count in orjson.loads(rules).items():
                    counts[rule] = counts.get(rule, 0) + int(count)
        return counts

    def scores(self) -> list[tuple[tuple[str, str], float, float]]:
        """Every entity's risk as last kept: ((kind, value), risk, as of)."""
        table = entity_risk_table
        with self.engine.connect() as conn:
            rows = conn.execute(select(table.c.kind, table.c.value, table.c.risk, table.c.as_of))
            return [((kind, value), risk, at) for kind, value, risk, at in rows]

    def entities(self, limit: int = 50) -> list[dict[str, Any]]:
        """Entities by risk, as of each one's last alert (readers decay it to their time)."""
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(entity_risk_table).order_by(entity_risk_table.c.risk.desc()).limit(limit)
                )
                .mappings()
                .all()
            )
        return [_plain(row) for row in rows]

    # --- the case workflow ----------------------------------------------------------------

    def set_status(self, incident_id: str, status: str, author: str, note: str = "") -> None:
        if status not in STATUSES:
            raise Invalid(f"unknown status {status!r} (one of {', '.join(STATUSES)})")
        now = time.time()
        with self.engine.begin() as conn:
            current = self._status(conn, incident_id)
            if status not in TRANSITIONS[current]:
                allowed = ", ".join(TRANSITIONS[current])
                raise Conflict(f"incident {incident_id} is {current}: it can go to {allowed}")
            values: dict[str, Any] = {"status": status, "updated": now}
            stamp = _STAMP.get(status)
            row = (
                conn.execute(select(incident_table).where(incident_table.c.id == incident_id))
                .mappings()
                .one()
            )
            if stamp is not None and row[stamp] is None:
                values[stamp] = now
            if status in ("contained", "resolved") and row["triaged_at"] is None:
                values["triaged_at"] = now  # acting on it acknowledges it
            if status == "false_positive" and row["resolved_at"] is None:
                values["resolved_at"] = now
            conn.execute(
                update(incident_table).where(incident_table.c.id == incident_id).values(**values)
            )
            self._entry(conn, incident_id, now, "status", author, f"{current} → {status}",
                        {"from": current, "to": status, "note": note})  # fmt: skip

    def assign(self, incident_id: str, assignee: str, author: str) -> None:
        now = time.time()
        with self.engine.begin() as conn:
            self._status(conn, incident_id)
            conn.execute(
                update(incident_table)
                .where(incident_table.c.id == incident_id)
                .values(assignee=assignee, updated=now)
            )
            self._entry(conn, incident_id, now, "assign", author, f"assigned to {assignee}", {})

    def note(self, incident_id: str, author: str, text: str) -> int:
        with self.engine.begin() as conn:
            self._status(conn, incident_id)
            return self._entry(conn, incident_id, time.time(), "note", author, text, {})

    def add_task(self, incident_id: str, author: str, title: str) -> int:
        with self.engine.begin() as conn:
            self._status(conn, incident_id)
            return self._entry(conn, incident_id, time.time(), "task", author, title,
                               {"done": False})  # fmt: skip

    def complete_task(self, incident_id: str, task_id: int, author: str) -> None:
        now = time.time()
        with self.engine.begin() as conn:
            row = (
                conn.execute(
                    select(case_entry_table).where(
                        case_entry_table.c.id == task_id,
                        case_entry_table.c.incident_id == incident_id,
                        case_entry_table.c.kind == "task",
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                raise NotFound(f"incident {incident_id} has no task {task_id}")
            data = {**orjson.loads(row["data"]), "done": True, "done_at": now}
            conn.execute(
                update(case_entry_table)
                .where(case_entry_table.c.id == task_id)
                .values(data=orjson.dumps(data).decode())
            )
            self._entry(conn, incident_id, now, "done", author, row["text"], {"task": task_id})

    def tasks(self, incident_id: str) -> list[dict[str, Any]]:
        return [
            {"id": e["id"], "title": e["text"], "done": e["data"].get("done", False)}
            for e in self.timeline(incident_id)
            if e["kind"] == "task"
        ]

    def add_evidence(
        self, incident_id: str, author: str, name: str, content: BinaryIO
    ) -> dict[str, Any]:
        """Keep a file for the case under its SHA-256 (stored once however often added)."""
        if self.evidence is None:
            raise Conflict("this store keeps no evidence files (no evidence folder)")
        with self.engine.connect() as conn:
            self._status(conn, incident_id)  # an unknown incident keeps no file
        self.evidence.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        temporary = self.evidence / f".incoming-{time.time_ns()}"
        with temporary.open("wb") as out:
            while chunk := content.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        sha256 = digest.hexdigest()
        final = self.evidence / sha256
        if final.exists():
            temporary.unlink()
        else:
            shutil.move(temporary, final)
        safe = clean_file_name(name)
        item = {"name": safe, "sha256": sha256, "size": size}
        with self.engine.begin() as conn:
            self._status(conn, incident_id)
            self._entry(conn, incident_id, time.time(), "evidence", author, safe, item)
        return item

    def evidence_path(self, sha256: str) -> Path:
        if self.evidence is None or len(sha256) != 64 or not sha256.isalnum():
            raise NotFound(f"no evidence {sha256!r}")
        path = self.evidence / sha256
        if not path.exists():
            raise NotFound(f"no evidence {sha256}")
        return path

    def timeline(self, incident_id: str) -> list[dict[str, Any]]:
        """Everything that happened to the case, oldest first."""
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(case_entry_table)
                    .where(case_entry_table.c.incident_id == incident_id)
                    .order_by(case_entry_table.c.at, case_entry_table.c.id)
                )
                .mappings()
                .all()
            )
        return [{**_plain(row), "data": orjson.loads(row["data"])} for row in rows]

    # --- response metrics ---------------------------------------------------------------

    def response_metrics(self, days: int = 30, now: float | None = None) -> dict[str, Any]:
        """MTTD (first event → incident), MTTA (→ triaged), MTTC (→ contained), MTTR
        (→ resolved), in seconds: overall and per day (UTC) of the incident's creation.
        Summed by the database per day: no incident row comes to Python."""
        at = time.time() if now is None else now
        c = incident_table.c
        spans = {
            "mttd": c.detected - c.first_event,
            "mtta": c.triaged_at - c.created,
            "mttc": c.contained_at - c.created,
            "mttr": c.resolved_at - c.created,
        }
        # the day's number since 1970 (floor: the stamps are positive, SQLite truncates)
        day = (
            func.floor(c.created / 86400)
            if self.engine.dialect.name == "postgresql"
            else cast(c.created / 86400, Integer)
        ).label("day")
        sums = [f(span) for span in spans.values() for f in (func.sum, func.count)]
        query = (
            select(day, func.count(), *sums)
            .where(c.created >= at - days * 86400)
            .group_by(day)
            .order_by(day)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        out: dict[str, Any] = {"incidents": sum(int(row[1]) for row in rows), "days": days}
        for i, name in enumerate(spans):
            total = sum(float(row[2 + 2 * i] or 0.0) for row in rows)
            counted = sum(int(row[3 + 2 * i]) for row in rows)
            out[name] = round(total / counted, 3) if counted else None
            out[f"{name}_by_day"] = {
                time.strftime("%Y-%m-%d", time.gmtime(int(row[0]) * 86400)): round(
                    float(row[2 + 2 * i]) / int(row[3 + 2 * i]), 3
                )
                for row in rows
                if int(row[3 + 2 * i])
            }
        return out

    # --- internals ------------------------------------------------------------------------

    def _status(self, conn: Any, incident_id: str) -> str:
        status = conn.execute(
            select(incident_table.c.status).where(incident_table.c.id == incident_id)
        ).scalar()
        if status is None:
            raise NotFound(f"no incident {incident_id}")
        return str(status)

    def _entry(
        self, conn: Any, incident_id: str, at: float, kind: str, author: str, text: str,
        data: dict[str, Any],
    ) -> int:  # fmt: skip
        result = conn.execute(
            case_entry_table.insert().values(
                incident_id=incident_id, at=at, kind=kind, author=author, text=text,
                data=orjson.dumps(data).decode(),
            )
        )  # fmt: skip
        return int(result.inserted_primary_key[0])


def _filtered(
    query: Any, status: str | None, level: str | None, assignee: str | None, entity: str | None
) -> Any:
    """`query` over incidents, narrowed by `ranked`'s filters."""
    column = incident_table.c
    if status == "open":
        query = query.where(column.status.not_in(CLOSED))
    elif status is not None:
        if status not in STATUSES:
            raise Invalid(f"unknown status {status!r} (open, or one of {', '.join(STATUSES)})")
        query = query.where(column.status == status)
    if level is not None:
        query = query.where(column.level == level)
    if assignee is not None:
        query = query.where(column.assignee == assignee)
    if entity:
        # the row keeps its entities as a JSON list of `kind:value` texts, lower-cased
        text = entity.strip().lower()
        wanted = orjson.dumps(text).decode() if ":" in text else text
        query = query.where(column.entities.contains(wanted, autoescape=True))
    return query


_ROW = ("opened", "last", "level", "risk", "alerts", "entities", "rules", "tactics", "merges",
        "follows", "first_event", "detected")  # fmt: skip
MAX_ENTITIES = 1000  # kept in the row; an incident naming more keeps them in memory only


def _incident_row(incident: Incident) -> dict[str, Any]:
    entities = sorted(f"{k}:{v}" for k, v in incident.entities)[:MAX_ENTITIES]
    return {
        "id": incident.id,
        "opened": incident.opened,
        "last": incident.last,
        "level": incident.level,
        "risk": round(incident.risk, 3),
        "alerts": incident.size,
        "entities": orjson.dumps(entities).decode(),
        "rules": orjson.dumps(incident.rules).decode(),
        "tactics": orjson.dumps(incident.tactics).decode(),
        "merges": orjson.dumps(incident.merges).decode(),
        "follows": incident.follows,
        "first_event": incident.first_event,
        "detected": incident.detected,
    }


def _incident_of(row: Any) -> Incident:
    """An incident row as correlation holds it; its surprise is what its risk has beyond
    its size and level (see `Correlator.score`)."""
    entities = set()
    for text in orjson.loads(row["entities"]):
        kind, _, value = text.partition(":")
        entities.add((kind, value))
    size = int(row["alerts"])
    level = row["level"]
    surprise = row["risk"] - math.log2(1 + size) - LEVEL_POINTS.get(level, LEVEL_POINTS["medium"])
    return Incident(
        id=row["id"],
        opened=row["opened"],
        last=row["last"],
        entities=entities,
        merges=orjson.loads(row["merges"]),
        rules=orjson.loads(row["rules"]),
        tactics=orjson.loads(row["tactics"]),
        level=level,
        surprise=surprise,
        risk=row["risk"],
        follows=row["follows"],
        first_event=row["first_event"],
        detected=row["detected"],
        earlier=size,
    )


def _plain(row: Any) -> dict[str, Any]:
    """A result row as a dict with plain `str` keys (SQLAlchemy's are a str subclass)."""
    return {str(key): value for key, value in row.items()}


def _incident_dict(row: Any) -> dict[str, Any]:
    out = _plain(row)
    for name in ("entities", "rules", "tactics", "merges"):
        out[name] = orjson.loads(out[name])
    first, detected = out.get("first_event"), out.get("detected")
    out["mttd_s"] = round(detected - first, 3) if first is not None and detected else None
    for name, column in (("mtta_s", "triaged_at"), ("mttc_s", "contained_at"),
                         ("mttr_s", "resolved_at")):  # fmt: skip
        stamp = out.get(column)
        out[name] = round(stamp - out["created"], 3) if stamp is not None else None
    return out
