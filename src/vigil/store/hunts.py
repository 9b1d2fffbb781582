"""Saved hunts: a SQL query or a Sigma rule over the stored events, run on a schedule; what
they find becomes alerts. Each has a notebook: the queries run from it (with what they
found) and the analysts' notes, in order."""

from __future__ import annotations

import time
from typing import Any

import orjson
from sqlalchemy import Engine, select

from vigil.store import migrate
from vigil.store.tables import hunt_note_table, saved_hunt_table

NOTE_KINDS = ("sql", "sigma", "note")


class HuntStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        migrate(engine)

    def save(
        self, name: str, *, query: str | None, sigma: str | None, every: int
    ) -> dict[str, Any]:
        row = {
            "name": name,
            "query": query,
            "sigma": sigma,
            "every_seconds": every,
            "created": time.time(),
            "last_run": None,
            "last_result": None,
        }
        with self.engine.begin() as conn:
            conn.execute(saved_hunt_table.delete().where(saved_hunt_table.c.name == name))
            conn.execute(saved_hunt_table.insert(), [row])
        return row

    def delete(self, name: str) -> bool:
        """The saved hunt and its notebook."""
        with self.engine.begin() as conn:
            result = conn.execute(saved_hunt_table.delete().where(saved_hunt_table.c.name == name))
            conn.execute(hunt_note_table.delete().where(hunt_note_table.c.hunt == name))
        return bool(result.rowcount)

    def get(self, name: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(saved_hunt_table).where(saved_hunt_table.c.name == name)
            ).first()
        return None if row is None else {str(k): v for k, v in row._mapping.items()}

    def notebook(self, name: str, *, limit: int = 1000) -> list[dict[str, Any]]:
        """The hunt's queries and notes in the order they were added (the last `limit`),
        each query with its `result` (columns, the first rows, count, seconds; or error)."""
        note = hunt_note_table.c
        query = select(hunt_note_table).where(note.hunt == name).order_by(note.id.desc())
        with self.engine.connect() as conn:
            rows = conn.execute(query.limit(limit)).all()
        out = []
        for row in reversed(rows):
            entry = {str(k): v for k, v in row._mapping.items()}
            entry["result"] = None if row.result is None else orjson.loads(row.result)
            out.append(entry)
        return out

    def add_note(
        self,
        name: str,
        *,
        kind: str,
        text: str,
        author: str,
        result: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> dict[str, Any]:
        """Add a query (`sql`, `sigma`, with its result summary) or a `note` to the hunt's
        notebook; the entry as `notebook` gives it."""
        if kind not in NOTE_KINDS:
            raise ValueError(f"a notebook entry is one of {', '.join(NOTE_KINDS)}: {kind!r}")
        row: dict[str, Any] = {
            "hunt": name,
            "kind": kind,
            "text": text,
            "author": author[:256],
            "created": time.time() if now is None else now,
            "result": None
            if result is None
            else orjson.dumps(result, default=str, option=orjson.OPT_NON_STR_KEYS).decode(),
        }
        with self.engine.begin() as conn:
            key = conn.execute(hunt_note_table.insert().values(row)).inserted_primary_key
        stored: str | None = row["result"]
        return {**row, "id": key[0] if key else None, "result": stored and orjson.loads(stored)}

    def all(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(saved_hunt_table).order_by(saved_hunt_table.c.name))
            return [{str(k): v for k, v in row._mapping.items()} for row in rows]

    def due(self, now: float) -> list[dict[str, Any]]:
        return [
            hunt
            for hunt in self.all()
            if hunt["last_run"] is None or hunt["last_run"] + hunt["every_seconds"] <= now
        ]

    def ran(self, name: str, when: float, result: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                saved_hunt_table.update()
                .where(saved_hunt_table.c.name == name)
                .values(last_run=when, last_result=result)
            )
