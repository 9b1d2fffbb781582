"""`vigil scan`: Sigma rules (and indicators) over log files, and the timeline it prints."""

from __future__ import annotations

import csv
import io
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
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

from vigil.cli._output import LEVEL_STYLE, emit, err, fail, out, output_file, write
from vigil.cli._state import DataDir, indicator_store, reason_of
from vigil.cli.rules import load_rule_set
from vigil.detect import LEVELS, Detection, tactics_of
from vigil.detect.ioc import IntelScan
from vigil.detect.sigma import starter_rules
from vigil.errors import VigilError
from vigil.ingest import FORMATS, FileReport
from vigil.intel.store import IndicatorStore
from vigil.scan import ReadOptions, ScanResult, scan_inputs

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
            callback=output_file,
        ),
    ] = None,
    stats: Annotated[
        Path | None,
        typer.Option(help="Write per-file and total figures as JSON.", callback=output_file),
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
            callback=output_file,
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
    store = indicator_store(data_dir) if intel else None
    try:
        loaded = load_rule_set(
            [*([starter_rules()] if starter else []), *rules], placeholders, no_cache
        )
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
        write(stats, orjson.dumps(result.stats(), option=orjson.OPT_INDENT_2))
    if rejects is not None:
        records = [r for f in result.files for r in f.set_aside]
        write(rejects, b"".join(orjson.dumps(r, default=str) + b"\n" for r in records))
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
            raise fail(f"cannot read the indicator store: {reason_of(exc)}") from None
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
        emit(data, output)
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
        emit(buffer.getvalue().encode(), output)
    else:
        table = timeline(detections, limit, out.width)
        if output is None:
            out.print(table)
        else:
            text = io.StringIO()
            Console(file=text, width=200).print(timeline(detections, 0))
            write(output, text.getvalue().encode("utf-8"))
            err.print(f"Timeline written to {escape(str(output))}", highlight=False)


def timeline(detections: list[Detection], limit: int, width: int = 200) -> Table:
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
