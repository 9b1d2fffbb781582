"""Scheduled backups in `vigil serve` (`[backup] dest`, `every_s`): the data folder backed
up incrementally into one folder, in a thread of its own; the last result in `/health` and
`/metrics`. A failed backup is logged, counted and reported, and tried again at the next
time; it never stops the service."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from vigil.config import Settings, config_file
from vigil.store.backup import backup

log = logging.getLogger(__name__)


class ScheduledBackup:
    def __init__(self, settings: Settings, registry: CollectorRegistry) -> None:
        assert settings.backup.dest is not None
        self.dest: Path = settings.backup.dest
        self.every = settings.backup.every_s
        self.settings = settings
        self.last: dict[str, Any] | None = None  # the last run's result
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = Counter(
            "vigil_backup_runs", "Scheduled backups run", ["result"], registry=registry
        )
        self.last_ok = Gauge(
            "vigil_backup_last_ok", "1 when the last backup succeeded", registry=registry
        )
        self.last_success = Gauge(
            "vigil_backup_last_success_timestamp_seconds",
            "When the last successful backup finished (Unix time)",
            registry=registry,
        )
        self.duration = Gauge(
            "vigil_backup_last_duration_seconds", "How long the last backup took", registry=registry
        )
        self.size = Gauge(
            "vigil_backup_size_bytes", "Size of the last successful backup", registry=registry
        )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="vigil-backup", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        while not self.stopping.wait(self.every):
            self.run()

    def run(self) -> dict[str, Any]:
        """One backup now; its result (also kept as `last`)."""
        started = time.monotonic()
        result: dict[str, Any] = {"dest": str(self.dest), "started": time.time()}
        try:
            manifest = backup(
                self.settings.data_dir,
                self.dest,
                database_url=self.settings.database_url,
                config=config_file(),
            )
        except Exception as exc:  # reported and retried, never fatal to the service
            log.error("scheduled backup into %s failed: %s", self.dest, exc)
            result.update(ok=False, error=str(exc))
            self.runs.labels(result="failed").inc()
            self.last_ok.set(0)
        else:
            size = manifest.size
            result.update(
                ok=True,
                files=len(manifest.files),
                copied=manifest.copied,
                bytes=size,
                events=manifest.queries["events"],
            )
            self.runs.labels(result="ok").inc()
            self.last_ok.set(1)
            self.last_success.set(time.time())
            self.size.set(size)
        result["seconds"] = round(time.monotonic() - started, 3)
        self.duration.set(result["seconds"])
        self.last = result
        return result


__all__ = ["ScheduledBackup"]
