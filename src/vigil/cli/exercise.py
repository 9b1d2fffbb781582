"""`vigil exercise run`: scenarios replayed (or fired live) against a running Vigil, scored,
reported and gated (`--fail-under`, for CI pipelines)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from vigil.cli._output import err, fail, out
from vigil.errors import VigilError

exercise_app = typer.Typer(no_args_is_help=True, help="Exercises: attack, expect, score, gate.")


@exercise_app.command("run")
def run(
    scenarios: Annotated[
        list[Path] | None, typer.Argument(help="Scenario files (YAML).", show_default=False)
    ] = None,
    labelled: Annotated[
        list[str] | None,
        typer.Option(
            help="A labelled data set under --data, one scenario a recording "
            "(windows/evtx-to-mitre-attack).",
            show_default=False,
        ),
    ] = None,
    data: Annotated[Path, typer.Option(help="Where the recordings are.")] = Path("../shared/data"),
    only: Annotated[
        str | None, typer.Option(help="Only the scenarios whose id holds this text.")
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Results, layer, report.")] = Path(
        "exercises"
    ),
    fail_under: Annotated[
        float | None,
        typer.Option(min=0, max=1, help="Exit 1 when the share passed is below this."),
    ] = None,
    vigil: Annotated[str, typer.Option(help="Vigil's API.", envvar="VIGIL_URL")] = (
        "http://127.0.0.1:8400"
    ),
    token: Annotated[
        str, typer.Option(help="A token of role admin (ingest and read).", envvar="VIGIL_TOKEN")
    ] = "",
    live_fire: Annotated[
        bool,
        typer.Option(
            "--live-fire",
            help="Run the scenarios' live-fire commands (real tools against test hosts); "
            "without it such scenarios are skipped with the reason.",
        ),
    ] = False,
    report: Annotated[
        bool,
        typer.Option(
            help="Report the results to Vigil (its coverage page); a token whose role may "
            "not (exercises:write) only gets a warning.",
        ),
    ] = True,
) -> None:
    """Send each scenario's recordings to Vigil (or fire its commands, with --live-fire), wait
    for it to detect, and score: detected or missed, time to detect, the rule. Writes
    results.json, layer.json (ATT&CK Navigator) and report.md to --out, with the trend across
    runs, and reports the results to Vigil for its coverage page (--no-report: not)."""
    import httpx

    from vigil import exercise
    from vigil.exercise.run import NotAllowed, report_to

    if not token:
        raise fail("give a token: --token or VIGIL_TOKEN (vigil token create --role admin)")
    try:
        chosen = [s for path in scenarios or () for s in exercise.load(path)]
        for dataset in labelled or ():
            chosen.extend(exercise.labelled(data, dataset))
    except VigilError as exc:
        raise fail(str(exc)) from None
    chosen = [s for s in chosen if only is None or only in s.id]
    if not chosen:
        raise fail("no scenarios: name scenario files or --labelled data sets")
    with (
        httpx.Client(
            base_url=vigil, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as client,
        Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err
        ) as bar,
    ):
        task = bar.add_task("scenarios", total=len(chosen))
        try:
            result = exercise.run(
                client,
                chosen,
                data=data,
                progress=lambda _: bar.advance(task),
                live_fire=live_fire,
            )
        except httpx.HTTPError as exc:
            raise fail(f"{vigil}: {exc}") from None
        except NotAllowed as exc:
            raise fail(f"{exc} (a token of role admin: vigil token create --role admin)") from None
        sources = [p.name for p in scenarios or ()] + list(labelled or ())
        named = ", ".join(sources) + (f" (only {only})" if only else "")
        unreported = report_to(client, result, name=named) if report else None
    paths = exercise.write(result, out_dir)
    if unreported is not None:
        err.print(f"warning: {escape(unreported)}")
    table = Table(title="By technique", title_justify="left")
    for column in ("technique", "tested", "detected", "rules"):
        table.add_column(column, overflow="fold")
    for ident, row in result.by_technique().items():
        table.add_row(ident, str(row["tested"]), str(row["detected"]), ", ".join(row["rules"][:3]))
    out.print(table)
    mttd = "—" if result.mttd_s is None else f"{result.mttd_s:.2f} s"
    mttc = "—" if result.mttc_s is None else f"{result.mttc_s:.2f} s"
    out.print(
        f"{sum(o.passed for o in result.tested)} of {len(result.tested)} scenarios passed "
        f"({result.coverage:.1%}; {sum(o.detected for o in result.tested)} detected), "
        f"MTTD {mttd}, MTTC {mttc}; "
        f"report: {escape(str(paths['report']))}, layer: {escape(str(paths['layer']))}"
    )
    if fail_under is not None and result.coverage < fail_under:
        err.print(f"passed {result.coverage:.1%}, under {fail_under:.1%}")
        raise typer.Exit(1)
