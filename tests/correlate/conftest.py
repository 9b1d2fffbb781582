"""Shared by the correlation tests: an incident store on a fresh state database, and a
short way to write an alert."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from vigil.correlate import AlertIn, IncidentStore
from vigil.store import migrate, state_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path) -> IncidentStore:
    """On SQLite (the embedded default) and on a real PostgreSQL server (distributed)."""
    where = tmp_path if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    engine = state_engine(where)
    migrate(engine)
    return IncidentStore(engine, evidence=tmp_path / "evidence")


@pytest.fixture
def alert() -> Callable[..., AlertIn]:
    """`alert("a1", 100, ("host", "h"), rule="r", level="high")`"""

    def make(id: str, time: float, *entities: tuple[str, str], rule: str = "r", **kw: Any):
        return AlertIn(id=id, time=time, rule=rule, title=rule, entities=entities, **kw)

    return make
