"""Stages' kept state: a stage's state as of a position of the stream it reads (offsets
below the position are in the state), so that after a restart it takes up where it was."""

from __future__ import annotations

import time
from typing import Any

import orjson
from sqlalchemy import Engine, select

from vigil.store import migrate, upsert_insert
from vigil.store.tables import stage_state_table


class StageStateStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        migrate(engine)
        self._insert = upsert_insert(engine)

    def get(self, stage: str) -> tuple[int, dict[str, Any]] | None:
        """(position, state) kept for the stage, or None."""
        table = stage_state_table
        with self.engine.connect() as conn:
            row = conn.execute(
                select(table.c.position, table.c.state).where(table.c.stage == stage)
            ).first()
        if row is None:
            return None
        return int(row.position), orjson.loads(row.state)

    def put(self, stage: str, position: int, state: dict[str, Any]) -> None:
        row = {
            "stage": stage,
            "position": position,
            "state": orjson.dumps(state, default=str).decode(),
            "saved": time.time(),
        }
        insert = self._insert(stage_state_table)
        with self.engine.begin() as conn:
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=["stage"],
                    set_={name: insert.excluded[name] for name in ("position", "state", "saved")},
                ),
                [row],
            )
