"""Worker processes for the CPU-bound half of detection (reading, parsing, the Sigma engine,
the indicator matcher, the event store): Python holds one core per process, so `vigil scan`
(files) and the detect stage of `vigil serve` (micro-batches of the `events` stream) run
that work in this one kind of pool.

Each worker builds what it works with once, `build(setup)` → `(state, info)` (`info` is
reported back, the pool keeps it in `infos`), then answers the messages on its own pipe,
in order:

- `(method, args)` → `("done", state.method(*args))`
- `("stop",)` → `state.close()`, then it exits.

Workers start by `fork` (they inherit `setup` as it is: a scan's loaded rules, at no cost)
or by `spawn` (`setup` is pickled: a process with threads, the server, must spawn). A
failure on a message is answered `("failed", (traceback, storage))`, `storage` saying when
the data folder refused the write (full, read-only), and the worker goes on. A worker that
fails makes the pool's calls raise `WorkerError` (`died` when the process is gone).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import traceback
from collections.abc import Callable, Sequence
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, Literal

from vigil.detect.core import tune_collector
from vigil.errors import StorageFull, StorageUnavailable, VigilError, storage_problem

log = logging.getLogger("vigil.workers")
STARTUP_SECONDS = 300.0  # building a worker can load a large indicator set

Build = Callable[[Any], tuple[Any, Any]]  # setup → (state, info)


class WorkerError(VigilError):
    """A worker died or failed on a message (`died`: the process is gone; `storage`: the
    failure was the data folder refusing writes)."""

    def __init__(
        self, message: str, *, died: bool = False, storage: StorageUnavailable | None = None
    ) -> None:
        super().__init__(message)
        self.died = died
        self.storage = storage
        if storage is not None:
            self.__cause__ = storage


class WorkerPool:
    """One worker process per setup in `setups`, each with its own pipe."""

    def __init__(
        self,
        build: Build,
        setups: Sequence[Any],
        *,
        start: Literal["fork", "spawn"] = "spawn",
        name: str = "vigil-worker",
    ) -> None:
        if not setups:
            raise ValueError("a worker pool has at least one worker")
        self.size = len(setups)
        self.infos: list[Any] = []  # what each worker's build reported
        self._build = build
        self._setups = list(setups)
        self._start = start
        self._name = name
        self._context = get_context("fork") if start == "fork" else get_context("spawn")
        self._workers: list[tuple[BaseProcess, Connection]] = []
        self._busy = [0] * self.size  # messages sent and not yet answered, per worker
        self.start()

    def start(self) -> None:
        for index, setup in enumerate(self._setups):
            ours, theirs = self._context.Pipe()
            process = self._context.Process(
                target=_worker_main,
                args=(theirs, self._build, setup, self._start == "spawn"),
                name=f"{self._name}-{index}",
                daemon=True,
            )
            process.start()
            theirs.close()
            self._workers.append((process, ours))
        self.infos = [self._receive(i, "ready", STARTUP_SECONDS)[1] for i in range(self.size)]
        self._busy = [0] * self.size

    def submit(self, method: str, *args: Any) -> int:
        """Ask the least busy worker to run `method(*args)`; which worker took it."""
        index = min(range(self.size), key=self._busy.__getitem__)
        self._send(index, (method, args))
        self._busy[index] += 1
        return index

    def ready(self, index: int, timeout: float) -> bool:
        """Whether worker `index` has answered (waiting up to `timeout` seconds); a worker
        that died counts as ready: `result` then says so."""
        _process, conn = self._workers[index]
        try:
            return conn.poll(timeout)
        except (EOFError, OSError):
            return True

    def answered(self, timeout: float | None = None) -> list[int]:
        """The busy workers that have answered (waiting up to `timeout` for one)."""
        busy = {conn: i for i, (_, conn) in enumerate(self._workers) if self._busy[i]}
        if not busy:
            return []
        return sorted(busy[conn] for conn in wait(list(busy), timeout))  # type: ignore[index]

    @property
    def owed(self) -> int:
        """Messages given out and not yet answered."""
        return sum(self._busy)

    def result(self, index: int) -> Any:
        """The answer to the oldest message given to worker `index`."""
        try:
            _, value = self._receive(index, "done")
        finally:
            self._busy[index] -= 1
        return value

    def call_all(self, method: str, *args: Any) -> list[Any]:
        """Every worker runs `method(*args)` (after what it was given); their answers."""
        for index in range(self.size):
            self._send(index, (method, args))
            self._busy[index] += 1
        return [self.result(index) for index in range(self.size)]

    def drop_owed(self) -> None:
        """Read and drop every answer still owed (a worker that died raises)."""
        for index in range(self.size):
            while self._busy[index] > 0:
                self._busy[index] -= 1
                try:
                    self._receive(index, "done", STARTUP_SECONDS)
                except WorkerError as exc:
                    if exc.died:
                        raise

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
            raise WorkerError(f"worker {index} is gone: {exc}", died=True) from exc

    def _receive(self, index: int, expected: str, timeout: float | None = None) -> Any:
        process, conn = self._workers[index]
        try:
            if timeout is not None and not conn.poll(timeout):
                raise WorkerError(f"worker {index} did not answer in {timeout:.0f}s", died=True)
            kind, value = conn.recv()
        except (EOFError, OSError) as exc:
            raise WorkerError(
                f"worker {index} died (exit code {process.exitcode})", died=True
            ) from exc
        if kind == "failed":
            text, storage = value
            problem = None
            if storage is not None:
                full, reason = storage
                problem = (StorageFull if full else StorageUnavailable)(reason)
            raise WorkerError(f"worker {index} failed: {text}", storage=problem)
        if kind != expected:
            raise WorkerError(f"worker {index} said {kind!r}, not {expected!r}")
        return kind, value


def _worker_main(conn: Connection, build: Build, setup: Any, spawned: bool) -> None:
    """A worker's life: build its state, then answer messages until told to stop."""
    # Ctrl-C reaches the whole process group: the parent stops its workers itself, after
    # what they were given
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        state, info = build(setup)
        # what is built lives as long as the process: out of the collector's way (a forked
        # worker inherits its parent's tuning, and collecting would copy every page)
        tune_collector(collect=spawned)
        conn.send(("ready", info))
    except Exception as exc:
        conn.send(("failed", _failure(exc)))
        return
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            state.close()  # the parent is gone: finish what was handed over
            return
        if message[0] == "stop":
            state.close()
            return
        method, args = message
        try:
            conn.send(("done", getattr(state, method)(*args)))
        except Exception as exc:
            conn.send(("failed", _failure(exc)))


def _failure(exc: BaseException) -> tuple[str, tuple[bool, str] | None]:
    """A failure as the pipe carries it: the traceback, and (full?, reason) when the data
    folder refused the write."""
    storage = storage_problem(exc)
    kind = None if storage is None else (isinstance(storage, StorageFull), str(storage))
    return traceback.format_exc(limit=5), kind


__all__ = ["STARTUP_SECONDS", "WorkerError", "WorkerPool"]
