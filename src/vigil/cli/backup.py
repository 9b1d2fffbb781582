"""`vigil backup` and `vigil restore`: Vigil's own state, backed up and verified."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from vigil.cli._output import err, fail, figures_table, out
from vigil.cli._state import DataDir, settings_with
from vigil.config import config_file
from vigil.errors import VigilError


def backup(
    dest: Annotated[
        Path, typer.Argument(help="Backup folder (made if missing; updated in place).")
    ],
    data_dir: DataDir = None,
) -> None:
    """Back up the state database, events, streams, evidence and configuration into DEST,
    with a manifest of SHA-256 digests and row counts. Parquet files already backed up are
    not copied again. Safe while `vigil serve` runs."""
    from vigil.store.backup import backup as run_backup

    settings = settings_with(data_dir=data_dir)
    started = time.monotonic()
    try:
        with err.status("Backing up…") as status:
            manifest = run_backup(
                settings.data_dir,
                dest,
                database_url=settings.database_url,
                config=config_file(),
                progress=lambda part: status.update(f"Backing up: {part}…"),
            )
    except (VigilError, OSError) as exc:
        raise fail(f"backup failed: {exc}") from None
    rows = [
        ("files", f"{len(manifest.files):,}"),
        ("copied now", f"{manifest.copied:,} ({manifest.copied_bytes / 1e6:,.1f} MB)"),
        ("backup size", f"{manifest.size / 1e6:,.1f} MB"),
        ("events (Parquet rows)", f"{manifest.queries['events']:,}"),
        ("database tables", f"{len(manifest.database['tables'])}"),
        ("seconds", f"{time.monotonic() - started:.2f}"),
    ]
    out.print(figures_table(f"Backup of {escape(str(settings.data_dir))}", rows))
    out.print(f"Backup written to {escape(str(dest))}", highlight=False)


def restore(
    src: Annotated[Path, typer.Argument(help="Backup folder made by `vigil backup`.")],
    data_dir: DataDir = None,
    verify: Annotated[
        bool, typer.Option("--verify", help="Check the backup before restoring (always done).")
    ] = True,
    check_only: Annotated[
        bool, typer.Option("--check-only", help="Verify the backup, restore nothing.")
    ] = False,
) -> None:
    """Verify a backup (every file's digest, every Parquet file read back, the database's
    integrity and row counts), restore it into a fresh data folder, and check that a fixed
    set of queries answers as it did at backup time. Refused, naming the file, on any
    difference. A PostgreSQL backup restores its database into the empty database that
    VIGIL_DATABASE_URL (or `database_url` in the configuration) names."""
    from vigil.store.backup import restore as run_restore
    from vigil.store.backup import verify as run_verify

    del verify  # always verified: the flag says so on the command line
    settings = settings_with(data_dir=data_dir)
    started = time.monotonic()
    try:
        if settings.database_url and not settings.database_url.startswith("postgresql"):
            raise fail("restore writes the data folder's own SQLite database: unset the URL")
        with err.status("Verifying…"):
            if check_only:
                _, checked = run_verify(src)
            else:
                checked = run_restore(
                    src, settings.data_dir, database_url=settings.database_url, config=None
                )
    except (VigilError, OSError) as exc:
        raise fail(f"restore refused: {exc}") from None
    seconds = time.monotonic() - started
    what = "verified" if check_only else f"restored into {settings.data_dir}"
    out.print(
        f"Backup {escape(what)}: {checked.files:,} files, {checked.bytes / 1e6:,.1f} MB, "
        f"{checked.parquet_rows:,} events read back, {sum(checked.tables.values()):,} "
        f"database rows in {len(checked.tables)} tables, {seconds:.2f} s",
        highlight=False,
    )


def drill(
    backup_dir: Annotated[
        Path | None,
        typer.Option(
            "--backup-dir",
            help="Where the drill's backup goes (default: beside "
            "the data folder, `<folder>.drill-backup`; updated in place).",
        ),
    ] = None,
    data_dir: DataDir = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds the restored pipeline has to catch up.")
    ] = 600.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Disaster-recovery drill: back up, lose the data folder (moved aside, kept), restore
    and verify, resume ingest; prints RPO (acknowledged events lost) and RTO (seconds to
    serving again). Exit code 1 when an acknowledged event was lost, 2 when the drill could
    not run (the original folder is then put back)."""
    from vigil.serve.drill import drill as run_drill

    settings = settings_with(data_dir=data_dir)
    if settings.database_url:
        raise fail("the drill restores the data folder's own SQLite database: unset the URL")
    folder = settings.data_dir
    target = backup_dir or folder.with_name(folder.name + ".drill-backup")
    try:
        with err.status("Drill…") as status:
            report = run_drill(
                settings,
                target,
                timeout=timeout,
                progress=lambda step: status.update(f"Drill: {step}…"),
            )
    except (VigilError, OSError) as exc:
        raise fail(f"drill failed: {exc}") from None
    if as_json:
        figures = {k: str(v) if isinstance(v, Path) else v for k, v in vars(report).items()}
        sys.stdout.write(json.dumps(figures) + "\n")
        if report.rpo_events:
            raise typer.Exit(1)
        return
    rows = [
        ("acknowledged events", f"{report.acknowledged:,}"),
        ("stored after restore", f"{report.stored:,}"),
        ("set aside with a reason", f"{report.set_aside:,}"),
        ("RPO (acknowledged events lost)", f"{report.rpo_events:,}"),
        ("RTO (loss to serving again)", f"{report.rto_seconds:.2f} s"),
        ("backup", f"{report.backup_seconds:.2f} s, {report.backup_bytes / 1e6:,.1f} MB"),
        ("restore and verify", f"{report.restore_seconds:.2f} s"),
        ("catch up after restore", f"{report.catch_up_seconds:.2f} s"),
        ("alerts before / after", f"{report.alerts_before:,} / {report.alerts_after:,}"),
    ]
    out.print(figures_table(f"Recovery drill of {escape(str(folder))}", rows))
    out.print(
        f"The lost folder was kept at {escape(str(report.lost_folder))}: delete it once satisfied.",
        highlight=False,
    )
    if report.rpo_events:
        raise typer.Exit(1)
