"""Exercise runs reported to Vigil (`vigil exercise run` posts its results): each kept whole,
listed newest first with its figures (read out of the stored document by the database, so a
list never parses thousands of scenario outcomes), and the latest one for coverage."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from sqlalchemy import JSON, ColumnElement, Engine, cast, func, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB

from vigil.store import migrate
from vigil.store.tables import exercise_run_table

_T = exercise_run_table
# The figures of a run, as `vigil.exercise.run.Result.as_dict` writes them: name → kind
FIGURES = {
    "url": "text",
    "started": "number",
    "finished": "number",
    "tested": "integer",
    "detected": "integer",
    "passed": "integer",
    "coverage": "number",
    "mttd_s": "number",
    "mttc_s": "number",
}


class ExerciseRuns:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        migrate(engine)
        # the stored text as JSON: SQLite reads it as it is, PostgreSQL once cast
        doc: Any = (
            type_coerce(_T.c.results, JSON)
            if engine.dialect.name == "sqlite"
            else cast(_T.c.results, JSONB)
        )
        self._figures: list[ColumnElement[Any]] = [
            (
                doc[name].as_string()
                if kind == "text"
                else doc[name].as_integer()
                if kind == "integer"
                else doc[name].as_float()
            ).label(name)
            for name, kind in FIGURES.items()
        ]

    def add(self, results: dict[str, Any], *, name: str, at: float | None = None) -> dict[str, Any]:
        """Keep a run's results (a document shaped as `results.json`); its summary."""
        row = {
            "id": uuid.uuid4().hex,
            "at": time.time() if at is None else at,
            "name": name[:256],
            "results": orjson.dumps(results).decode(),
        }
        with self.engine.begin() as conn:
            conn.execute(_T.insert(), [row])
        return {
            "id": row["id"],
            "at": row["at"],
            "name": row["name"],
            **{k: results.get(k) for k in FIGURES},
        }

    def get(self, run_id: str) -> dict[str, Any] | None:
        """A run with its whole results: id, at, name, results."""
        with self.engine.connect() as conn:
            found = conn.execute(select(_T).where(_T.c.id == run_id)).first()
        return None if found is None else _whole(found)

    def latest(self) -> dict[str, Any] | None:
        """The run reported last, whole (None before any)."""
        with self.engine.connect() as conn:
            found = conn.execute(select(_T).order_by(_T.c.at.desc(), _T.c.id).limit(1)).first()
        return None if found is None else _whole(found)

    def list(self, *, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        """Runs newest first: id, at, name and the figures (tested, detected, passed,
        coverage, mttd_s, mttc_s, url, started, finished)."""
        query = (
            select(_T.c.id, _T.c.at, _T.c.name, *self._figures)
            .order_by(_T.c.at.desc(), _T.c.id)
            .limit(limit)
            .offset(offset)
        )
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(_T)).scalar_one())


def _whole(row: Any) -> dict[str, Any]:
    return {"id": row.id, "at": row.at, "name": row.name, "results": orjson.loads(row.results)}


__all__ = ["FIGURES", "ExerciseRuns"]
