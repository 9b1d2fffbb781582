"""`vigil token`: API tokens."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError

from vigil.cli._output import fail, out
from vigil.cli._state import DataDir, reason_of, settings_with

if TYPE_CHECKING:
    from vigil.api.auth import TokenStore

token_app = typer.Typer(no_args_is_help=True, help="API tokens (stored hashed).")


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="admin, analyst, responder, viewer, ingest or pep.")],
    name: Annotated[str, typer.Option(help="Who or what uses it.")] = "cli",
    data_dir: DataDir = None,
) -> None:
    """Create an API token and print it (once: only its hash is kept)."""
    from vigil.api.auth import ROLES

    if role not in ROLES:
        raise fail(f"unknown role {role!r} (use {', '.join(ROLES)})")
    try:
        token, _ = _store(data_dir).create(role, name)
    except (SQLAlchemyError, OSError) as exc:
        raise fail(f"cannot open the state database: {reason_of(exc)}") from None
    out.print(token, highlight=False, soft_wrap=True)


@token_app.command("list")
def token_list(
    json: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
    data_dir: DataDir = None,
) -> None:
    """The tokens: id, name, role, when made and last used, revoked or not (never the token)."""
    import dataclasses

    import orjson
    from rich.table import Table

    try:
        tokens = _store(data_dir).list()
    except (SQLAlchemyError, OSError) as exc:
        raise fail(f"cannot open the state database: {reason_of(exc)}") from None
    if json:
        for t in tokens:
            out.print(orjson.dumps(dataclasses.asdict(t)).decode(), highlight=False, soft_wrap=True)
        return
    table = Table("name", "role", "created", "last used", "revoked")
    table.add_column("id", no_wrap=True)
    for t in tokens:
        table.add_row(t.name, t.role, _when(t.created), _when(t.last_used), str(t.revoked), t.id)
    out.print(table)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (`vigil token list`).")],
    data_dir: DataDir = None,
) -> None:
    """Revoke a token. A running server refuses it within a second."""
    try:
        revoked = _store(data_dir).revoke(token_id)
    except (SQLAlchemyError, OSError) as exc:
        raise fail(f"cannot open the state database: {reason_of(exc)}") from None
    if not revoked:
        raise fail(f"no token {token_id!r}")
    out.print(f"token {token_id} revoked")


def _store(data_dir: Path | None) -> TokenStore:
    from vigil.api.auth import TokenStore
    from vigil.store import state_engine

    settings = settings_with(data_dir=data_dir)
    return TokenStore(state_engine(settings.database_url or settings.data_dir))


def _when(epoch: float | None) -> str:
    return "" if epoch is None else datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M")
