"""The `vigil` command line: thin wrappers that parse input, call one function, render results."""

from __future__ import annotations

import csv
import io
import os
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from vigil import __version__
from vigil.detect import LEVELS, Detection, tactics_of
from vigil.detect.ioc import IntelScan
from vigil.detect.sigma import LoadedRules, load_rules, starter_rules
from vigil.errors import InputError, VigilError, storage_problem
from vigil.events import format_time
from vigil.ingest import FORMATS, FileReport
from vigil.intel.store import IndicatorStore, StoredIndicator

if TYPE_CHECKING:
    from vigil.intel.importers import Imported
from vigil.scan import ReadOptions, ScanResult, scan_inputs

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Vigil: proactive threat defense."
)
rules_app = typer.Typer(no_args_is_help=True, help="Work with Sigma rule sets.")
app.add_typer(rules_app, name="rules")
intel_app = typer.Typer(
    no_args_is_help=True, help="Threat intelligence: indicators, feeds, sightings, ATT&CK."
)
app.add_typer(intel_app, name="intel")

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Vigil's data folder (default: $VIGIL_DATA_DIR or ./vigil-data)."
    ),
]

err = Console(stderr=True)
out = Console()

LEVEL_STYLE = {
    "critical": "bold white on red",
    "high": "bold red",
    "medium": "yellow",
    "low": "cyan",
    "informational": "dim",
}
KEY_FIELDS = (
    "EventID",
    "Channel",
    "Image",
    "CommandLine",
    "ParentImage",
    "TargetFilename",
    "TargetObject",
    "ScriptBlockText",
    "ServiceName",
    "ImagePath",
    "TargetUserName",
    "SubjectUserName",
    "IpAddress",
    "DestinationIp",
    "QueryName",
    "User",
)


def fail(message: str) -> typer.Exit:
    """One plain line on standard error (never wrapped, never read as markup); exit code 2."""
    sys.stderr.write(f"error: {' '.join(message.split())}\n")
    sys.stderr.flush()
    return typer.Exit(2)


def _output_file(path: Path | None) -> Path | None:
    """An option naming a file to write: refused at once (before any work) when its folder is
    missing or it is a folder itself."""
    if path is None:
        return None
    if path.is_dir():
        raise fail(f"cannot write {path}: it is a folder (give a file name)")
    folder = path.parent
    if not folder.is_dir():
        problem = "not a folder" if folder.exists() else "no such folder"
        raise fail(f"cannot write {path}: {problem}: {folder}")
    return path


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror or exc}") from None


def _check_folder(path: Path) -> None:
    """A data folder Vigil may create: refused when it, or the nearest part of its path that
    exists, is not a folder."""
    for part in (path, *path.parents):
        if part.is_dir():
            return
        if part.exists():
            where = "" if part == path else f": {part} is not a folder"
            raise fail(f"data folder {path} is not a folder{where}")


def _reason(exc: Exception) -> str:
    """Why a database could not be used: the driver's first line (it names no password), an
    OS error's text, else only the kind of error (SQLAlchemy's own may quote the URL)."""
    cause = getattr(exc, "orig", None)
    if cause is None and isinstance(exc, OSError):
        cause = exc.strerror or exc
    lines = str(cause).strip().splitlines() if cause is not None else []
    return lines[0] if lines else exc.__class__.__name__


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


def _load(rules: list[Path], placeholders: Path | None, no_cache: bool) -> LoadedRules:
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


class BarProgress:
    """Rich progress bar: files done, events read, detections found."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None
        self.events = 0
        self.detections = 0

    def start(self, files: int) -> None:
        self.task = self.progress.add_task("scanning", total=files, events=0, detections=0)

    def file_started(self, name: str) -> None:
        assert self.task is not None
        short = name if len(name) < 50 else "…" + name[-49:]
        self.progress.update(self.task, description=escape(short))

    def advanced(self, events: int, detections: int) -> None:
        assert self.task is not None
        self.events += events
        self.detections += detections
        self.progress.update(self.task, events=self.events, detections=self.detections)

    def file_done(self, report: FileReport) -> None:
        assert self.task is not None
        self.progress.advance(self.task)


@app.command()
def scan(
    paths: Annotated[list[Path], typer.Argument(help="Log files or folders (recursed).")],
    rules: Annotated[
        list[Path],
        typer.Option("--rules", "-r", help="Sigma rules folder or file; repeat for more."),
    ] = [],  # noqa: B006
    min_level: Annotated[
        str | None, typer.Option(help="Report only this level and above: " + ", ".join(LEVELS))
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, jsonl or csv")] = "table",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write detections to this file instead of standard output.",
            callback=_output_file,
        ),
    ] = None,
    stats: Annotated[
        Path | None,
        typer.Option(help="Write per-file and total figures as JSON.", callback=_output_file),
    ] = None,
    placeholders: Annotated[
        Path | None, typer.Option(help="YAML file of values for rule placeholders (%name%).")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Recompile the rules.")] = False,
    limit: Annotated[int, typer.Option(min=0, help="Rows of the timeline table (0: all).")] = 200,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=1, help="Worker processes reading files in parallel.")
    ] = 1,
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            help="Read every input as this format instead of detecting it: " + ", ".join(FORMATS),
        ),
    ] = None,
    rejects: Annotated[
        Path | None,
        typer.Option(
            help="Write every rejected record (file, record, reason, text) as JSON lines.",
            callback=_output_file,
        ),
    ] = None,
    intel: Annotated[
        bool,
        typer.Option(
            "--intel", help="Also match the live indicators of the store (`vigil intel import`)."
        ),
    ] = False,
    starter: Annotated[
        bool,
        typer.Option("--starter-rules", help="Also use Vigil's own rules (`vigil serve` does)."),
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Hunt through logs with Sigma rules (and indicators) and print a timeline of detections."""
    if log_format is not None and log_format not in FORMATS:
        raise fail(f"unknown log format {log_format!r} (use one of {', '.join(FORMATS)})")
    if fmt not in ("table", "jsonl", "csv"):
        raise fail(f"unknown format {fmt!r} (use table, jsonl or csv)")
    if min_level is not None and min_level not in LEVELS:
        raise fail(f"unknown level {min_level!r} (use {', '.join(LEVELS)})")
    if not rules and not intel and not starter:
        raise fail(
            "no rules given: use --rules DIR (a folder of Sigma rules), --starter-rules "
            "and/or --intel"
        )
    for path in [*paths, *rules]:
        if not path.exists():
            raise fail(f"no such file or directory: {path}")
    store = _store(data_dir) if intel else None
    try:
        loaded = _load([*([starter_rules()] if starter else []), *rules], placeholders, no_cache)
        matcher = _load_intel(store) if store is not None else None
        columns = (
            TextColumn("{task.description}", style="cyan"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "files · [bold]{task.fields[events]:,}[/] events · "
                "[bold red]{task.fields[detections]:,}[/] detections"
            ),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=err, transient=False) as bar:
            result = scan_inputs(
                paths,
                loaded,
                min_level=min_level,
                progress=BarProgress(bar),
                jobs=jobs,
                read=ReadOptions(log_format, keep_rejects=rejects is not None),
                intel=matcher,
            )
    except VigilError as exc:
        raise fail(str(exc)) from None
    _print_summary(result)
    _print_problems(result.files)
    _write_detections(result, fmt, output, limit)
    if stats is not None:
        _write(stats, orjson.dumps(result.stats(), option=orjson.OPT_INDENT_2))
    if rejects is not None:
        records = [r for f in result.files for r in f.set_aside]
        _write(rejects, b"".join(orjson.dumps(r, default=str) + b"\n" for r in records))
        err.print(
            f"{len(records):,} rejected records written to {escape(str(rejects))}", highlight=False
        )
    if stats is not None:
        err.print(f"Figures written to {escape(str(stats))}", highlight=False)


def _load_intel(store: IndicatorStore) -> IntelScan:
    with err.status("Loading indicators…"):
        started = time.perf_counter()
        try:
            intel = IntelScan.load(store)
        except SQLAlchemyError as exc:
            raise fail(f"cannot read the indicator store: {_reason(exc)}") from None
    err.print(
        f"Loaded [bold]{len(intel.matcher):,}[/] live indicators in "
        f"{time.perf_counter() - started:.2f}s.",
        highlight=False,
    )
    if not len(intel.matcher):
        err.print("[yellow]No live indicators: import some with `vigil intel import`.[/]")
    return intel


def _print_summary(result: ScanResult) -> None:
    totals = result.totals
    seconds = totals["parse_seconds"] + totals["match_seconds"]
    rate = totals["records_read"] / seconds if seconds else 0.0
    err.print(
        f"\nRead [bold]{totals['records_read']:,}[/] records from {totals['files']} files "
        f"({totals['records_rejected']:,} rejected) in {seconds:.2f}s ({rate:,.0f} events/s): "
        f"[bold red]{totals['detections']:,}[/] detections.",
        highlight=False,
    )
    hits = result.counters.get("indicator_hits")
    if hits is not None:
        shown = sum(1 for d in result.detections if d.kind == "indicator")
        err.print(
            f"[bold]{hits:,}[/] indicator hits, recorded as sightings "
            f"({shown:,} at the level asked for, in the timeline).",
            highlight=False,
        )
    if not result.detections:
        return
    levels = Counter(d.level for d in result.detections)
    by_level = Table(title="By level", title_justify="left")
    by_level.add_column("level")
    by_level.add_column("detections", justify="right")
    for level in reversed(LEVELS):
        if levels.get(level):
            by_level.add_row(f"[{LEVEL_STYLE[level]}]{level}[/]", f"{levels[level]:,}")
    err.print(by_level)
    rules = Counter((d.level, d.rule_title) for d in result.detections)
    by_rule = Table(title="By rule (top 25)", title_justify="left")
    by_rule.add_column("level")
    by_rule.add_column("rule")
    by_rule.add_column("detections", justify="right")
    for (level, title), count in rules.most_common(25):
        by_rule.add_row(
            f"[{LEVEL_STYLE.get(level, '')}]{escape(level)}[/]", escape(title), f"{count:,}"
        )
    err.print(by_rule)
    tactics = Counter(t for d in result.detections for t in tactics_of(d.tags))
    if tactics:
        by_tactic = Table(title="By ATT&CK tactic", title_justify="left")
        by_tactic.add_column("tactic")
        by_tactic.add_column("detections", justify="right")
        for tactic, count in tactics.most_common():
            by_tactic.add_row(escape(tactic), f"{count:,}")
        err.print(by_tactic)


def _print_problems(files: list[FileReport]) -> None:
    troubled = [f for f in files if f.rejects or (f.warnings and f.format != "unknown")]
    skipped = [f for f in files if f.format in ("unknown", "skipped")]
    if troubled:
        table = Table(title="Files with problems", title_justify="left")
        table.add_column("file", overflow="fold")
        table.add_column("read", justify="right")
        table.add_column("rejected", justify="right")
        table.add_column("where")
        table.add_column("reason", overflow="fold")
        for report in troubled:
            problems = [*report.rejects, *report.warnings] or []
            for i, problem in enumerate(problems[:5]):
                table.add_row(
                    escape(report.path) if i == 0 else "",
                    f"{report.records_read:,}" if i == 0 else "",
                    f"{report.records_rejected:,}" if i == 0 else "",
                    escape(str(problem.record)) if problem.record is not None else "",
                    escape(problem.reason),
                )
        err.print(table)
    if skipped:
        err.print(
            f"{len(skipped)} file(s) skipped as not a log format Vigil reads "
            "(listed with --stats).",
            highlight=False,
        )


def _key_fields(detection: Detection) -> str:
    shown: dict[str, Any] = dict(detection.matched_fields)
    for name in KEY_FIELDS:
        if len(shown) >= 4:
            break
        if name in detection.event and name not in shown:
            shown[name] = detection.event[name]
    parts = []
    for name, value in shown.items():
        text = str(value)
        parts.append(f"{name}={text if len(text) <= 120 else text[:117] + '…'}")
    return "\n".join(parts)


def _write_detections(result: ScanResult, fmt: str, output: Path | None, limit: int) -> None:
    detections = result.detections
    if fmt == "jsonl":
        data = b"".join(
            orjson.dumps(d.as_dict(), option=orjson.OPT_NON_STR_KEYS, default=str) + b"\n"
            for d in detections
        )
        _emit(data, output)
    elif fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(
            [
                "timestamp",
                "level",
                "rule_title",
                "rule_id",
                "kind",
                "host",
                "source_file",
                "record_id",
                "tags",
                "matched_fields",
            ]
        )
        for d in detections:
            writer.writerow(
                [
                    d.timestamp or "",
                    d.level,
                    d.rule_title,
                    d.rule_id,
                    d.kind,
                    d.host or "",
                    d.source_file,
                    d.record_id if d.record_id is not None else "",
                    " ".join(d.tags),
                    orjson.dumps(d.matched_fields, default=str).decode(),
                ]
            )
        _emit(buffer.getvalue().encode(), output)
    else:
        table = _timeline(detections, limit, out.width)
        if output is None:
            out.print(table)
        else:
            text = io.StringIO()
            Console(file=text, width=200).print(_timeline(detections, 0))
            _write(output, text.getvalue().encode("utf-8"))
            err.print(f"Timeline written to {escape(str(output))}", highlight=False)


def _emit(data: bytes, output: Path | None) -> None:
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        _write(output, data)
        err.print(f"Detections written to {escape(str(output))}", highlight=False)


def _timeline(detections: list[Detection], limit: int, width: int = 200) -> Table:
    """The detections as a table. Below 120 columns, host and source move into the details
    column so that time, level and rule keep their width."""
    shown = detections if limit <= 0 else detections[:limit]
    title = (
        "Timeline"
        if len(shown) == len(detections)
        else (
            f"Timeline (first {len(shown)} of {len(detections):,}; use --limit 0 or --format jsonl)"
        )
    )
    wide = width >= 120
    table = Table(title=title, title_justify="left", show_lines=not wide)
    table.add_column("time (UTC)", no_wrap=True, min_width=23)
    table.add_column("level", no_wrap=True, min_width=8)
    table.add_column("rule", overflow="fold", min_width=16)
    if wide:
        table.add_column("host", overflow="fold")
        table.add_column("source", overflow="fold")
    table.add_column("details", overflow="fold")
    for d in shown:
        source = (
            f"{Path(d.source_file).name}#{d.record_id}"
            if d.record_id is not None
            else Path(d.source_file).name
        )
        time_text = (d.timestamp or "")[:23].replace("T", " ")
        level = f"[{LEVEL_STYLE.get(d.level, '')}]{escape(d.level)}[/]"
        if wide:
            cells = [escape(d.host or ""), escape(source), escape(_key_fields(d))]
        else:
            where = " ".join(part for part in (d.host, source) if part)
            cells = [escape(where + "\n" + _key_fields(d))]
        table.add_row(time_text, level, escape(d.rule_title), *cells)
    return table


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


# --- vigil intel --------------------------------------------------------------------------


def _store(data_dir: Path | None) -> IndicatorStore:
    from vigil.store import data_dir as default_data_dir

    if data_dir is not None or not os.environ.get("VIGIL_DATABASE_URL"):
        _check_folder(default_data_dir(data_dir))
    try:
        return IndicatorStore.open(data_dir)
    except (SQLAlchemyError, OSError) as exc:
        raise fail(f"cannot open the indicator store: {_reason(exc)}") from None


def _import_table(title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column, justify in (
        ("source", "left"),
        ("kind", "left"),
        ("indicators", "right"),
        ("new", "right"),
        ("unsupported", "right"),
        ("rejected", "right"),
    ):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    return table


def _record(store: IndicatorStore, items: list[Imported], table: Table) -> list[Any]:
    """Store each import, add its row to the table; return what was set aside."""
    aside: list[Any] = []
    for item in items:
        result = item.result
        if item.kind == "skipped":
            table.add_row(escape(item.location), "skipped", "", "", "", escape(item.reason))
            continue
        counts = store.record_import(result, kind=item.kind, location=item.location)
        table.add_row(
            escape(result.source),
            item.kind,
            f"{counts.indicators:,}",
            f"{counts.new:,}",
            f"{len(result.unsupported):,}",
            f"{len(result.rejected) + len(counts.invalid):,}",
        )
        aside.extend({"source": result.source, "unsupported": True, **asdict(u)}
                     for u in result.unsupported)  # fmt: skip
        aside.extend({"source": result.source, "rejected": True, **asdict(r)}
                     for r in result.rejected)  # fmt: skip
        aside.extend(
            {"source": result.source, "rejected": True, "reference": i.reference or "",
             "reason": reason, "text": i.value}
            for i, reason in counts.invalid
        )  # fmt: skip
    return aside


def _write_aside(aside: list[Any], path: Path | None) -> None:
    if not aside:
        return
    shown = [a for a in aside if a.get("unsupported")][:10]
    if shown:
        table = Table(title="Unsupported (first 10)", title_justify="left")
        table.add_column("source")
        table.add_column("reference", overflow="fold")
        table.add_column("reason", overflow="fold")
        table.add_column("text", overflow="fold")
        for item in shown:
            table.add_row(
                escape(item["source"]),
                escape(item["reference"]),
                escape(item["reason"]),
                escape(item["text"][:200]),
            )
        err.print(table)
    if path is not None:
        _write(path, b"".join(orjson.dumps(a, default=str) + b"\n" for a in aside))
        err.print(
            f"{len(aside):,} unsupported or rejected items written to {escape(str(path))}",
            highlight=False,
        )
    else:
        err.print(
            f"{len(aside):,} items unsupported or rejected (write them all with --aside FILE).",
            highlight=False,
        )


Aside = Annotated[
    Path | None,
    typer.Option(
        "--aside",
        help="Write unsupported and rejected items as JSON lines.",
        callback=_output_file,
    ),
]


@intel_app.command("import")
def intel_import(
    targets: Annotated[
        list[str], typer.Argument(help="Files, folders (recursed) or http(s) URLs of indicators.")
    ],
    data_dir: DataDir = None,
    aside: Aside = None,
) -> None:
    """Import STIX 2.x bundles, MISP events and feeds, plain and CSV lists."""
    from vigil.intel.importers import import_path

    store = _store(data_dir)
    table = _import_table("Imported")
    aside_items: list[Any] = []
    try:
        for target in targets:
            with err.status(f"Importing {escape(target)}…"):
                items = list(import_path(target, _feed_cursors(store)))
            aside_items.extend(_record(store, items, table))
    except VigilError as exc:
        raise fail(str(exc)) from None
    out.print(table)
    _write_aside(aside_items, aside)


def _feed_cursors(store: IndicatorStore) -> dict[str, str]:
    """Where earlier imports of MISP feeds stopped (a feed is re-read only where it changed)."""
    return {
        source["name"]: source["cursor"]
        for source in store.sources()
        if source["kind"] == "misp-feed" and source["cursor"]
    }


@intel_app.command("pull")
def intel_pull(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="vigil.toml with [[intel.sources]].")
    ] = Path("vigil.toml"),
    source: Annotated[
        list[str], typer.Option("--source", help="Pull only this source; repeat for more.")
    ] = [],  # noqa: B006
    data_dir: DataDir = None,
    aside: Aside = None,
) -> None:
    """Pull the configured TAXII collections, MISP feeds and lists, from where they stopped."""
    from vigil.intel.sources import load_sources
    from vigil.intel.sources import pull as pull_source

    try:
        sources = load_sources(config)
    except VigilError as exc:
        raise fail(str(exc)) from None
    chosen = [s for s in sources if not source or s.name in source]
    missing = set(source) - {s.name for s in sources}
    if missing:
        raise fail(f"no intel source named {', '.join(sorted(missing))} in {config}")
    if not chosen:
        raise fail(f"no [[intel.sources]] in {config}")
    store = _store(data_dir)
    table = _import_table("Pulled")
    aside_items: list[Any] = []
    for item in chosen:
        try:
            with err.status(f"Pulling {escape(item.name)}…"):
                imported = pull_source(item, store)
        except VigilError as exc:
            table.add_row(escape(item.name), item.kind, "", "", "", f"[red]{escape(str(exc))}[/]")
            continue
        for one in imported:
            result = one.result
            table.add_row(
                escape(item.name),
                one.kind,
                f"{len(result.indicators):,}",
                "",
                f"{len(result.unsupported):,}",
                f"{len(result.rejected):,}",
            )
            aside_items.extend({"source": item.name, "unsupported": True, **asdict(u)}
                               for u in result.unsupported)  # fmt: skip
    out.print(table)
    _write_aside(aside_items, aside)


@intel_app.command("stats")
def intel_stats(
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Indicators per type and source, live ones, sightings."""
    figures = _store(data_dir).stats()
    if as_json:
        out.print_json(orjson.dumps(figures, default=str).decode())
        return
    table = Table(title="Indicators", title_justify="left")
    table.add_column("type")
    table.add_column("stored", justify="right")
    table.add_column("live", justify="right")
    for kind, count in sorted(figures["by_type"].items()):
        table.add_row(kind, f"{count:,}", f"{figures['live_by_type'].get(kind, 0):,}")
    table.add_row("[bold]all[/]", f"[bold]{figures['indicators']:,}[/]", f"{figures['live']:,}")
    out.print(table)
    sources = Table(title="Sources", title_justify="left")
    for column in ("source", "kind", "indicators", "unsupported", "rejected", "last import"):
        sources.add_column(column, justify="left" if column in ("source", "kind") else "right")
    for row in figures["sources"]:
        sources.add_row(
            escape(row["name"]),
            row["kind"],
            f"{figures['source_rows'].get(row['name'], row['indicators']):,}",
            f"{row['unsupported']:,}",
            f"{row['rejected']:,}",
            format_time(row["last_import"]) or "",
        )
    out.print(sources)
    out.print(
        f"{figures['revoked_rows']:,} revoked and {figures['expired_rows']:,} expired source "
        f"rows; {figures['sightings']:,} sightings.",
        highlight=False,
    )


@intel_app.command("search")
def intel_search(
    value: Annotated[str, typer.Argument(help="An address, domain, URL, hash, e-mail or name.")],
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the matches as JSON.")] = False,
) -> None:
    """Which indicators a value is (or falls under: parent domains, networks)."""
    found = _store(data_dir).search(value)
    if as_json:
        out.print_json(orjson.dumps([_indicator_dict(i) for i in found]).decode())
        return
    if not found:
        out.print(f"No indicator for {escape(value)}.")
        raise typer.Exit(1)
    for indicator in found:
        table = Table(
            title=f"{indicator.type} {escape(indicator.value)} · score "
            f"{indicator.score():.0f} · {indicator.sightings:,} sightings",
            title_justify="left",
        )
        for column in ("source", "reference", "confidence", "valid until", "revoked", "actors",
                       "techniques"):  # fmt: skip
            table.add_column(column, overflow="fold")
        for say in indicator.sources:
            table.add_row(
                escape(say.source),
                escape(say.reference),
                "" if say.confidence is None else str(say.confidence),
                format_time(say.valid_until) or "",
                "yes" if say.revoked else "",
                escape(", ".join(say.actors)),
                ", ".join(say.techniques),
            )
        out.print(table)


def _indicator_dict(indicator: StoredIndicator) -> dict[str, Any]:
    return {
        "type": indicator.type,
        "value": indicator.value,
        "score": round(indicator.score(), 1),
        "live": bool(indicator.live_sources()),
        "sightings": indicator.sightings,
        "sources": [asdict(s) for s in indicator.sources],
    }


@intel_app.command("sightings")
def intel_sightings(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write the STIX bundle to this file.", callback=_output_file
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Export every sighting as a STIX 2.1 bundle of `sighting` objects."""
    from vigil.intel.sightings import export_bundle

    try:
        bundle = export_bundle(_store(data_dir))
    except SQLAlchemyError as exc:
        raise fail(f"cannot read the indicator store: {_reason(exc)}") from None
    data = orjson.dumps(bundle, option=orjson.OPT_INDENT_2) + b"\n"
    _emit(data, output)
    count = sum(1 for o in bundle["objects"] if o["type"] == "sighting")
    err.print(f"{count:,} sightings exported.", highlight=False)


RulesOption = Annotated[
    list[Path],
    typer.Option("--rules", "-r", help="Sigma rules folder or file; repeat for more."),
]
STATUS_STYLE = {"covered": "green", "partial": "yellow", "uncovered": "bold red"}


@intel_app.command("coverage")
def intel_coverage(
    group: Annotated[str, typer.Option("--group", "-g", help="Group id, name or alias.")],
    rules: RulesOption = [],  # noqa: B006
    as_json: Annotated[bool, typer.Option("--json", help="Print the coverage as JSON.")] = False,
) -> None:
    """Which of a threat group's ATT&CK techniques the loaded Sigma rules cover, and which not."""
    from vigil.intel.attack import AttackKB, coverage, rule_techniques

    if not rules:
        raise fail("no rules given: use --rules DIR (a folder of Sigma rules)")
    try:
        kb = AttackKB.load()
        found = kb.group(group)
        loaded = _load(rules, None, False)
    except VigilError as exc:
        raise fail(str(exc)) from None
    report = coverage(found, rule_techniques(loaded.plan.rules, kb=kb), kb=kb)
    if as_json:
        data = {
            "group": {"id": found.id, "name": found.name, "aliases": list(found.aliases)},
            "attack_version": kb.version,
            "counts": report.counts,
            "ratio": round(report.ratio, 4),
            "techniques": [
                {
                    "id": item.technique.id,
                    "name": item.technique.name,
                    "tactics": list(item.technique.tactics),
                    "status": item.status,
                    "rules": [r.rule_id for r in item.rules],
                    "related_rules": [r.rule_id for r in item.related],
                }
                for item in report.techniques
            ],
        }
        out.print_json(orjson.dumps(data).decode())
        return
    table = Table(
        title=f"{escape(found.label)}: ATT&CK {kb.version} techniques against "
        f"{len(loaded.plan.rules):,} rules",
        title_justify="left",
    )
    for column in ("technique", "name", "tactics", "coverage", "rules"):
        table.add_column(column, justify="right" if column == "rules" else "left")
    order = {"uncovered": 0, "partial": 1, "covered": 2}
    for item in sorted(report.techniques, key=lambda t: (order[t.status], t.technique.id)):
        count = len(item.rules) or len(item.related)
        table.add_row(
            item.technique.id,
            escape(item.technique.name),
            ", ".join(item.technique.tactics),
            f"[{STATUS_STYLE[item.status]}]{item.status}[/]",
            f"{count:,}" if count else "",
        )
    out.print(table)
    counts = report.counts
    out.print(
        f"[green]{counts['covered']}[/] covered, [yellow]{counts['partial']}[/] partial "
        f"(parent or sub-technique rules only), [bold red]{counts['uncovered']}[/] not covered "
        f"of {len(report.techniques)}: {report.ratio:.0%} fully covered.",
        highlight=False,
    )


@intel_app.command("attack-layer")
def intel_attack_layer(
    rules: RulesOption = [],  # noqa: B006
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="Where to write the layer (JSON).", callback=_output_file
        ),
    ] = Path("vigil-coverage-layer.json"),
    group: Annotated[
        str | None, typer.Option("--group", "-g", help="Show this group's techniques and gaps.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="The layer's name.")] = None,
) -> None:
    """Write an ATT&CK Navigator layer of the rules' technique coverage (scores: rule counts)."""
    from vigil.intel.attack import AttackKB, navigator_layer, rule_techniques

    if not rules:
        raise fail("no rules given: use --rules DIR (a folder of Sigma rules)")
    try:
        kb = AttackKB.load()
        found = kb.group(group) if group else None
        loaded = _load(rules, None, False)
    except VigilError as exc:
        raise fail(str(exc)) from None
    covered = rule_techniques(loaded.plan.rules, kb=kb)
    title = name or ("Vigil rule coverage" + (f" vs {found.name}" if found else ""))
    layer = navigator_layer(
        covered,
        name=title,
        description=f"{len(loaded.plan.rules):,} Sigma rules loaded by Vigil",
        group=found,
        kb=kb,
    )
    _write(output, orjson.dumps(layer, option=orjson.OPT_INDENT_2) + b"\n")
    err.print(
        f"Layer of {len(layer['techniques']):,} technique entries ({len(covered):,} techniques "
        f"with rules) written to {escape(str(output))}; open it in ATT&CK Navigator "
        "(Open Existing Layer > Upload from local).",
        highlight=False,
    )


# --- vigil serve, token, hunt ------------------------------------------------------------

token_app = typer.Typer(no_args_is_help=True, help="API tokens (stored hashed).")
app.add_typer(token_app, name="token")


def _settings(**overrides: Any) -> Any:
    """The settings, with the command line's overrides; the data folder must be one."""
    from vigil.config import load_settings

    try:
        settings = load_settings(**overrides)
    except VigilError as exc:
        raise fail(str(exc)) from None
    _check_folder(settings.data_dir)
    return settings


def _state_engine(settings: Any) -> Any:
    """The state database of the settings, brought to the newest schema."""
    from vigil.store import migrate, state_engine

    try:
        engine = state_engine(settings.database_url or settings.data_dir)
        migrate(engine)
    except (SQLAlchemyError, OSError) as exc:
        raise fail(f"cannot open the state database: {_reason(exc)}") from None
    return engine


def _check_listen(host: str, port: int, kind: socket.SocketKind, what: str) -> None:
    """Fail at once, before anything starts, when `host:port` cannot be listened on (in use,
    no such address) instead of starting everything and then stopping."""
    try:
        for family, kind_, proto, _, address in socket.getaddrinfo(
            host, port, type=kind, flags=socket.AI_PASSIVE
        ):
            with socket.socket(family, kind_, proto) as probe:
                if kind == socket.SOCK_STREAM:  # as the server itself does
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                probe.bind(address)
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port} ({what}): {exc.strerror or exc}") from None


@app.command()
def serve(
    rules: RulesOption = [],  # noqa: B006
    data_dir: DataDir = None,
    host: Annotated[str | None, typer.Option(help="API address (default 127.0.0.1).")] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="API port (default 8400).")
    ] = None,
    feed: Annotated[
        list[Path],
        typer.Option("--feed", help="Once started, read these log files or folders into it."),
    ] = [],  # noqa: B006
    demo: Annotated[
        bool,
        typer.Option(
            "--demo", help="Once started, replay the demo intrusion and show its incident."
        ),
    ] = False,
) -> None:
    """Run Vigil continuously: ingest, detection, alerts, event store and the API."""
    from vigil.serve.run import serve as run_service

    overrides: dict[str, Any] = {"data_dir": data_dir}
    if rules:
        overrides["rules"] = rules
    settings = _settings(**overrides)
    if host is not None or port is not None:
        api = settings.api.model_copy(
            update={k: v for k, v in (("host", host), ("port", port)) if v is not None}
        )
        settings = settings.model_copy(update={"api": api})
    for path in [*settings.rules, *feed]:
        if not path.exists():
            raise fail(f"no such file or directory: {path}")
    _check_listen(settings.api.host, settings.api.port, socket.SOCK_STREAM, "the API")
    listeners = settings.listeners
    if listeners.syslog_udp is not None:
        _check_listen(listeners.host, listeners.syslog_udp, socket.SOCK_DGRAM, "syslog over UDP")
    if listeners.syslog_tcp is not None:
        _check_listen(listeners.host, listeners.syslog_tcp, socket.SOCK_STREAM, "syslog over TCP")
    starter = [starter_rules()] if settings.starter_rules else []
    try:
        loaded = _load([*starter, *settings.rules], None, False)
    except VigilError as exc:
        raise fail(str(exc)) from None

    def ready(service: Any, url: str) -> None:
        err.print(
            f"Vigil is serving on [bold]{url}[/] (API docs: {url}/docs, health: {url}/health); "
            f"{len(service.loaded.plan.rules):,} rules, "
            f"{service.indicator_count:,} live indicators, data in "
            f"{escape(str(settings.data_dir))}. Create a token with "
            "`vigil token create --role ingest`.",
            highlight=False,
        )

        def then() -> None:
            if demo:
                _serve_demo(service, url)
            if feed:
                _feed(service, feed, url)

        threading.Thread(target=then, name="vigil-serve-extras", daemon=True).start()

    try:
        run_service(settings, loaded=loaded, on_ready=ready)
    except VigilError as exc:
        raise fail(str(exc)) from None
    except SQLAlchemyError as exc:
        problem = storage_problem(exc)
        raise fail(f"cannot open the state database: {problem or _reason(exc)}") from None
    except OSError as exc:
        raise fail(f"cannot use the data folder {settings.data_dir}: {exc}") from None


def _serve_demo(service: Any, url: str) -> None:
    """Replay the demo intrusion into the running server and show the incident it became."""
    from vigil.demo import DEMO_SECONDS, incident_view, replay

    with err.status(f"Replaying the demo intrusion (its 37 minutes told in {DEMO_SECONDS:.0f} s)…"):
        found = replay(service, DEMO_SECONDS)
    if found is None:
        err.print("The demo intrusion made no incident (are the starter rules turned off?).")
        return
    view = incident_view(service, service.incident_store.get(found))
    err.print(_incident_panel(view))
    err.print(
        f"See it in the API: {url}/api/v1/incidents/{found} (docs: {url}/docs; a token: "
        "`vigil token create --role analyst`), or `vigil incident show " + found + "`.",
        highlight=False,
    )


def _feed(service: Any, paths: list[Path], url: str) -> None:
    """Read log files into a running service, with a live count of events and alerts."""
    columns = (
        TextColumn("[cyan]feeding[/]"),
        TextColumn(
            "[bold]{task.fields[sent]:,}[/] events sent · [bold]{task.fields[done]:,}[/] "
            "processed · [bold red]{task.fields[alerts]:,}[/] alerts"
        ),
        TimeElapsedColumn(),
    )
    totals = service.pipeline.totals
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task("feed", total=None, sent=0, done=0, alerts=0)

        def update(sent: int) -> None:
            bar.update(task, sent=sent, done=totals["events"], alerts=totals["new_alerts"])

        sent = service.feed(paths, on_progress=update)
        while service.pipeline.lag():
            update(sent)
            time.sleep(0.5)
        update(sent)
    levels = Counter(a["level"] for a in service.alert_store.list(limit=100_000))
    err.print(
        f"Fed {sent:,} events: {totals['new_alerts']:,} alerts ("
        + ", ".join(f"{levels[n]:,} {n}" for n in reversed(LEVELS) if levels.get(n))
        + f"). Still serving on {url} (docs: {url}/docs); Ctrl-C stops.",
        highlight=False,
    )


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
    settings = _settings(data_dir=data_dir)
    try:
        token, _ = TokenStore(state_engine(settings.database_url or settings.data_dir)).create(
            role, name
        )
    except (SQLAlchemyError, OSError) as exc:
        raise fail(f"cannot open the state database: {_reason(exc)}") from None
    out.print(token, highlight=False, soft_wrap=True)


@app.command()
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

    settings = _settings(data_dir=data_dir)
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
            loaded = _load([sigma], None, True)
            detections = retro_hunt(folder, loaded, since=start, limits=limits)
            if as_json:
                for detection in detections:
                    sys.stdout.write(orjson.dumps(detection.as_dict(), default=str).decode() + "\n")
            else:
                out.print(_timeline(detections, limit))
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


@app.command()
def correlate(
    paths: Annotated[list[Path], typer.Argument(help="Alert files (.gz is read too).")],
    kind: Annotated[
        str,
        typer.Option(
            "--format", help="wazuh, suricata, ait (the AIT alert data set's CSV), csv, json."
        ),
    ] = "ait",
    fields: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            help="csv/json: time=COL, rule=COL, title=COL, level=COL, host=COL, user=COL, "
            "ip=COL, label=COL (repeat).",
        ),
    ] = None,
    window: Annotated[
        float, typer.Option(help="An incident closes after this quiet time (s).")
    ] = 1800,
    span: Annotated[float, typer.Option(help="An incident lasts at most this long (s).")] = 3600,
    phases: Annotated[
        Path | None,
        typer.Option(help="attacktimes.py of the AIT data set: report MTTD per attack phase."),
    ] = None,
    top: Annotated[int, typer.Option(min=0, help="Incidents shown.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print incidents as JSON lines.")] = False,
) -> None:
    """Group alerts (Wazuh, Suricata, CSV/JSON) into incidents, ranked by risk. Labelled
    alert sets (AIT) are scored: reduction, attack share, top incident, MTTD per phase."""
    from vigil.correlate import AIT_MAPPING, Correlator, Mapping, Settings, read_alerts
    from vigil.correlate.evaluate import attack_phases, evaluate

    mapping: Mapping | None = None
    if kind == "ait":
        kind, mapping = "csv", AIT_MAPPING
    elif kind in ("csv", "json"):
        mapping = _mapping(fields or [])
    try:
        windows = attack_phases(phases) if phases is not None else {}
    except VigilError as exc:
        raise fail(str(exc)) from None
    results = []
    for path in paths:
        try:
            alerts, report = read_alerts(path, kind, mapping)
        except VigilError as exc:
            raise fail(str(exc)) from None
        correlator = Correlator(Settings(window=window, span=span))
        correlator.feed(sorted(alerts, key=lambda a: a.time))
        ranked = correlator.ranked()
        scenario = path.name.split("_alerts")[0].split(".")[0]
        labelled = any(a.labels.get("time_label") for a in alerts)
        evaluation = evaluate(scenario, ranked, windows.get(scenario)) if labelled else None
        if as_json:
            for incident in ranked[:top]:
                sys.stdout.write(
                    orjson.dumps({"file": str(path), **incident.summary()}).decode() + "\n"
                )
            if evaluation is not None:
                results.append(evaluation.as_dict())
            continue
        out.print(_incident_table(path.name, ranked[:top], len(alerts), len(ranked)))
        if report.rejected:
            err.print(f"{report.rejected:,} records of {escape(path.name)} set aside (unreadable).")
        if evaluation is not None:
            results.append(evaluation.as_dict())
    if results:
        if as_json:
            for result in results:
                sys.stdout.write(orjson.dumps({"evaluation": result}).decode() + "\n")
        else:
            out.print(_evaluation_table(results))
            if any(r["mttd_s"] for r in results):
                out.print(_mttd_table(results))


def _mapping(pairs: list[str]) -> Any:
    from vigil.correlate import mapping_from_pairs

    try:
        return mapping_from_pairs(pairs)
    except VigilError as exc:
        raise fail(str(exc)) from None


def _short_time(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(epoch))


def _incident_table(name: str, incidents: list[Any], alerts: int, total: int) -> Table:
    table = Table(title=f"{name}: {alerts:,} alerts → {total:,} incidents (top {len(incidents)})")
    for column in ("risk", "level", "alerts", "from", "to", "entities", "rules"):
        table.add_column(column, justify="right" if column in ("risk", "alerts") else "left")
    for incident in incidents:
        rules = sorted(incident.rules.items(), key=lambda kv: -kv[1])
        table.add_row(
            f"{incident.risk:.1f}",
            incident.level,
            f"{incident.size:,}",
            _short_time(incident.opened),
            _short_time(incident.last),
            escape(", ".join(sorted(f"{k}:{v}" for k, v in incident.entities))[:60]),
            escape(", ".join(f"{r} ×{n}" for r, n in rules[:4])),
        )
    return table


def _evaluation_table(results: list[dict[str, Any]]) -> Table:
    table = Table(title="Incidents against the labels")
    columns = ("scenario", "alerts", "incidents", "fewer", "attack alerts in attack incidents",
               "top risk is the attack")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "scenario" else "right")
    for r in results:
        table.add_row(
            r["scenario"],
            f"{r['alerts']:,}",
            f"{r['incidents']:,}",
            f"{r['reduction']:.0f}×",
            f"{r['attack_share']:.1%}",
            "yes" if r["top_is_attack"] else "no",
        )
    return table


def _mttd_table(results: list[dict[str, Any]]) -> Table:
    """Seconds from each attack phase's start to its first alert (— when none saw it)."""
    table = Table(title="MTTD per attack phase (s, phase start → first alert)")
    table.add_column("phase")
    for r in results:
        table.add_column(r["scenario"], justify="right")
    phases: list[str] = []
    for r in results:
        phases.extend(p for p in r["mttd_s"] if p not in phases)
    for phase in phases:
        cells = [r["mttd_s"].get(phase) for r in results]
        table.add_row(phase, *("—" if c is None else f"{c:g}" for c in cells))
    return table


incident_app = typer.Typer(
    no_args_is_help=True, help="Incidents and their cases (in the data folder's database)."
)
app.add_typer(incident_app, name="incident")


def _incidents(data_dir: Path | None) -> Any:
    from vigil.correlate import IncidentStore

    settings = _settings(data_dir=data_dir)
    return IncidentStore(_state_engine(settings), evidence=settings.data_dir / "evidence")


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
    status: Annotated[str | None, typer.Option(help="Only incidents in this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Incidents shown at most.")] = 20,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
) -> None:
    """Incidents by risk."""
    from vigil.correlate import STATUSES

    if status is not None and status not in STATUSES:
        raise fail(f"unknown status {status!r} (use {', '.join(STATUSES)})")
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
            f"{_short_time(entry['at'])} {entry['kind']:<8} {escape(entry['author'])}: "
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


@app.command()
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
                      _short_time(row["as_of"]))  # fmt: skip
    out.print(table)


@app.command()
def metrics(
    days: Annotated[int, typer.Option(min=1, help="Incidents created in the last N days.")] = 30,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON.")] = False,
) -> None:
    """MTTD, MTTA, MTTC and MTTR of the incidents, overall and per day."""
    figures = _incidents(data_dir).response_metrics(days=days)
    if as_json:
        sys.stdout.write(orjson.dumps(figures).decode() + "\n")
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


@app.command()
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
        _check_folder(data_dir)
    with err.status("Replaying the Northwind intrusion through the pipeline…"):
        incidents = run_demo(data_dir)
    if as_json:
        sys.stdout.write(orjson.dumps(incidents).decode() + "\n")
        return
    for incident in incidents:
        out.print(_incident_panel(incident))


def _incident_panel(incident: dict[str, Any]) -> Table:
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


@app.command()
def version() -> None:
    """Print Vigil's version."""
    out.print(f"vigil {__version__}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
