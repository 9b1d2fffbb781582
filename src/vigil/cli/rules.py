"""`vigil rules`: Sigma rule sets, and loading them for the commands that match with them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer
import yaml
from rich.markup import escape
from rich.table import Table

from vigil.cli._output import err, fail, out
from vigil.detect.sigma import LoadedRules, load_rules
from vigil.errors import InputError, VigilError

rules_app = typer.Typer(no_args_is_help=True, help="Work with Sigma rule sets.")

RulesOption = Annotated[
    list[Path],
    typer.Option("--rules", "-r", help="Sigma rules folder or file; repeat for more."),
]


def _placeholders(path: Path | None) -> dict[str, list[str]] | None:
    if path is None:
        return None
    try:
        data = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read placeholders file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: placeholders file must map names to values")
    return {str(k): [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in data.items()}


def load_rule_set(rules: list[Path], placeholders: Path | None, no_cache: bool) -> LoadedRules:
    """The rules, compiled; an error when rules were asked for and none of them can be used."""
    with err.status("Loading Sigma rules…"):
        loaded = load_rules(rules, placeholders=_placeholders(placeholders), use_cache=not no_cache)
    plan = loaded.plan
    if rules and not plan.rules and not plan.correlations:
        raise fail(_nothing_usable(rules, loaded) + " (see `vigil rules check`)")
    how = "from cache" if loaded.from_cache else "compiled"
    err.print(
        f"Loaded [bold]{len(plan.rules)}[/] rules and [bold]{len(plan.correlations)}[/] "
        f"correlations from {plan.files} files in {loaded.seconds:.2f}s ({how}); "
        f"{len(plan.problems)} unusable (see `vigil rules check`).",
        highlight=False,
    )
    return loaded


def _nothing_usable(rules: list[Path], loaded: LoadedRules) -> str:
    plan = loaded.plan
    return (
        f"no usable rule found in {', '.join(str(r) for r in rules)}: {plan.files} rule "
        f"files, {len(plan.problems)} unusable"
    )


@rules_app.command("check")
def rules_check(
    folders: Annotated[list[Path], typer.Argument(help="Sigma rule folders or files.")],
    placeholders: Annotated[
        Path | None, typer.Option(help="YAML file of placeholder values.")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Recompile the rules.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Load rules and report what loads and every rule that cannot be used, with why."""
    for folder in folders:
        if not folder.exists():
            raise fail(f"no such file or directory: {folder}")
    try:
        loaded = load_rules(
            folders, placeholders=_placeholders(placeholders), use_cache=not no_cache
        )
    except VigilError as exc:
        raise fail(str(exc)) from None
    plan = loaded.plan
    usable = len(plan.rules) + len(plan.correlations)
    total = usable + len(plan.problems)
    share = 100.0 * usable / total if total else 100.0
    report = {
        "files": plan.files,
        "rules": len(plan.rules),
        "correlations": len(plan.correlations),
        "unusable": len(plan.problems),
        "loaded_percent": round(share, 2),
        "seconds": round(loaded.seconds, 2),
        "problems": [p.as_dict() for p in plan.problems],
    }
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
        sys.stdout.flush()
    else:
        _print_rule_report(loaded, share)
    if not usable:
        raise fail(_nothing_usable(folders, loaded))


def _print_rule_report(loaded: LoadedRules, share: float) -> None:
    plan = loaded.plan
    summary = Table(title="Rule set", title_justify="left", show_header=False)
    summary.add_row("rule files", f"{plan.files:,}")
    summary.add_row("detection rules loaded", f"{len(plan.rules):,}")
    summary.add_row("correlation rules loaded", f"{len(plan.correlations):,}")
    summary.add_row("unusable", f"{len(plan.problems):,}")
    summary.add_row("loaded", f"{share:.2f}%")
    summary.add_row("time", f"{loaded.seconds:.2f}s")
    out.print(summary)
    if plan.problems:
        table = Table(title="Rules that cannot be used", title_justify="left")
        table.add_column("file", overflow="fold")
        table.add_column("rule", overflow="fold")
        table.add_column("reason", overflow="fold")
        for problem in plan.problems:
            table.add_row(
                escape(problem.path),
                escape(problem.title or problem.rule_id or ""),
                escape(problem.reason),
            )
        out.print(table)


@rules_app.command("test")
def test(
    rules: Annotated[list[Path], typer.Argument(help="Rule files or folders.")],
    baseline: Annotated[
        list[Path] | None,
        typer.Option(help="Benign logs no rule may fire on (repeat for more).", show_default=False),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="The results as one JSON object.")] = False,
    no_cache: Annotated[bool, typer.Option(help="Compile the rules afresh.")] = False,
) -> None:
    """Each rule on its own regression samples (SigmaHQ's `regression_tests_path`: every
    sample must match exactly its `match_count` times), and every rule on the baselines (a
    rule that fires there is named). Exit code 1 when a sample fails or a rule fires on a
    baseline."""
    from vigil.exercise.rules_test import check_rules

    loaded = load_rule_set(rules, None, no_cache)
    try:
        result = check_rules(loaded, baselines=baseline or [])
    except VigilError as exc:
        raise fail(str(exc)) from None
    if json:
        out.print(orjson.dumps(result.as_dict()).decode(), highlight=False, soft_wrap=True)
    else:
        table = Table(title="Regression samples", title_justify="left")
        for column in ("rule", "sample", "expected", "found", ""):
            table.add_column(column, overflow="fold")
        for s in result.samples:
            found = "—" if s.found is None else str(s.found)
            verdict = "pass" if s.passed else f"FAIL {s.problem or ''}".strip()
            table.add_row(
                escape(s.title),
                escape(Path(s.sample).name),
                str(s.expected),
                found,
                escape(verdict),
            )
        out.print(table)
        for title, count in result.baseline.most_common():
            err.print(f"fires on the baseline: {escape(title)} ({count} alerts)")
        err.print(f"{result.without_samples} rules name no regression samples")
    if result.failed:
        raise typer.Exit(1)
