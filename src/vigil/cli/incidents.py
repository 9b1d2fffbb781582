"""`vigil incident`, `entities`, `metrics`: the incidents and cases of the state database."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from vigil.cli._output import fail, out, short_time
from vigil.cli._state import DataDir, migrated_engine, settings_with
from vigil.errors import VigilError

incident_app = typer.Typer(
    no_args_is_help=True, help="Incidents and their cases (in the data folder's database)."
)


def _incidents(data_dir: Path | None) -> Any:
    from vigil.correlate import IncidentStore

    settings = settings_with(data_dir=data_dir)
    return IncidentStore(migrated_engine(settings), evidence=settings.data_dir / "evidence")


def _case(action: Any) -> Any:
    try:
        return action()
    except VigilError as exc:
        raise fail(str(exc)) from None


def _author() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@incident_app.command("list")
def incident_list(
    status: Annotated[
        str | None,
        typer.Option(help="Only incidents in this status (open: neither resolved nor false)."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Incidents shown at most.")] = 20,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
) -> None:
    """Incidents by risk."""
    from vigil.correlate import STATUSES

    if status is not None and status != "open" and status not in STATUSES:
        raise fail(f"unknown status {status!r} (use open, {', '.join(STATUSES)})")
    rows = _incidents(data_dir).ranked(status=status, limit=limit)
    if as_json:
        for row in rows:
            sys.stdout.write(orjson.dumps(row).decode() + "\n")
        return
    table = Table(title=f"Incidents ({len(rows)} shown, riskiest first)")
    for column in ("id", "risk", "level", "status", "alerts", "entities", "tactics", "MTTD"):
        table.add_column(
            column, justify="right" if column in ("risk", "alerts", "MTTD") else "left"
        )
    for row in rows:
        table.add_row(
            row["id"], f"{row['risk']:.1f}", row["level"], row["status"], f"{row['alerts']:,}",
            escape(", ".join(row["entities"][:4])), ", ".join(row["tactics"]),
            "" if row["mttd_s"] is None else f"{row['mttd_s']:.1f}s",
        )  # fmt: skip
    out.print(table)


@incident_app.command("show")
def incident_show(
    incident_id: str,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON.")] = False,
) -> None:
    """One incident: its alerts and why each joined, and its case timeline."""
    found = _case(lambda: _incidents(data_dir).get(incident_id))
    if as_json:
        sys.stdout.write(orjson.dumps(found).decode() + "\n")
        return
    out.print(
        f"[bold]{found['id']}[/] {found['level']} · {found['status']} · risk "
        f"{found['risk']:.1f} · {found['alerts']:,} alerts · "
        f"{escape(', '.join(found['entities']))}",
        highlight=False,
    )
    table = Table(title="Alerts and why they joined")
    table.add_column("alert")
    table.add_column("reason")
    for reason in found["reasons"][:50]:
        table.add_row(reason["alert"][:16], escape(reason["reason"]))
    out.print(table)
    for entry in found["timeline"]:
        out.print(
            f"{short_time(entry['at'])} {entry['kind']:<8} {escape(entry['author'])}: "
            f"{escape(entry['text'])}",
            highlight=False,
        )


@incident_app.command("status")
def incident_status(
    incident_id: str,
    status: Annotated[str, typer.Argument(help="triaged, contained, resolved, false_positive")],
    note: Annotated[str, typer.Option(help="Why.")] = "",
    data_dir: DataDir = None,
) -> None:
    """Move a case along its workflow."""
    _case(lambda: _incidents(data_dir).set_status(incident_id, status, _author(), note))
    out.print(f"{incident_id}: {status}")


@incident_app.command("assign")
def incident_assign(incident_id: str, assignee: str, data_dir: DataDir = None) -> None:
    """Give a case to someone."""
    _case(lambda: _incidents(data_dir).assign(incident_id, assignee, _author()))


@incident_app.command("note")
def incident_note(incident_id: str, text: str, data_dir: DataDir = None) -> None:
    """Add a note to a case."""
    _case(lambda: _incidents(data_dir).note(incident_id, _author(), text))


@incident_app.command("task")
def incident_task(
    incident_id: str,
    title: Annotated[str | None, typer.Argument(help="A new task.")] = None,
    done: Annotated[int | None, typer.Option(help="Mark this task done.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Add a task to a case, or mark one done (--done ID)."""
    store = _incidents(data_dir)
    if done is not None:
        _case(lambda: store.complete_task(incident_id, done, _author()))
    elif title:
        out.print(f"task {_case(lambda: store.add_task(incident_id, _author(), title))}")
    else:
        raise fail("give a task title, or --done TASK_ID")


@incident_app.command("evidence")
def incident_evidence(incident_id: str, path: Path, data_dir: DataDir = None) -> None:
    """Keep a file for a case (stored once under its SHA-256)."""
    if path.is_dir():
        raise fail(f"{path} is a folder: give one file")
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror or exc}") from None
    store = _incidents(data_dir)
    with handle:
        item = _case(lambda: store.add_evidence(incident_id, _author(), path.name, handle))
    out.print(f"{item['name']} sha256:{item['sha256']} ({item['size']:,} bytes)")


def entities(
    limit: Annotated[int, typer.Option(min=1, help="Entities shown.")] = 20,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
) -> None:
    """Entities (hosts, users, addresses, ...) by risk, as of their last alert."""
    rows = _incidents(data_dir).entities(limit=limit)
    if as_json:
        for row in rows:
            sys.stdout.write(orjson.dumps(row).decode() + "\n")
        return
    table = Table(title="Entity risk (as of each one's last alert)")
    for column in ("kind", "value", "risk", "last alert"):
        table.add_column(column, justify="right" if column == "risk" else "left")
    for row in rows:
        table.add_row(row["kind"], escape(row["value"]), f"{row['risk']:.1f}",
                      short_time(row["as_of"]))  # fmt: skip
    out.print(table)


def metrics(
    days: Annotated[int, typer.Option(min=1, help="Incidents created in the last N days.")] = 30,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON.")] = False,
) -> None:
    """MTTD, MTTA, MTTC and MTTR of the incidents, overall and per day."""
    from vigil.respond.runs import RunStore

    store = _incidents(data_dir)
    figures = store.response_metrics(days=days)
    runs = RunStore(store.engine).figures()
    if as_json:
        sys.stdout.write(orjson.dumps({**figures, "playbooks": runs}).decode() + "\n")
        return
    names = {"mttd": "MTTD (event → alert)", "mtta": "MTTA (→ triaged)",
             "mttc": "MTTC (→ contained)", "mttr": "MTTR (→ resolved)"}  # fmt: skip
    table = Table(title=f"Response over {days} days ({figures['incidents']:,} incidents), seconds")
    table.add_column("measure")
    table.add_column("mean", justify="right")
    table.add_column("per day", justify="left")
    for key, label in names.items():
        mean = figures[key]
        trend = ", ".join(f"{d[5:]} {v:g}" for d, v in list(figures[f"{key}_by_day"].items())[-7:])
        table.add_row(label, "—" if mean is None else f"{mean:g}", trend)
    out.print(table)
    if runs["runs"]:
        p50, p99 = runs["first_action_p50_ms"], runs["first_action_p99_ms"]
        out.print(
            "Playbook runs: "
            + ", ".join(f"{state} {count:,}" for state, count in sorted(runs["runs"].items()))
            + f"; waiting for approval {runs['pending_approvals']:,}"
            + (f"; detection → first action p50 {p50:g} ms, p99 {p99:g} ms" if p50 else ""),
            highlight=False,
        )


def incident_panel(incident: dict[str, Any]) -> Table:
    """One incident for the terminal: what, where, how bad, the stages and every alert."""
    entities = [e for e in incident["entities"] if not e.startswith(("process:", "hash:"))]
    mttd = incident.get("mttd_s")
    table = Table(
        title=(
            f"{incident['id']} · {incident['level']} · risk {incident['risk']:.1f} · "
            f"{len(incident['alerts'])} alerts"
            + (f" · MTTD {mttd:.1f}s" if mttd is not None else "")
        ),
        caption="stages: " + " → ".join(incident["stages"]) + "\nentities: " + ", ".join(entities),
        caption_justify="left",
    )
    for column in ("time", "level", "alert", "tactics", "host"):
        table.add_column(column)
    for alert in incident["alerts"]:
        table.add_row(
            (alert["time"] or "")[11:19], alert["level"], escape(alert["rule"]),
            ", ".join(alert["tactics"]), escape(alert["host"] or ""),
        )  # fmt: skip
    return table
