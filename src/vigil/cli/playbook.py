"""`vigil playbook` and `vigil runs`: the response playbooks (list, validate, schema, export
to and import from OASIS CACAO v2.0, run by hand) and their runs (list, show, approve, deny,
undo). Runs live in the state database: a running `vigil serve` takes up what is decided
here."""

from __future__ import annotations

import getpass
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
import yaml
from rich.markup import escape
from rich.table import Table

from vigil.cli._output import emit, err, fail, out
from vigil.cli._state import DataDir, migrated_engine, settings_with
from vigil.errors import VigilError

playbook_app = typer.Typer(no_args_is_help=True, help="Response playbooks.")
runs_app = typer.Typer(no_args_is_help=True, help="Response runs: list, approve, deny, undo.")

Json = Annotated[bool, typer.Option("--json", help="JSON instead of a table.")]


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except VigilError as exc:
        raise fail(str(exc)) from None


def _responder(data_dir: Path | None, *, worker: bool = False) -> Any:
    from vigil.correlate.store import IncidentStore
    from vigil.respond.engine import Responder

    settings = settings_with(data_dir=data_dir)
    engine = migrated_engine(settings)
    incidents = IncidentStore(engine, evidence=settings.data_dir / "evidence")
    from vigil.assets.store import AssetStore

    name = f"{socket.gethostname()}:cli:{os.getpid()}" if worker else None
    with _errors():
        return Responder(
            engine, settings.respond, incidents, assets=AssetStore(engine), worker=name
        )


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@playbook_app.command("list")
def list_(json: Json = False, data_dir: DataDir = None) -> None:
    """The playbooks loaded: shipped and configured ([respond] playbooks)."""
    responder = _responder(data_dir)
    books = sorted(responder.playbooks.values(), key=lambda p: p.id)
    if json:
        emit(orjson.dumps([p.to_dict() for p in books], option=orjson.OPT_INDENT_2), None)
        return
    table = Table(title="Playbooks", title_justify="left")
    for column in ("id", "name", "trigger", "steps", "mode"):
        table.add_column(column, overflow="fold")
    for book in books:
        trigger = book.trigger
        when = ", ".join(
            part
            for part in (
                trigger.type,
                " ".join(trigger.tags),
                f"level ≥ {trigger.level}" if trigger.level else "",
                f"entity {trigger.entity}" if trigger.entity else "",
            )
            if part
        )
        steps = " → ".join(" ‖ ".join(s.action for s in block) for block in book.blocks())
        mode = "dry-run" if book.dry_run or responder.settings.dry_run else "real"
        table.add_row(book.id, escape(book.name), escape(when), escape(steps), mode)
    out.print(table)
    if responder.settings.dry_run:
        out.print("[yellow]dry-run[/] is on for every playbook (\\[respond] dry_run = true)")


@playbook_app.command("validate")
def validate(
    paths: Annotated[list[Path], typer.Argument(help="Playbook files or folders.")],
) -> None:
    """Check playbooks against the schema and the actions Vigil knows; exit 1 on a problem."""
    from vigil.respond.actions import ACTIONS
    from vigil.respond.playbook import files, load

    bad = 0
    with _errors():
        found = files(paths)
    for path in found:
        try:
            book = load(path, ACTIONS)
        except VigilError as exc:
            bad += 1
            out.print(f"[red]✗[/] {escape(str(exc))}", highlight=False)
            continue
        out.print(
            f"[green]✓[/] {escape(str(path))}: {book.id} "
            f"({sum(1 for _ in book.all_steps())} steps)",
            highlight=False,
        )
    if bad:
        raise typer.Exit(1)


@playbook_app.command("schema")
def schema() -> None:
    """The JSON Schema of a playbook file."""
    from vigil.respond.playbook import schema as playbook_schema

    emit(orjson.dumps(playbook_schema(), option=orjson.OPT_INDENT_2) + b"\n", None)


@playbook_app.command("export")
def export(
    playbook_id: Annotated[str, typer.Argument(help="The playbook's id.")],
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
    data_dir: DataDir = None,
) -> None:
    """A playbook as OASIS CACAO v2.0 JSON (validated against the CACAO schema)."""
    from vigil.errors import Unavailable
    from vigil.respond.cacao import dumps, to_cacao, validate

    responder = _responder(data_dir)
    with _errors():
        document = to_cacao(responder.playbook(playbook_id))
    try:
        problems = validate(document)
    except Unavailable as exc:  # the CACAO schemas are not on this machine
        err.print(f"[yellow]not validated[/]: {escape(str(exc))}", highlight=False)
        problems = []
    if problems:
        raise fail("the CACAO document does not validate: " + "; ".join(problems))
    emit(dumps(document).encode() + b"\n", output, "The CACAO playbook")


@playbook_app.command("import")
def import_(
    path: Annotated[Path, typer.Argument(help="A CACAO v2.0 playbook (JSON).")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="The YAML file.")] = None,
) -> None:
    """A CACAO v2.0 playbook as a Vigil playbook (YAML), validated on the way."""
    from vigil.respond.cacao import from_cacao

    try:
        document = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise fail(f"{path}: cannot read a JSON document: {exc}") from None
    with _errors():
        book = from_cacao(document)
    text = yaml.safe_dump(book.to_dict(), sort_keys=False, allow_unicode=True)
    emit(text.encode(), output, "The playbook")


@playbook_app.command("run")
def run(
    playbook_id: Annotated[str, typer.Argument(help="The playbook's id.")],
    host: Annotated[str | None, typer.Option(help="The host it acts on.")] = None,
    user: Annotated[str | None, typer.Option(help="The user it acts on.")] = None,
    ip: Annotated[str | None, typer.Option(help="The address it acts on.")] = None,
    incident: Annotated[str | None, typer.Option(help="The incident it is for.")] = None,
    real: Annotated[bool, typer.Option("--real", help="Act for real (else dry-run).")] = False,
    data_dir: DataDir = None,
) -> None:
    """Run a playbook by hand for an entity; dry-run unless --real (and [respond] dry_run is
    false)."""
    responder = _responder(data_dir, worker=True)
    entity = {k: v for k, v in (("host", host), ("user", user), ("ip", ip)) if v}
    context: dict[str, Any] = {"entity": entity}
    if incident:
        context["incident"] = {"id": incident}
    with _errors():
        run_id = responder.start_run(
            playbook_id, _actor(), context=context, subject=incident or "", dry_run=not real
        )
    _drive(responder, run_id)


def _drive(responder: Any, run_id: str) -> None:
    """Carry the run out here, as far as it goes (a step waiting for approval stops it),
    then show it."""
    with _errors():
        responder.execute(run_id)
    responder.stop()
    _show(responder.run(run_id))


def _show(run: dict[str, Any]) -> None:
    mode = "dry-run" if run["dry_run"] else "real"
    why = f" — {escape(run['reason'])}" if run.get("reason") else ""
    head = f"run [bold]{run['id']}[/] of {run['playbook']}: [bold]{run['state']}[/] ({mode})"
    out.print(head + why, highlight=False)
    table = Table(title_justify="left")
    for column in ("step", "action", "state", "inputs", "note"):
        table.add_column(column, overflow="fold")
    for phase in ("steps", "undo"):
        for step in run[phase]:
            note = step["error"] or step.get("approval_reason") or ""
            if step["decided"]:
                note = f"{step['decided']} by {step['decided_by']}. {note}"
            name = step["step"] if phase == "steps" else f"undo {step['step']}"
            table.add_row(
                name,
                step["action"],
                step["state"],
                escape(orjson.dumps(step["inputs"]).decode()[:200]),
                escape(note),
            )
    out.print(table)


@runs_app.command("list")
def runs_list(
    state: Annotated[str | None, typer.Option(help="Only runs in this state.")] = None,
    playbook: Annotated[str | None, typer.Option(help="Only this playbook's runs.")] = None,
    pending: Annotated[bool, typer.Option(help="Steps waiting for approval.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 50,
    json: Json = False,
    data_dir: DataDir = None,
) -> None:
    """Runs, newest first (or, with --pending, the steps waiting for a decision)."""
    responder = _responder(data_dir)
    rows = (
        responder.pending(limit)
        if pending
        else responder.runs(state=state, playbook=playbook, limit=limit)
    )
    if json:
        emit(orjson.dumps(rows, option=orjson.OPT_INDENT_2) + b"\n", None)
        return
    if pending:
        table = Table(title="Waiting for approval", title_justify="left")
        for column in ("run", "step", "action", "inputs", "why", "who may", "until (UTC)"):
            table.add_column(column, overflow="fold")
        for step in rows:
            until = time.strftime("%H:%M:%S", time.gmtime(step["approval_due"] or 0))
            table.add_row(
                step["run_id"],
                step["step"],
                step["action"],
                escape(orjson.dumps(step["inputs"]).decode()[:120]),
                escape(step["approval_reason"] or ""),
                ", ".join(step["approval_roles"] or []),
                until,
            )
    else:
        table = Table(title="Runs", title_justify="left")
        for column in ("run", "playbook", "state", "mode", "subject", "created (UTC)", "why"):
            table.add_column(column, overflow="fold")
        for run in rows:
            created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(run["created"]))
            table.add_row(
                run["id"],
                run["playbook"],
                run["state"],
                "dry-run" if run["dry_run"] else "real",
                escape(run["subject"]),
                created,
                escape(run["reason"] or ""),
            )
    out.print(table)


@runs_app.command("show")
def runs_show(run_id: str, json: Json = False, data_dir: DataDir = None) -> None:
    """A run with its steps and compensations."""
    responder = _responder(data_dir)
    with _errors():
        run = responder.run(run_id)
    if json:
        emit(orjson.dumps(run, option=orjson.OPT_INDENT_2) + b"\n", None)
    else:
        _show(run)


@runs_app.command("approve")
def approve(
    run_id: str, step: Annotated[str | None, typer.Argument()] = None, data_dir: DataDir = None
) -> None:
    """Approve a step waiting for approval, or (no step) let a held run start; the local
    command line acts as admin."""
    responder = _responder(data_dir, worker=True)
    with _errors():
        if step:
            responder.approve(run_id, step, _actor(), {"admin"})
        else:
            responder.decide_run(run_id, "approved", _actor(), {"admin"})
    out.print(f"approved {step or 'run'} {run_id}")
    _drive(responder, run_id)


@runs_app.command("deny")
def deny(
    run_id: str,
    step: Annotated[str | None, typer.Argument()] = None,
    reason: str = "",
    data_dir: DataDir = None,
) -> None:
    """Deny a step waiting for approval, or (no step) end a held run."""
    responder = _responder(data_dir, worker=True)
    with _errors():
        if step:
            responder.deny(run_id, step, _actor(), {"admin"}, reason)
        else:
            responder.decide_run(run_id, "denied", _actor(), {"admin"}, reason)
    out.print(f"denied {step or 'run'} {run_id}")
    _drive(responder, run_id)


@runs_app.command("undo")
def undo(run_id: str, data_dir: DataDir = None) -> None:
    """Compensate what a finished run did, newest action first."""
    responder = _responder(data_dir, worker=True)
    with _errors():
        responder.undo(run_id, _actor())
    _drive(responder, run_id)
