"""Vigil's state: where the data folder is and the state database (SQLAlchemy; SQLite in the
data folder by default, any SQLAlchemy URL otherwise)."""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event

DEFAULT_DATA_DIR = "vigil-data"
STATE_FILE = "vigil.db"


def data_dir(path: str | Path | None = None) -> Path:
    """The data folder: `path`, else `VIGIL_DATA_DIR`, else `./vigil-data`."""
    return Path(path or os.environ.get("VIGIL_DATA_DIR") or DEFAULT_DATA_DIR)


def state_url(folder: str | Path | None = None) -> str:
    """`VIGIL_DATABASE_URL` when set (e.g. PostgreSQL), else the SQLite file in the folder."""
    url = os.environ.get("VIGIL_DATABASE_URL")
    if url and folder is None:
        return url
    return f"sqlite:///{data_dir(folder).resolve() / STATE_FILE}"


def state_engine(url_or_folder: str | Path | None = None) -> Engine:
    """An engine on the state database. A folder (or nothing) means the SQLite file there,
    created with its folder; SQLite runs in WAL mode with foreign keys on."""
    text = str(url_or_folder) if url_or_folder is not None else None
    url = text if text is not None and "://" in text else state_url(url_or_folder)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def upsert_insert(engine: Engine) -> Any:
    """The dialect's `insert` (SQLite's or PostgreSQL's), the one with `on_conflict_do_…`."""
    from sqlalchemy.dialects import postgresql, sqlite

    return sqlite.insert if engine.dialect.name == "sqlite" else postgresql.insert


_MIGRATED: weakref.WeakSet[Engine] = weakref.WeakSet()


def migrate(engine: Engine) -> None:
    """Bring the state database to the newest schema (Alembic, the revisions in
    `vigil/store/migrations`); done once per engine. Every store calls it: nothing else
    creates tables."""
    if engine in _MIGRATED:
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    _MIGRATED.add(engine)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # 256 MiB of page cache (bulk imports of millions of indicators write random keys)
    cursor.execute("PRAGMA cache_size=-262144")
    cursor.close()


__all__ = ["data_dir", "migrate", "state_engine", "state_url"]
