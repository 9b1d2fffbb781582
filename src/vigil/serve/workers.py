"""Worker processes for the per-event half of detection (`Analyzer`): parsing, the Sigma
engine, the indicator matcher and the event store are CPU-bound Python, so `vigil serve`
runs them in `pipeline.workers` processes, one micro-batch each at a time, and keeps the
in-order half (correlation, alerts) in the server process.

Each worker is started (spawn: the server has threads) with the compiled rule plan as one
pickle, its own name for the event store (`w0`, `w1`, ...) and the state database's URL for
the live indicators. It answers every message on its pipe in order:

- `("batch", records)` → `("done", Analysis)`
- `("flush",)` → `("flushed", None)` once what its event store holds is written
- `("reset",)` → `("reset", None)` once it has dropped what its event store holds unwritten
- `("stop",)` → writes what it holds and exits.

A failure on a message is answered `("failed", (traceback, storage))`, `storage` saying when
the data folder refused the write (full, read-only), and the worker goes on. A worker that
fails makes the pool's calls raise `WorkerError`; the pipeline then resets the pool (cheap:
the workers stay) or, when a worker died, restarts it, and goes on from the stream's
acknowledged position.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import pickle
import signal
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from vigil.detect.core import tune_collector
from vigil.detect.sigma import LoadedRules
from vigil.errors import StorageFull, StorageUnavailable, VigilError, storage_problem

log = logging.getLogger("vigil.workers")
STARTUP_SECONDS = 300.0  # loading a large indicator set takes a while


class WorkerError(VigilError):
    """A detection worker died or failed on a batch (`died`: the process is gone; `storage`:
    the failure was the data folder refusing writes)."""

    def __init__(
        self, message: str, *, died: bool = False, storage: StorageUnavailable | None = None
    ) -> None:
        super().__init__(message)
        self.died = died
        self.storage = storage
        if storage is not None:
            self.__cause__ = storage


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker needs to build its analyzer (sent pickled, once)."""

    plan: bytes  # pickled (Plan, LogsourceMap)
    events_folder: Path | None  # None: events are not stored
    database_url: str | None  # None: no indicators
    name: str


class WorkerPool:
    """`size` worker processes, each with its own pipe."""

    def __init__(
        self,
        size: int,
        loaded: LoadedRules,
        *,
        events_folder: Path | None,
        database_url: str | None,
    ) -> None:
        if size < 1:
            raise ValueError("a worker pool has at least one worker")
        self.size = size
        self._plan = pickle.dumps(
            (loaded.plan, loaded.engine.logsources), protocol=pickle.HIGHEST_PROTOCOL
        )
        self._events_folder = events_folder
        self._database_url = database_url
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[tuple[BaseProcess, Connection]] = []
        self._busy = [0] * size
        self.indicators = 0  # the live indicators each worker matches
        self.start()

    def start(self) -> None:
        for index in range(self.size):
            ours, theirs = self._context.Pipe()
            setup = WorkerSetup(self._plan, self._events_folder, self._database_url, f"w{index}")
            process = self._context.Process(
                target=_worker_main, args=(theirs,), name=f"vigil-worker-{index}", daemon=True
            )
            process.start()
            theirs.close()
            ours.send(setup)
            self._workers.append((process, ours))
        for index in range(self.size):
            _, count = self._receive(index, "ready", STARTUP_SECONDS)
            self.indicators = int(count)
        self._busy = [0] * self.size

    def submit(self, records: Sequence[tuple[int, bytes]]) -> int:
        """Give a micro-batch to the least busy worker; which one took it."""
        index = min(range(self.size), key=self._busy.__getitem__)
        self._send(index, ("batch", records))
        self._busy[index] += 1
        return index

    def result(self, index: int) -> Any:
        """The `Analysis` of the oldest batch given to worker `index`."""
        try:
            _, analysis = self._receive(index, "done")
        finally:
            self._busy[index] -= 1
        return analysis

    def ready(self, index: int, timeout: float) -> bool:
        """Whether worker `index` has answered (waiting up to `timeout` seconds); a worker
        that died counts as ready: `result` then says so."""
        _process, conn = self._workers[index]
        try:
            return conn.poll(timeout)
        except (EOFError, OSError):
            return True

    def reset(self) -> None:
        """After a failed batch: every worker drops what it was given (answers still owed
        are read and dropped) and what its event store holds unwritten; the workers stay.
        A worker that died or does not answer has the pool restarted instead."""
        try:
            for index in range(self.size):
                while self._busy[index] > 0:
                    self._busy[index] -= 1
                    try:
                        self._receive(index, "done", STARTUP_SECONDS)
                    except WorkerError as exc:
                        if exc.died:
                            raise
                self._send(index, ("reset",))
            for index in range(self.size):
                self._receive(index, "reset", STARTUP_SECONDS)
        except WorkerError:
            self.restart()

    def flush(self) -> None:
        """Every worker writes what its event store holds (nothing may be in flight)."""
        for index in range(self.size):
            self._send(index, ("flush",))
        for index in range(self.size):
            self._receive(index, "flushed")

    def stop(self, timeout: float = 30.0) -> None:
        for _, conn in self._workers:
            with contextlib.suppress(OSError, ValueError):
                conn.send(("stop",))
        for process, conn in self._workers:
            process.join(timeout)
            if process.is_alive():
                process.kill()
                process.join()
            conn.close()
        self._workers = []

    def restart(self) -> None:
        self.stop(timeout=5.0)
        self.start()

    @property
    def pids(self) -> list[int]:
        return [process.pid for process, _ in self._workers if process.pid is not None]

    def _send(self, index: int, message: tuple[Any, ...]) -> None:
        _process, conn = self._workers[index]
        try:
            conn.send(message)
        except (OSError, ValueError) as exc:
            raise WorkerError(f"detection worker {index} is gone: {exc}", died=True) from exc

    def _receive(self, index: int, expected: str, timeout: float | None = None) -> Any:
        process, conn = self._workers[index]
        try:
            if timeout is not None and not conn.poll(timeout):
                raise WorkerError(
                    f"detection worker {index} did not answer in {timeout:.0f}s", died=True
                )
            kind, value = conn.recv()
        except (EOFError, OSError) as exc:
            code = process.exitcode
            raise WorkerError(
                f"detection worker {index} died (exit code {code})", died=True
            ) from exc
        if kind == "failed":
            text, storage = value if isinstance(value, tuple) else (value, None)
            problem = None
            if storage is not None:
                full, reason = storage
                problem = (StorageFull if full else StorageUnavailable)(reason)
            raise WorkerError(f"detection worker {index} failed: {text}", storage=problem)
        if kind != expected:
            raise WorkerError(f"detection worker {index} said {kind!r}, not {expected!r}")
        return kind, value


def quiet_gc() -> None:
    """The detection core's collector tuning, for the life of the process."""
    tune_collector(collect=True)


def _worker_main(conn: Connection) -> None:
    """A worker's life: build the analyzer, then answer batches until told to stop."""
    # Ctrl-C reaches the whole process group: the server stops its workers itself, after
    # finishing what they were given
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        setup: WorkerSetup = conn.recv()
        analyzer = _analyzer(setup)
        intel = analyzer.core.intel
        count = intel.matcher.count if intel is not None else 0
        quiet_gc()
        conn.send(("ready", count))
    except Exception as exc:
        conn.send(("failed", _failure(exc)))
        return
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            analyzer.close()  # the server is gone: store what was handed over
            return
        try:
            if message[0] == "batch":
                conn.send(("done", analyzer.analyze(message[1])))
            elif message[0] == "flush":
                analyzer.flush()
                conn.send(("flushed", None))
            elif message[0] == "reset":
                analyzer.reset()
                conn.send(("reset", None))
            else:
                analyzer.close()
                return
        except Exception as exc:
            conn.send(("failed", _failure(exc)))


def _failure(exc: BaseException) -> tuple[str, tuple[bool, str] | None]:
    """A failure as the pipe carries it: the traceback, and (full?, reason) when the data
    folder refused the write."""
    storage = storage_problem(exc)
    kind = None if storage is None else (isinstance(storage, StorageFull), str(storage))
    return traceback.format_exc(limit=5), kind


def _analyzer(setup: WorkerSetup) -> Any:
    from vigil.detect.ioc import IntelScan
    from vigil.detect.sigma import LoadedRules
    from vigil.detect.sigma.engine import Engine
    from vigil.intel.store import IndicatorStore
    from vigil.serve.pipeline import Analyzer
    from vigil.store import state_engine
    from vigil.store.events import EventStore

    plan, logsources = pickle.loads(setup.plan)  # noqa: S301 - from our own parent process
    loaded = LoadedRules(Engine(plan, logsources), plan, 0.0, True)
    events = (
        EventStore(setup.events_folder, name=setup.name)
        if setup.events_folder is not None
        else None
    )
    intel = None
    if setup.database_url is not None:
        intel = IntelScan.load(IndicatorStore(state_engine(setup.database_url)))
    return Analyzer(loaded, events, intel)
