"""The detect stage's worker processes: `pipeline.workers` of them, each with an `Analyzer`
(parsing, the Sigma engine, the indicator matcher, its own event store writer) built once,
answering micro-batches in order; the in-order half (correlation, alerts) stays in the
server process. The pool is the detection core's (`vigil.detect.workers`, as `vigil scan`
uses); this module says what a detect worker is built from.

Workers are spawned (the server has threads): each gets the compiled rule plan as one
pickle, its own name for the event store (`w0`, `w1`, ...) and the state database's URL for
the live indicators. The pipeline calls `analyze(records)`, `flush()` (write what the event
store holds), `reset()` (drop what it holds unwritten) on them.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vigil.detect.sigma import LoadedRules
from vigil.detect.workers import WorkerPool


@dataclass(frozen=True)
class WorkerSetup:
    """What a detect worker builds its analyzer from (sent pickled, once)."""

    plan: bytes  # pickled (Plan, LogsourceMap)
    events_folder: Path | None  # None: events are not stored
    database_url: str | None  # None: no indicators
    name: str


def analyzer_pool(
    size: int, loaded: LoadedRules, *, events_folder: Path | None, database_url: str | None
) -> WorkerPool:
    """`size` detect workers; the pool's `infos` hold each one's count of live indicators."""
    plan = pickle.dumps((loaded.plan, loaded.engine.logsources), protocol=pickle.HIGHEST_PROTOCOL)
    setups = [WorkerSetup(plan, events_folder, database_url, f"w{i}") for i in range(size)]
    return WorkerPool(build_analyzer, setups, start="spawn", name="vigil-worker")


def build_analyzer(setup: WorkerSetup) -> tuple[Any, int]:
    """A detect worker's analyzer, and how many live indicators it matches."""
    from vigil.detect.ioc import IntelScan
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
    count = intel.matcher.count if intel is not None else 0
    return Analyzer(loaded, events, intel), count
