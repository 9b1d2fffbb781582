"""The `vigil` command line: thin wrappers that parse input, call one function, render results.

One module per command group; this one builds the app and registers them, in the order
`vigil --help` lists them.
"""

from __future__ import annotations

import typer

from vigil import __version__
from vigil.cli import (
    assets,
    audit,
    backup,
    correlate,
    demo,
    exercise,
    hunt,
    incidents,
    intel,
    playbook,
    risk,
    rules,
    scan,
    segments,
    serve,
    tokens,
    zerotrust,
)
from vigil.cli._output import out

__all__ = ["app", "main"]

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Vigil: proactive threat defense."
)
app.command()(scan.scan)
app.command()(serve.serve)
app.command()(hunt.hunt)
app.command()(correlate.correlate)
app.command()(incidents.entities)
app.command()(incidents.metrics)
app.command()(demo.demo)
app.command()(backup.backup)
app.command()(backup.restore)
app.command()(backup.drill)


@app.command()
def version() -> None:
    """Print Vigil's version."""
    out.print(f"vigil {__version__}")


app.add_typer(rules.rules_app, name="rules")
app.add_typer(intel.intel_app, name="intel")
app.add_typer(tokens.token_app, name="token")
app.add_typer(incidents.incident_app, name="incident")
app.add_typer(assets.assets_app, name="assets")
app.add_typer(risk.risk_app, name="risk")
app.add_typer(audit.audit_app, name="audit")
app.add_typer(playbook.playbook_app, name="playbook")
app.add_typer(playbook.runs_app, name="runs")
app.add_typer(zerotrust.zt_app, name="zt")
app.add_typer(segments.segments_app, name="segments")
app.add_typer(exercise.exercise_app, name="exercise")


def main() -> None:
    app()
