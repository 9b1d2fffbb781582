"""`vigil token`: API tokens."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError

from vigil.cli._output import fail, out
from vigil.cli._state import DataDir, reason_of, settings_with

token_app = typer.Typer(no_args_is_help=True, help="API tokens (stored hashed).")


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="admin, analyst, responder, viewer or ingest.")],
    name: Annotated[str, typer.Option(help="Who or what uses it.")] = "cli",
    data_dir: DataDir = None,
) -> None:
    """Create an API token and print it (once: only its hash is kept)."""
    from vigil.api.auth import ROLES, TokenStore
    from vigil.store import state_engine

    if role not in ROLES:
        raise fail(f"unknown role {role!r} (use {', '.join(ROLES)})")
    settings = settings_with(data_dir=data_dir)
    try:
        token, _ = TokenStore(state_engine(settings.database_url or settings.data_dir)).create(
            role, name
        )
    except (SQLAlchemyError, OSError) as exc:
        raise fail(f"cannot open the state database: {reason_of(exc)}") from None
    out.print(token, highlight=False, soft_wrap=True)
