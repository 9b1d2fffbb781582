"""`vigil demo`: the demo intrusion replayed into a fresh embedded Vigil."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from vigil.cli._output import err, out
from vigil.cli._state import check_folder
from vigil.cli.incidents import incident_panel


def demo(
    as_json: Annotated[bool, typer.Option("--json", help="Print the incidents as JSON.")] = False,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Keep the demo's data here (default: a temporary folder)."),
    ] = None,
) -> None:
    """Replay a multi-stage intrusion (endpoint, network, cloud) into a fresh embedded Vigil
    and show the incidents it became."""
    from vigil.demo import run as run_demo

    if data_dir is not None:
        check_folder(data_dir)
    with err.status("Replaying the Northwind intrusion through the pipeline…"):
        incidents = run_demo(data_dir)
    if as_json:
        sys.stdout.write(orjson.dumps(incidents).decode() + "\n")
        return
    for incident in incidents:
        out.print(incident_panel(incident))
        for run in incident.get("runs", []):
            out.print(run_panel(run))


def run_panel(run: dict[str, Any]) -> Table:
    """A playbook run for the terminal: its steps, what each did or why not."""
    mode = "dry-run: what it would do" if run["dry_run"] else "real"
    table = Table(
        title=f"Response: {run['playbook']} · {run['state']} ({mode})", title_justify="left"
    )
    for column in ("step", "action", "state", "on", "note"):
        table.add_column(column, overflow="fold")
    for step in run["steps"]:
        on = ", ".join(f"{k}={v}" for k, v in step["inputs"].items() if k != "note")
        table.add_row(
            step["step"],
            step["action"],
            step["state"],
            escape(on[:80]),
            escape(step["error"] or ""),
        )
    return table
