"""The zerotrust stages.

- `RiskStage` (on `risk`): live risk into what the decision point knows, so a user's or a
  host's next request is decided on its risk now.
- `SegmentStage` (on `flows`): the connections the events record, checked against the
  segment policy in force; a flow it does not allow is a lateral-movement alert, stored and
  published on `alerts`, so correlation, response and the console take it up like any other.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from vigil.errors import VigilError
from vigil.events.records import Alert, RiskChange
from vigil.zerotrust.pdp import Knowledge
from vigil.zerotrust.segments import (
    Flow,
    FlowPolicy,
    Segments,
    check,
    distinct,
    flows_of_record,
    to_alert,
)

log = logging.getLogger("vigil.zerotrust")

RELOAD_S = 60.0  # the inventory's tags are read again this often (the file: when it changes)
SEEN_MOST = 100_000  # recent flows remembered, to tell a second sensor's copy of one
COPY_WITHIN_S = 1.0  # a flow seen again within this is a copy (two sensors, a replay)


class RiskStage:
    def __init__(self, knowledge: Knowledge) -> None:
        self.knowledge = knowledge

    def restore(self) -> None:
        return None  # the service loads the current scores before the first batch

    def process(self, records: Sequence[tuple[int, bytes]]) -> None:
        for _, data in records:
            change = RiskChange.from_bytes(data)
            kind, value = change.entity
            self.knowledge.set_risk(kind, value, change.risk)


class SegmentStage:
    """Flows in, the policy's violations out as alerts. The policy file (segments and allowed
    flows) is read at start and again as soon as it changes (`vigil segments promote`
    replaces it), its segments' tags resolved to the addresses the inventory gives them
    (`tags()`, read again every minute). A policy that no longer reads is refused with its
    reason and the last good one stays in force. Without a policy the flows pass unchecked."""

    def __init__(
        self,
        path: Path | None,
        keep: Callable[[Sequence[Alert]], object],
        publish: Callable[[Sequence[Alert]], object],
        *,
        tags: Callable[[], Mapping[str, Sequence[str]]] | None = None,
        level: str = "medium",
    ) -> None:
        self.path = path
        self.keep = keep  # into the alert store
        self.publish = publish  # onto the `alerts` stream (records with `to_bytes`)
        self.tags = tags
        self.level = level
        self.policy: FlowPolicy | None = None
        self.segments: Segments | None = None
        self.loaded: dict[str, Any] = {}  # what is in force: path, sha256, when, problem
        self.checked = 0
        self.violations = 0
        self._stamp: tuple[int, int] | None = None
        self._loaded_at = 0.0
        self._seen: OrderedDict[tuple[Any, ...], float] = OrderedDict()

    def restore(self) -> None:
        self._reload(force=True)

    def process(self, records: Sequence[tuple[int, bytes]]) -> None:
        self._reload()
        flows = [flow for _, data in records for flow in flows_of_record(data)]
        if self.policy is None or self.segments is None or not flows:
            return
        fresh = [flow for flow in distinct(flows, COPY_WITHIN_S) if self._first(flow)]
        self.checked += len(fresh)
        alerts = [to_alert(v, level=self.level) for v in check(fresh, self.policy, self.segments)]
        if alerts:
            self.keep(alerts)
            raised = time.time()
            self.publish([replace(a, raised=raised) for a in alerts])
            self.violations += len(alerts)

    def _first(self, flow: Flow) -> bool:
        """Not a copy of a flow another batch already had (another sensor, within a second,
        before or after: sensors' clocks and files are not in step)."""
        key = (flow.src, flow.src_port, flow.dst, flow.port, flow.protocol)
        seen = self._seen.get(key)
        if flow.time is not None:
            self._seen[key] = flow.time
            self._seen.move_to_end(key)
            if len(self._seen) > SEEN_MOST:
                self._seen.popitem(last=False)
        return not (
            flow.time is not None and seen is not None and abs(flow.time - seen) <= COPY_WITHIN_S
        )

    def _reload(self, *, force: bool = False) -> None:
        if self.path is None:
            return
        try:
            status = self.path.stat()
            stamp: tuple[int, int] | None = (status.st_mtime_ns, status.st_size)
        except OSError:
            stamp = None
        due = time.monotonic() - self._loaded_at >= RELOAD_S
        if not force and stamp == self._stamp and not due:
            return
        self._stamp, self._loaded_at = stamp, time.monotonic()
        try:
            text = self.path.read_text(encoding="utf-8")
            policy = FlowPolicy.from_yaml(text, str(self.path))
            segments = Segments(policy.segments, self.tags() if self.tags is not None else None)
        except (OSError, UnicodeDecodeError, VigilError) as exc:
            problem = f"{self.path}: {exc}"
            if problem != self.loaded.get("problem"):
                log.error("segment policy not taken (the last good one stays): %s", problem)
            self.loaded = {**self.loaded, "problem": problem}
            return
        if self.policy is None or policy != self.policy:
            log.info("segment policy in force: %s (%d segments)", self.path, len(segments.names))
        self.policy, self.segments = policy, segments
        self.loaded = {"path": str(self.path), "since": time.time(), "problem": None}

    def figures(self) -> dict[str, Any]:
        return {**self.loaded, "checked": self.checked, "violations": self.violations}


__all__ = ["RiskStage", "SegmentStage"]
