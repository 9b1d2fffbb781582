"""Benchmark backup, restore and the recovery drill on a data folder of a million real events.

1. A data folder is filled by an embedded `vigil serve` pipeline (two detection workers, all
   of ../shared/data/sigma/rules*): Windows, Zeek and CloudTrail events of the reference
   data, repeated to `--events` (1,000,000; `--quick`: 100,000), detected on and stored.
2. `vigil backup` into a new folder (full), then again (incremental: nothing changed).
3. `vigil drill --json` on the folder, backing up into the same folder: backup, loss,
   restore with verification (every Parquet file read back), resume, catch up.

Prints a table and ends with one JSON line: `events`, `alerts`, `full_backup_s`,
`incremental_backup_s`, `backup_mb`, `restore_s` (restore and verify), `rto_s`,
`rpo_events`, `catch_up_s`, `calibration_seconds`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "src"))

from rich.console import Console  # noqa: E402

from figures import calibrate, report  # noqa: E402
from pipeline import payloads  # noqa: E402
from vigil.config import Settings  # noqa: E402
from vigil.serve.service import Service  # noqa: E402
from vigil.store.backup import backup, run_queries  # noqa: E402

console = Console(stderr=True)


def fill(folder: Path, events: int, rules: list[str]) -> None:
    """Take `events` real events in through intake and process them all."""
    settings = Settings.model_validate(
        {"data_dir": folder, "rules": rules, "indicators": False, "pipeline": {"workers": 2}}
    )
    with console.status("Reading the events…"):
        requests = payloads(events)
    service = Service(settings)
    service.start()
    try:
        with console.status(f"Taking {events:,} events in and processing them…") as status:
            for n, request in enumerate(requests):
                while service.pipeline.lag() > 100_000:
                    time.sleep(0.05)
                service.ingest(request, source=f"bench-{n % 3}")
                if n % 50 == 0:
                    status.update(f"Taken in {n * len(request):,} of {events:,}…")
            if not service.drain(1800):
                raise SystemExit("the pipeline did not finish processing")
    finally:
        service.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    if not (DATA / "sigma").exists():
        print("reference data not found under", DATA, file=sys.stderr)
        return 2
    events = 100_000 if args.quick else args.events
    calibration = calibrate()
    rules = [str(p) for p in sorted((DATA / "sigma").glob("rules*")) if p.is_dir()]
    with tempfile.TemporaryDirectory(prefix="vigil-drill-") as scratch:
        folder = Path(scratch) / "vigil-data"
        target = Path(scratch) / "backup"
        started = time.monotonic()
        fill(folder, events, rules)
        fill_s = time.monotonic() - started
        with console.status("Full backup…"):
            started = time.monotonic()
            full = backup(folder, target)
            full_s = time.monotonic() - started
        with console.status("Incremental backup…"):
            started = time.monotonic()
            again = backup(folder, target)
            incremental_s = time.monotonic() - started
        with console.status("vigil drill…"):
            done = subprocess.run(
                [sys.executable, "-m", "vigil.cli", "drill", "--json", "--backup-dir", str(target)],
                env={
                    **os.environ,
                    "VIGIL_DATA_DIR": str(folder),
                    "VIGIL_INDICATORS": "false",
                    "VIGIL_RULES": json.dumps(rules),
                },
                capture_output=True,
                check=False,
            )
        if done.returncode not in (0, 1):
            print(done.stderr.decode(), file=sys.stderr)
            return 2
        drilled = json.loads(done.stdout)
        alerts = run_queries(folder / "vigil.db")["alerts"][0][0]
        figures = {
            "events": full.queries["events"],
            "alerts": alerts,
            "fill_s": round(fill_s, 1),
            "files": len(full.files),
            "backup_mb": round(drilled["backup_bytes"] / 1e6, 1),
            "full_backup_s": round(full_s, 2),
            "incremental_backup_s": round(incremental_s, 2),
            "incremental_copied_files": again.copied,
            "drill_backup_s": round(drilled["backup_seconds"], 2),
            "restore_s": round(drilled["restore_seconds"], 2),
            "rto_s": round(drilled["rto_seconds"], 2),
            "catch_up_s": round(drilled["catch_up_seconds"], 2),
            "acknowledged": drilled["acknowledged"],
            "rpo_events": drilled["rpo_events"],
            "calibration_seconds": calibration,
        }
    report("Backup, restore and recovery drill", figures)
    return 0 if figures["rpo_events"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
