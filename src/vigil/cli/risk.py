"""`vigil risk report`: the risk register and its roadmap, as Markdown, HTML and JSON."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from vigil.cli._output import err, fail, out, write
from vigil.cli._state import DataDir, migrated_engine, settings_with
from vigil.cli.rules import RulesOption, load_rule_set
from vigil.detect.sigma import starter_rules

risk_app = typer.Typer(no_args_is_help=True, help="The risk register and its roadmap.")


@risk_app.command("report")
def report(
    out_dir: Annotated[
        Path, typer.Option("--out", help="The folder to write risk.md, risk.html, risk.json.")
    ] = Path("risk-report"),
    rules: RulesOption = [],  # noqa: B006
    top: Annotated[int, typer.Option(min=1, max=10_000, help="Assets in the report.")] = 50,
    data_dir: DataDir = None,
) -> None:
    """Rank the inventory's assets by criticality × exposure × vulnerability × detection gap
    × open incidents, each with its reasons, and derive the roadmap (patch, segment, add
    telemetry, add detection, fix cloud permissions), most valuable first."""
    from vigil.assets.risk import assess, incidents_by_asset
    from vigil.assets.store import AssetStore
    from vigil.correlate.store import IncidentStore
    from vigil.intel.attack import rule_techniques

    settings = settings_with(data_dir=data_dir)
    engine = migrated_engine(settings)
    folders = [*([starter_rules()] if settings.starter_rules else []), *(rules or settings.rules)]
    loaded = load_rule_set(folders, None, False)
    covered = set(rule_techniques(loaded.plan.rules))
    store = AssetStore(engine)
    opened = IncidentStore(engine).open_entities(limit=100_000)
    incidents = incidents_by_asset(store, opened)
    with err.status("Assessing every asset…"):
        register = assess(store, covered=covered, incidents=incidents)
    if not register.assets:
        raise fail("the inventory is empty: `vigil assets import` scans, inventories, IAM")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail(f"cannot make {out_dir}: {exc.strerror or exc}") from None
    body = register.as_dict()
    body["covered_techniques"] = len(covered)
    write(out_dir / "risk.json", orjson.dumps(body, option=orjson.OPT_INDENT_2))
    write(out_dir / "risk.md", markdown(body, top).encode())
    write(out_dir / "risk.html", page(body, top).encode())
    table = Table(title=f"Risk register (top 15 of {len(register.assets):,})", title_justify="left")
    for column in ("score", "asset", "why"):
        table.add_column(column, overflow="fold", justify="right" if column == "score" else "left")
    for asset in register.assets[:15]:
        table.add_row(f"{asset.score:.1f}", escape(asset.id), escape("; ".join(asset.reasons)))
    out.print(table)
    plan = Table(title="Roadmap (first 10)", title_justify="left")
    for column in ("#", "kind", "step", "assets"):
        plan.add_column(column, overflow="fold")
    for n, step in enumerate(register.roadmap[:10], 1):
        plan.add_row(str(n), step.kind, escape(step.action), f"{len(step.assets):,}")
    out.print(plan)
    err.print(f"Written: {escape(str(out_dir))}/risk.md, risk.html, risk.json", highlight=False)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(body: dict[str, Any], top: int) -> str:
    lines = ["# Risk register", "", f"{len(body['assets'])} assets assessed; "
             f"the rules cover {body['covered_techniques']} ATT&CK techniques.", "",
             "## Roadmap", "", "| # | kind | step | risk taken away | assets |",
             "|---|---|---|---|---|"]  # fmt: skip
    for n, step in enumerate(body["roadmap"][:top], 1):
        lines.append(f"| {n} | {step['kind']} | {_cell(step['action'])} | {step['weight']} "
                     f"| {len(step['assets'])} |")  # fmt: skip
    lines += ["", "## Assets", "", "| # | score | asset | reasons |", "|---|---|---|---|"]
    for n, asset in enumerate(body["assets"][:top], 1):
        lines.append(f"| {n} | {asset['score']} | {_cell(asset['id'])} | "
                     f"{_cell('; '.join(asset['reasons']))} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def page(body: dict[str, Any], top: int) -> str:
    """The report as one HTML page (no script), a bar per asset's score."""
    assets = body["assets"][:top]
    widest = max((a["score"] for a in assets), default=1.0) or 1.0
    bars = "".join(
        f'<g transform="translate(0,{i * 18})"><rect width="{320 * a["score"] / widest:.1f}" '
        f'height="14" fill="#c0392b"/><text x="326" y="11">{html.escape(a["id"][:80])} '
        f"({a['score']})</text></g>"
        for i, a in enumerate(assets)
    )
    rows = "".join(
        f"<tr><td>{n}</td><td>{a['score']}</td><td>{html.escape(a['id'])}</td>"
        f"<td>{html.escape('; '.join(a['reasons']))}</td></tr>"
        for n, a in enumerate(assets, 1)
    )
    steps = "".join(
        f"<tr><td>{n}</td><td>{html.escape(s['kind'])}</td><td>{html.escape(s['action'])}</td>"
        f"<td>{s['weight']}</td><td>{len(s['assets'])}</td></tr>"
        for n, s in enumerate(body["roadmap"][:top], 1)
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Vigil risk register</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 8px;"
        "border-bottom:1px solid #ddd;text-align:left}text{font-size:11px}</style></head><body>"
        f"<h1>Risk register</h1><p>{len(body['assets'])} assets assessed; the rules cover "
        f"{body['covered_techniques']} ATT&amp;CK techniques.</p>"
        f'<svg width="900" height="{18 * len(assets)}" role="img" aria-label="scores">'
        f"{bars}</svg><h2>Roadmap</h2><table><tr><th>#</th><th>kind</th><th>step</th>"
        f"<th>risk taken away</th><th>assets</th></tr>{steps}</table><h2>Assets</h2><table>"
        f"<tr><th>#</th><th>score</th><th>asset</th><th>reasons</th></tr>{rows}</table>"
        "</body></html>\n"
    )
