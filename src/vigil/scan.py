"""`vigil scan`: hunt through log files with Sigma rules and return a timeline of detections."""

from __future__ import annotations

import gc
import itertools
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from vigil.detect import Detection, level_rank
from vigil.detect.core import DetectionCore, collector_tuned, correlation_detection
from vigil.detect.ioc import IntelScan
from vigil.detect.sigma import (
    CorrelationEngine,
    Fired,
    Hit,
    LoadedRules,
    RegexStats,
    load_rules,
)
from vigil.detect.workers import WorkerPool
from vigil.events.records import detected_now
from vigil.ingest import FileReport, Input, discover, read_events
from vigil.intel.store import Sighting


@dataclass(frozen=True)
class ReadOptions:
    """How inputs are read: a format forced instead of detected (`vigil.ingest.FORMATS`), and
    whether rejected records are kept whole (for `--rejects`)."""

    log_format: str | None = None
    keep_rejects: bool = False


class Progress(Protocol):
    """What a scan reports as it goes (the CLI draws a progress bar from it)."""

    def start(self, files: int) -> None: ...
    def file_started(self, name: str) -> None: ...
    def advanced(self, events: int, detections: int) -> None: ...
    def file_done(self, report: FileReport) -> None: ...


@dataclass
class ScanResult:
    detections: list[Detection]
    files: list[FileReport]
    rules: LoadedRules
    parse_seconds: float = 0.0
    match_seconds: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def totals(self) -> dict[str, Any]:
        return {
            "files": len(self.files),
            "records_read": sum(f.records_read for f in self.files),
            "records_rejected": sum(f.records_rejected for f in self.files),
            "detections": len(self.detections),
            "load_seconds": round(self.rules.seconds, 3),
            "parse_seconds": round(self.parse_seconds, 3),
            "match_seconds": round(self.match_seconds, 3),
        }

    def stats(self) -> dict[str, Any]:
        plan = self.rules.plan
        return {
            "files": [f.as_dict() for f in self.files],
            "totals": self.totals,
            "rules": {
                "files": plan.files,
                "rules": len(plan.rules),
                "correlations": len(plan.correlations),
                "unusable": len(plan.problems),
                "from_cache": self.rules.from_cache,
            },
            "engine": dict(self.counters),
        }


def scan_inputs(
    paths: Sequence[str | Path],
    loaded: LoadedRules,
    *,
    min_level: str | None = None,
    progress: Progress | None = None,
    jobs: int = 1,
    read: ReadOptions | None = None,
    intel: IntelScan | None = None,
) -> ScanResult:
    """Read every log under `paths`, match it against the loaded rules (and the live
    indicators, with `intel`), return the timeline. Indicator hits are recorded as sightings.

    With `jobs` > 1, files are read and matched in that many worker processes (forked, so
    they share the loaded rules); correlation and the timeline are built here either way."""
    with collector_tuned():
        return _scan(paths, loaded, min_level, progress, jobs, read or ReadOptions(), intel)


@dataclass
class _InputResult:
    """What scanning one input gave; picklable, so worker processes can send it back."""

    report: FileReport
    detections: list[Detection] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    untimed: int = 0
    parse_seconds: float = 0.0
    match_seconds: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)
    sightings: list[Sighting] = field(default_factory=list)


class _Batches(Protocol):
    def __call__(self, events: int, detections: int) -> None: ...


def _scan_input(
    source: Input,
    core: DetectionCore,
    on_batch: _Batches | None = None,
    read: ReadOptions | None = None,
) -> _InputResult:
    loaded, intel = core.loaded, core.intel
    engine = loaded.engine
    read = read or ReadOptions()
    out = _InputResult(FileReport(source.name, forced=read.log_format, keep_raw=read.keep_rejects))
    before = dict(engine.counters)
    timeouts_before = RegexStats.timeouts
    batches = read_events(source, out.report)
    while True:
        started = time.perf_counter()
        batch = next(batches, None)
        out.parse_seconds += time.perf_counter() - started
        if batch is None:
            break
        routes_seen = engine.routes_built
        started = time.perf_counter()
        found = core.detect(batch)
        out.untimed += found.untimed
        out.hits.extend(hit for hit, _ in found.hits)
        out.detections.extend(detection for detection, _ in found.detections)
        if intel is not None:
            out.sightings.extend(intel.sighting(d) for d in found.indicators)
        out.report.detections += len(found.detections)
        out.match_seconds += time.perf_counter() - started
        if engine.routes_built != routes_seen:
            # rule tests built for new kinds of events live on: keep the GC off them too
            gc.freeze()
        if on_batch:
            on_batch(len(batch), len(found.detections))
    out.counters = {name: engine.counters[name] - before.get(name, 0) for name in engine.counters}
    out.counters["regex_timeouts"] = RegexStats.timeouts - timeouts_before
    return out


class _FileScanner:
    """A scan worker: reads and matches the inputs it is given by their index (a forked
    worker inherits the inputs, the loaded rules and the parent's collector tuning)."""

    def __init__(self, inputs: list[Input], core: DetectionCore, read: ReadOptions) -> None:
        self.inputs, self.core, self.read = inputs, core, read

    def scan(self, index: int) -> tuple[int, _InputResult]:
        return index, _scan_input(self.inputs[index], self.core, read=self.read)

    def close(self) -> None:
        pass


def _file_scanner(
    setup: tuple[list[Input], DetectionCore, ReadOptions],
) -> tuple[_FileScanner, None]:
    return _FileScanner(*setup), None


def _scan(
    paths: Sequence[str | Path],
    loaded: LoadedRules,
    min_level: str | None,
    progress: Progress | None,
    jobs: int,
    read: ReadOptions,
    intel: IntelScan | None = None,
) -> ScanResult:
    inputs = discover(paths)
    plan = loaded.plan
    correlation = CorrelationEngine(plan.correlations)
    core = DetectionCore(loaded, intel=intel, min_level=min_level)
    threshold = core.threshold
    result = ScanResult([], [], loaded)
    if progress:
        progress.start(len(inputs))
    parts: list[_InputResult] = []
    if jobs > 1 and len(inputs) > 1:
        parts = _scan_parallel(inputs, core, progress, jobs, read)
    else:
        for source in inputs:
            if progress:
                progress.file_started(source.name)
            part = _scan_input(source, core, progress.advanced if progress else None, read)
            parts.append(part)
            if progress:
                progress.file_done(part.report)
    hits: list[Hit] = []
    counters: dict[str, int] = {"correlation_hits_without_time": 0}
    sightings: list[Sighting] = []
    for part in parts:
        sightings.extend(part.sightings)
        result.files.append(part.report)
        result.detections.extend(part.detections)
        hits.extend(part.hits)
        result.parse_seconds += part.parse_seconds
        result.match_seconds += part.match_seconds
        counters["correlation_hits_without_time"] += part.untimed
        for name, value in part.counters.items():
            counters[name] = counters.get(name, 0) + value
    started = time.perf_counter()
    detected_at = detected_now()
    hits.sort(key=lambda h: h.time)
    fired_all: list[Fired] = []
    for hit in hits:
        fired_all.extend(correlation.feed(hit))
    fired_all.extend(correlation.finish())
    for fired in fired_all:
        if fired.spec.output and level_rank(fired.spec.level) >= threshold:
            result.detections.append(correlation_detection(fired, detected_at))
    result.match_seconds += time.perf_counter() - started
    result.detections.sort(key=_timeline_key)
    if intel is not None:
        counters["indicator_hits"] = len(sightings)
        counters["sightings_recorded"] = intel.store.record_sightings(sightings)
    result.counters = counters
    return result


def _scan_parallel(
    inputs: list[Input],
    core: DetectionCore,
    progress: Progress | None,
    jobs: int,
    read: ReadOptions,
) -> list[_InputResult]:
    """Inputs spread over forked workers of the detection core's pool (they inherit the
    loaded rules), one file each at a time, the next to whichever is done first; results
    are put back in input order, so the timeline does not depend on which worker read what."""
    size = min(jobs, len(inputs))
    pool = WorkerPool(_file_scanner, [(inputs, core, read)] * size, start="fork", name="vigil-scan")
    parts: list[_InputResult | None] = [None] * len(inputs)
    waiting = iter(range(len(inputs)))
    finished = False
    try:
        for index in itertools.islice(waiting, size):
            pool.submit("scan", index)
        while pool.owed:
            for worker in pool.answered(None):
                index, part = pool.result(worker)
                parts[index] = part
                following = next(waiting, None)
                if following is not None:
                    pool.submit("scan", following)
                if progress:
                    progress.file_started(part.report.path)
                    progress.advanced(part.report.records_read, len(part.detections))
                    progress.file_done(part.report)
        finished = True
    finally:
        pool.stop(timeout=30.0 if finished else 1.0)  # interrupted: do not wait for files
    return [p for p in parts if p is not None]


def _timeline_key(d: Detection) -> tuple[Any, ...]:
    return (d.time is None, d.time or 0.0, d.source_file, str(d.record_id), d.rule_title)


def scan(
    paths: Iterable[str | Path],
    rules: Iterable[str | Path],
    *,
    min_level: str | None = None,
    placeholders: dict[str, list[str]] | None = None,
    use_cache: bool = True,
) -> ScanResult:
    """Scan logs with the Sigma rules in `rules` folders.

    >>> result = vigil.scan(["Security.evtx"], ["sigma/rules"])  # doctest: +SKIP
    >>> [d.rule_title for d in result.detections]  # doctest: +SKIP
    """
    loaded = load_rules(rules, placeholders=placeholders, use_cache=use_cache)
    return scan_inputs(list(paths), loaded, min_level=min_level)
