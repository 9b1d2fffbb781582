"""Saved hunts: a SQL query or a Sigma rule over the stored events, run on a schedule; what
they find becomes alerts."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, select

from vigil.store import migrate
from vigil.store.tables import saved_hunt_table


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
        with self.engine.begin() as conn:
            result = conn.execute(saved_hunt_table.delete().where(saved_hunt_table.c.name == name))
        return bool(result.rowcount)

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
