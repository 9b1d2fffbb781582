"""`vigil correlate`: alert files grouped into incidents, ranked, scored against labels."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from vigil.cli._output import err, fail, out, short_time
from vigil.errors import VigilError


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
            short_time(incident.opened),
            short_time(incident.last),
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
