"""Intake: events into the `events` stream, from the API (with the backlog limit checked and
taken at once), from tailed files and from log files fed by `vigil serve --feed`; records
refused at intake set aside with their reason."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from vigil.config import Settings
from vigil.errors import (
    InputError,
    Overloaded,
    StorageFull,
    StorageUnavailable,
    TooLarge,
    storage_problem,
)
from vigil.ingest import Problem
from vigil.serve.metrics import PipelineMetrics
from vigil.serve.pipeline import EVENT, JSON, LINE, event_record

log = logging.getLogger("vigil.serve")
INTAKE_MEMORY_S = 30.0  # /health reports a refused ingest for this long
ROOM = 4 << 20  # bytes free on the data folder's disk before ingest is tried again


@dataclass(frozen=True, slots=True)
class IngestAck:
    """Events accepted: on disk (the intake log) before this is returned."""

    accepted: int
    first_offset: int | None
    last_offset: int | None


def has_room(folder: Path) -> bool:
    try:
        stat = os.statvfs(folder)
    except OSError:
        return True  # cannot tell: let the write say
    return stat.f_bavail * stat.f_frsize >= ROOM


class EventsOut(Protocol):
    """Where intake puts events: the `events` stream before the detect stage (`Pipeline`,
    embedded), or its partitions (`vigil.serve.partitions.PartitionedEvents`)."""

    def publish(
        self, kind: bytes, source: str, payloads: Sequence[bytes | bytearray]
    ) -> tuple[int, int]:
        """Durable on return: the offsets of the first and the last."""
        ...

    def lag(self) -> int:
        """Events published and not yet detected on."""
        ...


class Intake:
    def __init__(
        self,
        settings: Settings,
        events: EventsOut,
        metrics: PipelineMetrics,
        set_aside: Callable[[list[dict[str, Any]]], None],
    ) -> None:
        self.settings = settings
        self.events = events
        self.metrics = metrics
        self._set_aside = set_aside
        self._lock = threading.Lock()
        self._reserved = 0  # events being written to the intake stream now
        self._problem: StorageUnavailable | None = None  # why the last ingest failed
        self._problem_at = 0.0

    @property
    def problem(self) -> StorageUnavailable | None:
        """Why ingest was last refused by storage, while that is recent."""
        if self._problem is not None and time.monotonic() - self._problem_at < INTAKE_MEMORY_S:
            return self._problem
        return None

    def check(self, count: int = 1) -> None:
        """Raise what `ingest` would for `count` events before anything is read: Overloaded
        when the backlog is full, StorageFull while the data folder's disk has no room."""
        with self._lock:
            self._room_for(count)
        problem = self._problem
        if isinstance(problem, StorageFull) and not has_room(self.settings.data_dir):
            raise problem

    def _room_for(self, count: int) -> None:
        """Overloaded unless `count` more events fit the backlog (with the lock held)."""
        lag = self.events.lag() + self._reserved
        if lag + count > self.settings.pipeline.max_lag:
            self.metrics.overloaded.inc()
            raise Overloaded(f"{lag:,} events waiting for detection")

    def ingest(self, lines: Sequence[bytes | bytearray], *, source: str) -> IngestAck:
        count = len(lines)
        if not count:
            return IngestAck(0, None, None)
        limit = self.settings.pipeline.max_lag
        if count > limit:
            raise TooLarge(
                f"{count:,} events in one request; the backlog holds {limit:,}: send fewer"
            )
        with self._lock:  # checked and taken at once: concurrent senders cannot overshoot
            self._room_for(count)
            self._reserved += count
        try:
            first, last = self.events.publish(JSON, source, lines)
        except Exception as exc:
            storage = storage_problem(exc)
            if storage is None:
                raise
            self._problem, self._problem_at = storage, time.monotonic()
            log.warning("ingest refused: %s", storage)
            raise storage from exc
        finally:
            with self._lock:
                self._reserved -= count
        self._problem = None
        self.metrics.events_in.labels(source=source.split(":", 1)[0]).inc(count)
        self.metrics.lag.set(self.events.lag())
        return IngestAck(count, first, last)

    def set_aside(self, source: str, rejected: Sequence[tuple[Problem, bytes | bytearray]]) -> None:
        """Records refused at intake (too deep, ...) into the rejects file, with the reason."""
        now = time.time()
        self._set_aside(
            [
                {"source": source, "received": now, "record": problem.record,
                 "reason": problem.reason, "raw": raw.decode("utf-8", "replace")}
                for problem, raw in rejected
            ]
        )  # fmt: skip
        self.metrics.events_rejected.labels(reason="intake").inc(len(rejected))

    def feed(self, paths: list[Path], on_progress: Callable[[int], None] | None = None) -> int:
        """Read log files (any format `vigil scan` reads) into the intake stream, each event
        with what its reader knew of it; waits while the pipeline is over its backlog limit.
        Returns the events sent."""
        from vigil.ingest import FileReport, discover, read_events

        sent = 0
        for source in discover(paths):
            report = FileReport(source.name)
            for batch in read_events(source, report):
                lines = [event_record(e) for e in batch]
                while self.events.lag() + len(lines) > self.settings.pipeline.max_lag:
                    time.sleep(0.2)
                self.events.publish(EVENT, f"file:{Path(source.name).name}", lines)
                sent += len(lines)
                if on_progress is not None:
                    on_progress(sent)
        return sent

    def tail(self, path: Path, stop: threading.Event) -> None:
        """Follow a log file into the intake stream until `stop`. Its read position is
        saved only after the lines are in the stream (on disk): a restart re-reads at most
        what was not."""
        from vigil.ingest.tail import FileTail

        states = self.settings.data_dir / "tails"
        states.mkdir(parents=True, exist_ok=True)
        name = "".join(c if c.isalnum() or c in "._-" else "_" for c in str(path))
        try:
            tail = FileTail(path, states / f"{name}.state")
        except InputError:
            log.exception("cannot tail %s", path)
            return
        with tail:
            while not stop.is_set():
                batch = tail.read_batch(1000)
                if batch:
                    self.events.publish(LINE, f"tail:{path.name}", [b.data for b in batch])
                    tail.commit()
                else:
                    stop.wait(0.5)
