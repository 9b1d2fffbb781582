"""The state database's schema: migrations are frozen snapshots that build exactly the
declared tables, and a database made by the previous release upgrades with its data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, text

from vigil.api.auth import TokenStore
from vigil.correlate.store import IncidentStore
from vigil.intel.store import IndicatorStore
from vigil.store import migrate, state_engine
from vigil.store.alerts import AlertStore
from vigil.store.hunts import HuntStore
from vigil.store.tables import metadata

FIXTURES = Path(__file__).parent / "fixtures"
WAVE1_TOKEN = "vgl_wave1-fixture-token-0000000000000000000000000"  # see make_wave1_db.py
SRC = Path(__file__).resolve().parents[2] / "src" / "vigil"


def differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), metadata)


@pytest.fixture
def wave1(tmp_path: Path) -> Engine:
    """The state database of the end of wave 1, made by that release's code."""
    shutil.copy(FIXTURES / "wave1.db", tmp_path / "vigil.db")
    return state_engine(tmp_path)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_migrations_build_exactly_the_declared_tables(request, tmp_path: Path, dialect) -> None:
    """A table changed in `vigil.store.tables` without a migration fails here, on SQLite and
    on a real PostgreSQL server alike (the same migrations serve both)."""
    engine = state_engine(
        tmp_path if dialect == "sqlite" else request.getfixturevalue("postgres_url")
    )
    migrate(engine)
    assert differences(engine) == []


def test_a_database_of_the_previous_release_upgrades_and_keeps_its_data(wave1: Engine) -> None:
    with wave1.connect() as conn:
        assert conn.execute(text("select version_num from alembic_version")).scalar() == "0002"
    migrate(wave1)
    assert differences(wave1) == []
    alerts = AlertStore(wave1).list()
    assert len(alerts) == 2 and {a["host"] for a in alerts} == {"ws-7"}
    assert all(a["event"]["Image"].endswith("whoami.exe") for a in alerts)
    incidents = IncidentStore(wave1)
    (ranked,) = incidents.ranked()
    case = incidents.get(ranked["id"])
    assert (case["status"], case["assignee"]) == ("triaged", "alice")
    assert set(case["alert_ids"]) == {a["id"] for a in alerts}
    kinds = [entry["kind"] for entry in case["timeline"]]
    assert {"status", "assign", "note", "task", "evidence"} <= set(kinds)
    principal = TokenStore(wave1).verify(WAVE1_TOKEN)
    assert principal is not None and principal.role == "analyst"
    assert [h["name"] for h in HuntStore(wave1).all()] == ["whoami"]
    sources = {s["name"]: s["indicators"] for s in IndicatorStore(wave1).sources()}
    assert sources == {
        "list:agenttesla.txt": 40,
        "list:cobaltstrike.txt": 40,
        "list:emotet.txt": 40,
    }


def test_tables_are_made_by_migrations_only() -> None:
    """No store builds tables from the live declarations (a later column change would then
    never reach an older database)."""
    offenders = [
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if "create_all(" in path.read_text() or "drop_all(" in path.read_text()
    ]
    assert offenders == []
