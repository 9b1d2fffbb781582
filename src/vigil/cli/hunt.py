"""`vigil hunt`: SQL or a Sigma rule over the stored events."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from vigil.cli._output import fail, out
from vigil.cli._state import DataDir, settings_with
from vigil.cli.rules import load_rule_set
from vigil.cli.scan import timeline
from vigil.errors import VigilError


def hunt(
    query: Annotated[str | None, typer.Argument(help="SQL over the view `events`.")] = None,
    sigma: Annotated[
        Path | None, typer.Option("--sigma", help="Retro-hunt with this Sigma rule instead.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="With --sigma: only events since (30d, 12h, a date).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Rows shown at most.")] = 200,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print rows as JSON lines.")] = False,
) -> None:
    """Hunt through the stored events: SQL (DuckDB) or a Sigma rule."""
    from vigil.hunt import HuntLimits, parse_since, sql
    from vigil.hunt import sigma as retro_hunt

    settings = settings_with(data_dir=data_dir)
    folder = settings.data_dir / "events"
    if (query is None) == (sigma is None):
        raise fail("give a SQL query or --sigma RULE.yml (one of them)")
    if since is not None and sigma is None:
        raise fail("--since goes with --sigma (in SQL, filter on the column `time`)")
    try:
        start = parse_since(since) if since is not None else None
    except VigilError as exc:
        raise fail(str(exc)) from None
    limits = HuntLimits(**settings.hunt.model_dump(exclude={"concurrent"}))
    try:
        if sigma is not None:
            loaded = load_rule_set([sigma], None, True)
            detections = retro_hunt(folder, loaded, since=start, limits=limits)
            if as_json:
                for detection in detections:
                    sys.stdout.write(orjson.dumps(detection.as_dict(), default=str).decode() + "\n")
            else:
                out.print(timeline(detections, limit))
            return
        assert query is not None
        answer = sql(folder, query, limit=limit, limits=limits)
    except VigilError as exc:
        raise fail(str(exc)) from None
    if as_json:
        for row in answer.rows:
            sys.stdout.write(
                orjson.dumps(dict(zip(answer.columns, row, strict=True)), default=str).decode()
                + "\n"
            )
        return
    table = Table(title=f"{len(answer.rows):,} rows in {answer.seconds:.3f}s", title_justify="left")
    for column in answer.columns:
        table.add_column(escape(str(column)), overflow="fold")
    for row in answer.rows:
        table.add_row(*(escape("" if v is None else str(v)) for v in row))
    out.print(table)
