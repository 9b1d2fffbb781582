"""Where a command's state lives: the data folder, the settings, the state database and the
indicator store, each refused with one line when it cannot be used."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.exc import SQLAlchemyError

from vigil.cli._output import fail
from vigil.errors import VigilError
from vigil.intel.store import IndicatorStore

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Vigil's data folder (default: $VIGIL_DATA_DIR or ./vigil-data)."
    ),
]


def check_folder(path: Path) -> None:
    """A data folder Vigil may create: refused when it, or the nearest part of its path that
    exists, is not a folder."""
    for part in (path, *path.parents):
        if part.is_dir():
            return
        if part.exists():
            where = "" if part == path else f": {part} is not a folder"
            raise fail(f"data folder {path} is not a folder{where}")


def reason_of(exc: Exception) -> str:
    """Why a database could not be used: the driver's first line (it names no password), an
    OS error's text, else only the kind of error (SQLAlchemy's own may quote the URL)."""
    cause = getattr(exc, "orig", None)
    if cause is None and isinstance(exc, OSError):
        cause = exc.strerror or exc
    lines = str(cause).strip().splitlines() if cause is not None else []
    return lines[0] if lines else exc.__class__.__name__


def settings_with(**overrides: Any) -> Any:
    """The settings, with the command line's overrides; the data folder must be one."""
    from vigil.config import load_settings

    try:
        settings = load_settings(**overrides)
    except VigilError as exc:
        raise fail(str(exc)) from None
    check_folder(settings.data_dir)
    return settings


def migrated_engine(settings: Any) -> Any:
    """The state database of the settings, brought to the newest schema."""
    from vigil.store import migrate, state_engine

    try:
        engine = state_engine(settings.database_url or settings.data_dir)
        migrate(engine)
    except (SQLAlchemyError, OSError) as exc:
        raise fail(f"cannot open the state database: {reason_of(exc)}") from None
    return engine


def indicator_store(data_dir: Path | None) -> IndicatorStore:
    from vigil.store import data_dir as default_data_dir

    if data_dir is not None or not os.environ.get("VIGIL_DATABASE_URL"):
        check_folder(default_data_dir(data_dir))
    try:
        return IndicatorStore.open(data_dir)
    except (SQLAlchemyError, OSError) as exc:
        raise fail(f"cannot open the indicator store: {reason_of(exc)}") from None
