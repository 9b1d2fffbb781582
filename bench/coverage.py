"""Detection coverage on the labelled data, the figures issue 18 gates on.

1. evtx-to-mitre-attack: of the 268 recordings labelled with a tactic (their folder), those
   with a detection carrying that tactic; with SigmaHQ's rules alone, then with Vigil's own
   rule pack added.
2. Stratus Red Team: of the 35 AWS detonations (CloudTrail), those with a detection carrying
   one of their labelled tactics, and those with any detection; the same two rule sets.
3. Benign baselines (windows/evtx-rs-benign-and-corrupt, network/wrccdc2018-zeek): the rules
   of Vigil's pack that fire on them (there should be none).

Prints a table and ends with one JSON line. `--quick` skips the SigmaHQ-alone pass; `--missed`
lists the labelled evtx-to-mitre-attack files no detection of the last rule set covers, by folder.
Reads `../shared/data` (or VIGIL_DATA).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import orjson  # noqa: E402
from rich.console import Console  # noqa: E402

from figures import calibrate, report  # noqa: E402
from vigil.detect.sigma import load_rules, starter_rules  # noqa: E402
from vigil.exercise.scenario import tactic_shortname  # noqa: E402
from vigil.scan import scan_inputs  # noqa: E402

console = Console(stderr=True)
DATA = Path(os.environ.get("VIGIL_DATA", ROOT.parent / "shared" / "data"))
EVTX = DATA / "windows" / "evtx-to-mitre-attack"
STRATUS = DATA / "cloud" / "stratus-red-team"
BENIGN = [DATA / "windows" / "evtx-rs-benign-and-corrupt", DATA / "network" / "wrccdc2018-zeek"]
# SigmaHQ's detection rules: the main set, emerging threats and threat hunting
SIGMAHQ = [DATA / "sigma" / f for f in ("rules", "rules-emerging-threats", "rules-threat-hunting")]


def labels(folder: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (folder / "labels.jsonl").read_bytes().splitlines()]


def tactics_by_file(folder: Path, detections: Iterable[Any]) -> dict[str, set[str]]:
    """Each file (relative to the folder) → the tactics its detections carry."""
    out: dict[str, set[str]] = {}
    for d in detections:
        try:
            name = str(Path(d.source_file).resolve().relative_to(folder.resolve()))
        except ValueError:
            continue
        out.setdefault(name, set()).update(d.tactics)
    return out


def evtx_coverage(rules: list[Path]) -> tuple[int, int, list[str]]:
    """Labelled files with a detection carrying their tactic, labelled files, the files missed."""
    loaded = load_rules(rules)
    found = tactics_by_file(EVTX, scan_inputs([EVTX], loaded, jobs=2).detections)
    rows = [r for r in labels(EVTX) if r["tactics"]]
    missed = [
        r["file"]
        for r in rows
        if not {tactic_shortname(t) for t in r["tactics"]} & found.get(r["file"], set())
    ]
    return len(rows) - len(missed), len(rows), missed


def print_missed(missed: list[str]) -> None:
    folders: dict[str, list[str]] = {}
    for name in missed:
        folder, _, file = name.rpartition("/")
        folders.setdefault(folder, []).append(file)
    console.print(f"[bold]{len(missed)} labelled files without a detection of their tactic[/]")
    for folder, files in sorted(folders.items()):
        console.print(f"{folder} ({len(files)})", highlight=False, soft_wrap=True)
        for file in sorted(files):
            console.print(f"    {file}", highlight=False, soft_wrap=True)


def stratus_coverage(rules: list[Path]) -> tuple[int, int, int]:
    loaded = load_rules(rules)
    found = tactics_by_file(STRATUS, scan_inputs([STRATUS], loaded).detections)
    rows = labels(STRATUS)
    by_tactic = sum(
        1 for r in rows if {tactic_shortname(t) for t in r["tactics"]} & found.get(r["file"], set())
    )
    return by_tactic, sum(1 for r in rows if r["file"] in found), len(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--missed", action="store_true")
    args = parser.parse_args()
    if not EVTX.is_dir():
        console.print(f"no {DATA}: the shared data is needed")
        return 2
    figures: dict[str, Any] = {"calibration_seconds": calibrate()}
    sets = {"with_pack": [*SIGMAHQ, starter_rules()]}
    if not args.quick:
        sets = {"sigmahq": SIGMAHQ, **sets}
    for name, rules in sets.items():
        with console.status(f"evtx-to-mitre-attack, {name}…"):
            hit, total, missed = evtx_coverage(rules)
        figures[f"evtx_tactic_{name}"] = hit
        figures["evtx_labelled"] = total
        with console.status(f"Stratus, {name}…"):
            by_tactic, anything, detonations = stratus_coverage(rules)
        figures[f"stratus_tactic_{name}"] = by_tactic
        figures[f"stratus_any_{name}"] = anything
        figures["stratus_detonations"] = detonations
    if args.missed:
        print_missed(missed)
    with console.status("benign baselines, Vigil's pack…"):
        pack = load_rules([starter_rules()])
        fired = scan_inputs([p for p in BENIGN if p.exists()], pack, jobs=2).detections
    figures["pack_rules"] = len(pack.plan.rules)
    figures["pack_alerts_on_benign"] = len(fired)
    figures["pack_rules_on_benign"] = sorted({d.rule_title for d in fired})
    report("Detection coverage on the labelled data", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
