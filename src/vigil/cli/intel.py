"""`vigil intel`: indicator imports and feeds, their figures, sightings, ATT&CK coverage."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from vigil.cli._output import emit, err, fail, out, output_file, write
from vigil.cli._state import DataDir, indicator_store, reason_of
from vigil.cli.rules import RulesOption, load_rule_set
from vigil.errors import VigilError
from vigil.events import format_time
from vigil.intel.store import IndicatorStore, StoredIndicator

if TYPE_CHECKING:
    from vigil.intel.importers import Imported


intel_app = typer.Typer(
    no_args_is_help=True, help="Threat intelligence: indicators, feeds, sightings, ATT&CK."
)


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
        write(path, b"".join(orjson.dumps(a, default=str) + b"\n" for a in aside))
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
        callback=output_file,
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

    store = indicator_store(data_dir)
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
    store = indicator_store(data_dir)
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
    figures = indicator_store(data_dir).stats()
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
    found = indicator_store(data_dir).search(value)
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
            "--output", "-o", help="Write the STIX bundle to this file.", callback=output_file
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Export every sighting as a STIX 2.1 bundle of `sighting` objects."""
    from vigil.intel.sightings import export_bundle

    try:
        bundle = export_bundle(indicator_store(data_dir))
    except SQLAlchemyError as exc:
        raise fail(f"cannot read the indicator store: {reason_of(exc)}") from None
    data = orjson.dumps(bundle, option=orjson.OPT_INDENT_2) + b"\n"
    emit(data, output)
    count = sum(1 for o in bundle["objects"] if o["type"] == "sighting")
    err.print(f"{count:,} sightings exported.", highlight=False)


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
        loaded = load_rule_set(rules, None, False)
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
            "--output", "-o", help="Where to write the layer (JSON).", callback=output_file
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
        loaded = load_rule_set(rules, None, False)
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
    write(output, orjson.dumps(layer, option=orjson.OPT_INDENT_2) + b"\n")
    err.print(
        f"Layer of {len(layer['techniques']):,} technique entries ({len(covered):,} techniques "
        f"with rules) written to {escape(str(output))}; open it in ATT&CK Navigator "
        "(Open Existing Layer > Upload from local).",
        highlight=False,
    )
