"""The disaster-recovery drill: backup → loss → restore → verify → resume ingest, measured.

    report = drill(settings, backup_dir)
    report.rpo_events, report.rto_seconds

1. The intake log's end is read: every event below it was acknowledged to its sender.
2. The data folder is backed up (`vigil.store.backup`).
3. The data folder is lost: moved aside to `<folder>.lost-<time>` (kept, never deleted by
   the drill, so a drill cannot lose data; delete it once satisfied).
4. The backup is verified and restored into a fresh folder at the original path.
5. Vigil starts on it and takes a probe event through intake: serving again. RTO is the
   time from the loss to the probe's acknowledgement.
6. Everything restored is processed (stages resume from their positions); RPO is the number
   of acknowledged events that are neither stored nor set aside with a reason, and the probe
   must be stored too.

A drill that cannot run or finish fails (`DrillFailed`), never passes; when it fails after
the loss, the original folder is put back (the failed restore is moved aside instead)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow.dataset as pads

from vigil.bus.segments import SegmentLockedError, SegmentLog
from vigil.config import Settings
from vigil.errors import NotFound, VigilError
from vigil.serve.stages import FOLDERS
from vigil.store.backup import backup, restore

PROBE_SOURCE = "vigil-drill"


class DrillFailed(VigilError):
    """The drill could not run or did not finish: it proves nothing."""


@dataclass
class DrillReport:
    acknowledged: int  # events acknowledged before the backup
    stored: int  # of those, stored after the restore
    set_aside: int  # of those, set aside with a reason
    rpo_events: int  # acknowledged, neither stored nor set aside
    rto_seconds: float  # loss -> serving again (the probe acknowledged)
    backup_seconds: float
    restore_seconds: float
    catch_up_seconds: float
    backup_bytes: int
    alerts_before: int
    alerts_after: int
    lost_folder: Path


def drill(
    settings: Settings,
    backup_dir: Path,
    *,
    timeout: float = 600.0,
    progress: Callable[[str], None] | None = None,
) -> DrillReport:
    """Run the drill on the data folder of `settings` (no `vigil serve` may be using it)."""
    say = progress or (lambda _: None)
    folder = settings.data_dir
    intake = folder / FOLDERS.get("events", "events")
    if not intake.is_dir():
        raise NotFound(f"{folder} holds no intake log: nothing to drill")
    try:
        with SegmentLog(intake, fsync=False) as log:
            acknowledged = log.end
    except SegmentLockedError:
        raise DrillFailed(
            f"{folder} is in use (is vigil serve running on it?): stop it, or back it up "
            "with `vigil backup`"
        ) from None
    say("backup")
    started = time.monotonic()
    manifest = backup(folder, backup_dir)
    backup_seconds = time.monotonic() - started
    alerts_before = int(manifest.queries["alerts"][0][0])
    say("loss")
    lost = folder.with_name(f"{folder.name}.lost-{int(time.time())}")
    folder.rename(lost)
    lost_at = time.monotonic()
    try:
        say("restore")
        restore(backup_dir, folder)
        restored_at = time.monotonic()
        report = _resume(settings, acknowledged, timeout, say)
    except BaseException as exc:
        failed = folder.with_name(f"{folder.name}.failed-restore-{int(time.time())}")
        if folder.exists():
            folder.rename(failed)
        lost.rename(folder)
        if isinstance(exc, VigilError | OSError):
            raise DrillFailed(
                f"the drill failed ({exc}); the original data folder is back in place"
            ) from exc
        raise
    serving_at, caught_up_at, figures = report
    return DrillReport(
        acknowledged=acknowledged,
        stored=figures["stored"],
        set_aside=figures["set_aside"],
        rpo_events=acknowledged - figures["stored"] - figures["set_aside"],
        rto_seconds=serving_at - lost_at,
        backup_seconds=backup_seconds,
        restore_seconds=restored_at - lost_at,
        catch_up_seconds=caught_up_at - serving_at,
        backup_bytes=manifest.size,
        alerts_before=alerts_before,
        alerts_after=figures["alerts"],
        lost_folder=lost,
    )


def _resume(
    settings: Settings, acknowledged: int, timeout: float, say: Callable[[str], None]
) -> tuple[float, float, dict[str, Any]]:
    """Start Vigil on the restored folder, take a probe in, process everything; the moment
    it served again, the moment it caught up, and what it holds."""
    from vigil.serve.service import Service
    from vigil.store.backup import run_queries

    say("resume")
    service = Service(settings)
    try:
        service.start()
        probe = orjson.dumps({"message": "vigil drill probe", "@timestamp": time.time()})
        ack = service.ingest([probe], source=PROBE_SOURCE)
        if ack.accepted != 1 or ack.first_offset is None:
            raise DrillFailed("the restored Vigil did not take the probe event in")
        serving_at = time.monotonic()
        say("catch up")
        if not service.drain(timeout):
            raise DrillFailed(f"the restored pipeline did not catch up within {timeout:.0f} s")
        caught_up_at = time.monotonic()
    finally:
        service.stop()
    alerts = run_queries(settings.data_dir / "vigil.db")["alerts"][0][0]
    stored = _stored_offsets(settings.data_dir / "events")
    if ack.first_offset not in stored:
        raise DrillFailed("the probe event taken in after the restore was not stored")
    aside = _set_aside_offsets(settings.data_dir / "rejects.jsonl")
    below = {o for o in stored if o < acknowledged}
    figures = {
        "stored": len(below),
        "set_aside": len({o for o in aside if o < acknowledged} - below),
        "alerts": int(alerts),
    }
    return serving_at, caught_up_at, figures


def _stored_offsets(events: Path) -> set[int]:
    """The intake offsets of every event in the Parquet store (files of committed batches)."""
    files = sorted(str(p) for p in events.rglob("*.parquet")) if events.is_dir() else []
    if not files:
        return set()
    table = pads.dataset(files, format="parquet").to_table(columns=["offset"])
    return set(table.column("offset").to_pylist())


def _set_aside_offsets(rejects: Path) -> set[int]:
    found: set[int] = set()
    if not rejects.is_file():
        return found
    with rejects.open("rb") as lines:
        for line in lines:
            try:
                item = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            where = item.get("offset", item.get("record")) if isinstance(item, dict) else None
            if isinstance(where, int):
                found.add(where)
    return found


__all__ = ["DrillFailed", "DrillReport", "drill"]
