"""The one detection core: events in, detections and correlation hits out. `vigil scan`,
the detect stage of `vigil serve` and Sigma retro-hunts all call it, so a rule finds the
same events whichever runs it.

    core = DetectionCore(loaded, intel=intel)
    found = core.detect(batch)          # Found: (detection, event) pairs and hits
    for fired in correlation.feed(hit): ...
    correlation_detection(fired, detected_now())

Also here: the one tuning of the garbage collector for long detection runs."""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vigil.detect.detection import Detection, level_rank
from vigil.detect.sigma import (
    CorrelationEngine,
    CorrelationSpec,
    Fired,
    Hit,
    LoadedRules,
    Match,
    RuleMeta,
)
from vigil.events import HOST_FIELDS, Event, format_time
from vigil.events.records import detected_now

if TYPE_CHECKING:
    from vigil.detect.ioc import IntelScan

# Collections of the young generation this rarely (a batch makes and drops tens of thousands
# of objects, and each collection would otherwise walk them all).
GC_THRESHOLD = (100_000, 20, 20)


def tune_collector(*, collect: bool = False) -> tuple[int, int, int]:
    """Leave what is loaded (rules, indicators: hundreds of thousands of objects) out of
    garbage collection and collect less often; the thresholds it replaced. `collect` first
    frees what is garbage already (a long-lived process, once: it costs a few tenths of a
    second with the rules loaded)."""
    before = gc.get_threshold()
    if collect:
        gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    return before


@contextmanager
def collector_tuned() -> Iterator[None]:
    """`tune_collector` for the length of a run (a scan)."""
    before = tune_collector()
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


@dataclass
class Found:
    """What one batch gave: detections at or above the level asked for, each with its event;
    every indicator detection whatever its level (they are sightings); hits for the
    correlation rules, in event order, with their events; matches wanted by correlations
    whose event has no time (they cannot be placed in a window)."""

    detections: list[tuple[Detection, Event]] = field(default_factory=list)
    indicators: list[Detection] = field(default_factory=list)
    hits: list[tuple[Hit, Event]] = field(default_factory=list)
    untimed: int = 0


class DetectionCore:
    """The Sigma rules (and the live indicators, with `intel`) over batches of events."""

    def __init__(
        self,
        loaded: LoadedRules,
        *,
        intel: IntelScan | None = None,
        min_level: str | None = None,
        correlations: bool = True,
    ) -> None:
        self.loaded = loaded
        self.intel = intel
        self.threshold = level_rank(min_level) if min_level else -1
        plan = loaded.plan
        wants = CorrelationEngine(plan.correlations).wants
        rules = range(len(plan.rules))
        self.wanted = {i for i in rules if wants(i)} if correlations else set()

    def detect(self, events: Sequence[Event], detected_at: str | None = None) -> Found:
        found = Found()
        stamp = detected_at or detected_now()
        loaded, wanted, threshold = self.loaded, self.wanted, self.threshold
        rules = loaded.plan.rules
        for match in loaded.engine.match(events):
            event = match.event
            if match.rule in wanted:
                if event.time is None:
                    found.untimed += 1
                else:
                    refs = ((event.source, event.record),)
                    hit = Hit(event.time, ("rule", match.rule), match.rule_fields(), refs)
                    found.hits.append((hit, event))
            meta = rules[match.rule]
            if meta.output and level_rank(meta.level) >= threshold:
                found.detections.append((detection_of(match, loaded, stamp), event))
        intel = self.intel
        if intel is not None and intel.matcher.count:
            for event in events:
                for detection in intel.detections([event], stamp):
                    found.indicators.append(detection)
                    if level_rank(detection.level) >= threshold:
                        found.detections.append((detection, event))
        return found


def _rule_part(rule: RuleMeta | CorrelationSpec) -> dict[str, Any]:
    return {
        "rule_id": rule.rule_id,
        "rule_title": rule.title,
        "level": rule.level,
        "status": rule.status,
        "tags": rule.tags,
        "rule_path": rule.path,
    }


def detection_of(match: Match, loaded: LoadedRules, detected_at: str) -> Detection:
    event = match.event
    return Detection(
        kind="sigma",
        **_rule_part(loaded.plan.rules[match.rule]),
        time=event.time,
        timestamp=event.timestamp,
        host=event.host,
        source_file=event.source,
        record_id=event.record,
        matched_fields=match.matched_fields,
        event=event.fields,
        detected_at=detected_at,
    )


def correlation_detection(fired: Fired, detected_at: str) -> Detection:
    spec = fired.spec
    refs = [ref for hit in fired.hits for ref in hit.refs]
    host = next((str(fired.group[k]) for k in HOST_FIELDS if fired.group.get(k)), None)
    first_source = refs[0][0] if refs else ""
    return Detection(
        kind="correlation",
        **_rule_part(spec),
        time=fired.last,
        timestamp=format_time(fired.last),
        host=host,
        source_file=first_source,
        record_id=None,
        matched_fields=dict(fired.group),
        event={},
        detected_at=detected_at,
        details={
            "type": spec.type,
            "group": dict(fired.group),
            "window_start": format_time(fired.first),
            "window_end": format_time(fired.last),
            "value": fired.value,
            "events": [{"source_file": s, "record_id": r} for s, r in refs],
        },
    )


__all__ = [
    "DetectionCore",
    "Found",
    "collector_tuned",
    "correlation_detection",
    "detection_of",
    "tune_collector",
]
