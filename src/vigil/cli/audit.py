"""`vigil audit`: the tamper-evident audit chain: verify it, list it."""

from __future__ import annotations

import time
from typing import Annotated

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from vigil.cli._output import emit, err, out
from vigil.cli._state import DataDir, migrated_engine, settings_with

audit_app = typer.Typer(no_args_is_help=True, help="The tamper-evident audit chain.")


@audit_app.command("verify")
def verify(
    head: Annotated[
        str | None,
        typer.Option(help="A head hash recorded earlier: the chain must still reach it."),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="The verdict as JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Recompute every entry's hash and check every link: a changed byte, a removed entry
    or two swapped ones are found and named. Exit code 1 when the chain is broken."""
    from vigil.respond.audit import AuditLog

    log = AuditLog(migrated_engine(settings_with(data_dir=data_dir)))
    with err.status("Verifying the audit chain…"):
        verdict = log.verify(head=head)
    if json:
        emit(orjson.dumps(verdict, option=orjson.OPT_INDENT_2) + b"\n", None)
    elif verdict.ok:
        out.print(
            f"[green]intact[/]: {verdict.entries:,} entries; head {verdict.head} "
            "(record it to check later that nothing was removed from the end)",
            highlight=False,
        )
    else:
        out.print(
            f"[bold red]broken[/] at entry {verdict.broken_at}: {escape(verdict.reason)} "
            f"({verdict.entries:,} entries read)",
            highlight=False,
        )
    if not verdict.ok:
        raise typer.Exit(1)


@audit_app.command("list")
def list_(
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 50,
    since: Annotated[int, typer.Option(min=0, help="After this sequence number.")] = 0,
    data_dir: DataDir = None,
) -> None:
    """The entries, oldest first."""
    from vigil.respond.audit import AuditLog

    log = AuditLog(migrated_engine(settings_with(data_dir=data_dir)))
    table = Table(title="Audit chain", title_justify="left")
    for column in ("#", "when (UTC)", "actor", "action", "subject", "detail"):
        table.add_column(column, overflow="fold")
    for entry in log.entries(since=since, limit=limit):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(entry["at"]))
        table.add_row(str(entry["seq"]), when, escape(entry["actor"]), escape(entry["action"]),
                      escape(entry["subject"]), escape(entry["detail"][:200]))  # fmt: skip
    out.print(table)
