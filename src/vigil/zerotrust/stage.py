"""The zerotrust stages.

- `RiskStage` (on `risk`): live risk into what the decision point knows, so a user's or a
  host's next request is decided on its risk now.
- `InventoryStage` (on `inventory`): the hosts an import changed, their posture and tags
  into what the decision point knows at once.
- `SegmentStage` (on `flows`): the connections the events record, checked against the
  segment policy in force; a flow it does not allow is a lateral-movement alert, stored and
  published on `alerts`, so correlation, response and the console take it up like any other.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from vigil.errors import VigilError
from vigil.events.flows import Flow, flows_of_record
from vigil.events.records import Alert, AssetChange, RiskChange
from vigil.store.stages import StageStateStore
from vigil.zerotrust import inventory
from vigil.zerotrust.pdp import Knowledge
from vigil.zerotrust.segments import (
    FlowPolicy,
    Segments,
    StageReport,
    Violation,
    check,
    distinct,
    stage,
    to_alert,
)

log = logging.getLogger("vigil.zerotrust")

RELOAD_S = 60.0  # the inventory's tags are read again this often (the file: when it changes)
SEEN_MOST = 100_000  # recent flows remembered, to tell a second sensor's copy of one
COPY_WITHIN_S = 1.0  # a flow seen again within this is a copy (two sensors, a replay)
STAGED_STATE = "segments-staged"  # the staged report's name in the state database
STAGED_EXAMPLES = 3  # example flows kept of each pair a staged policy would block
STAGED_SHOWN = 50  # pairs shown in the figures


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


class InventoryStage:
    """The hosts an import changed (the `inventory` stream, announced by the assets stage
    once merged) into what the decision point knows, read from the inventory at once: a host
    falling out of compliance has its sessions decided again and is announced (`compliance`)
    without waiting for the minute's full reload."""

    def __init__(
        self,
        knowledge: Knowledge,
        node: Callable[[str], dict[str, Any] | None],
        compliance: Callable[[str, bool, bool], object] | None = None,
    ) -> None:
        self.knowledge = knowledge
        self.node = node  # the inventory's node by id (`AssetStore.node`)
        self.compliance = compliance

    def restore(self) -> None:
        return None  # the service loads the whole inventory before the first batch

    def process(self, records: Sequence[tuple[int, bytes]]) -> int:
        ids = dict.fromkeys(i for _, data in records for i in AssetChange.from_bytes(data).nodes)
        return inventory.refresh(self.knowledge, ids, self.node, self.compliance)


class PolicyFile:
    """A segment policy file as it is now: read again once it changes (or, for the tags
    its segments name, every `RELOAD_S`). One that no longer reads is refused with its reason
    (`problem`) and the last good one stays."""

    def __init__(
        self, path: Path, what: str, tags: Callable[[], Mapping[str, Sequence[str]]] | None
    ) -> None:
        self.path = path
        self.what = what  # "in force", "staged": for the log
        self.tags = tags
        self.policy: FlowPolicy | None = None
        self.segments: Segments | None = None
        self.sha256: str | None = None  # of the text in use
        self.since: float | None = None
        self.problem: str | None = None
        self._stamp: tuple[int, int] | None = None
        self._loaded_at = 0.0

    def current(self, *, force: bool = False) -> tuple[FlowPolicy, Segments] | None:
        try:
            status = self.path.stat()
            stamp: tuple[int, int] | None = (status.st_mtime_ns, status.st_size)
        except OSError:
            stamp = None
        due = time.monotonic() - self._loaded_at >= RELOAD_S
        if force or stamp != self._stamp or due:
            self._stamp, self._loaded_at = stamp, time.monotonic()
            self._read()
        if self.policy is None or self.segments is None:
            return None
        return self.policy, self.segments

    def _read(self) -> None:
        tagged = ""
        try:
            body = self.path.read_bytes()
            policy = FlowPolicy.from_yaml(body.decode("utf-8"), str(self.path))
            try:
                segments = Segments(policy.segments, self.tags() if self.tags else None)
            except VigilError as exc:  # the inventory's tags, not the file: CIDRs still hold
                segments = Segments(policy.segments)
                tagged = f"{self.path}: segments by tag left empty: {exc}"
        except (OSError, UnicodeDecodeError, VigilError) as exc:
            problem = f"{self.path}: {exc}"
            if problem != self.problem:
                log.error(
                    "segment policy %s not taken (the last good one stays): %s", self.what, problem
                )
            self.problem = problem
            return
        digest = hashlib.sha256(body).hexdigest()
        if digest != self.sha256:
            log.info(
                "segment policy %s: %s (%d segments)", self.what, self.path, len(segments.names)
            )
            self.since = time.time()
        if tagged and tagged != self.problem:
            log.error("segment policy %s: %s", self.what, tagged)
        self.policy, self.segments, self.sha256 = policy, segments, digest
        self.problem = tagged or None

    def figures(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "since": self.since,
            "problem": self.problem,
        }


class SegmentStage:
    """Flows in, the policy's violations out as alerts; and, for a proposed policy run staged
    beside it, what it would block. Each policy file is read at start and again as soon as
    it changes (`vigil segments promote` replaces the one in force), its segments' tags
    resolved to the addresses the inventory gives them (`tags()`, read again every minute).
    Without a policy in force the flows pass unchecked.

    The staged report (flows seen, and those the staged policy would block by segment pair,
    protocol and port) is kept in the state database with each batch (`state`), so it spans
    a restart; it starts afresh when the staged file changes."""

    def __init__(
        self,
        path: Path | None,
        keep: Callable[[Sequence[Alert]], object],
        publish: Callable[[Sequence[Alert]], object],
        *,
        tags: Callable[[], Mapping[str, Sequence[str]]] | None = None,
        level: str = "medium",
        staged: Path | None = None,
        state: StageStateStore | None = None,
    ) -> None:
        self.in_force = PolicyFile(path, "in force", tags) if path is not None else None
        self.staged = PolicyFile(staged, "staged", tags) if staged is not None else None
        self.keep = keep  # into the alert store
        self.publish = publish  # onto the `alerts` stream (records with `to_bytes`)
        self.level = level
        self.state = state
        self.checked = 0
        self.violations = 0
        self.report = StageReport()
        self._report_of: str | None = None  # the staged text's sha256 the report is about
        self._seen: OrderedDict[tuple[Any, ...], float] = OrderedDict()
        self._lock = threading.Lock()  # the figures are read from other threads

    def restore(self) -> None:
        if self.in_force is not None:
            self.in_force.current(force=True)
        if self.staged is not None:
            self.staged.current(force=True)
            kept = self.state.get(STAGED_STATE) if self.state is not None else None
            if kept is not None and kept[1].get("sha256") == self.staged.sha256:
                self.report = _report_from(kept[1])
                self._report_of = self.staged.sha256

    def process(self, records: Sequence[tuple[int, bytes]]) -> None:
        flows = [flow for _, data in records for flow in flows_of_record(data)]
        enforced = self.in_force.current() if self.in_force is not None else None
        proposed = self.staged.current() if self.staged is not None else None
        if not flows or (enforced is None and proposed is None):
            return
        fresh, seen = self._fresh(distinct(flows, COPY_WITHIN_S))
        alerts: list[Alert] = []
        if enforced is not None:
            alerts = [to_alert(v, level=self.level) for v in check(fresh, *enforced)]
            if alerts:
                self.keep(alerts)
                raised = time.time()
                self.publish([replace(a, raised=raised) for a in alerts])
        report = None
        if proposed is not None and self.staged is not None:
            report = StageReport() if self._report_of != self.staged.sha256 else self.report
            report = _merged(report, stage(*proposed, fresh, examples=STAGED_EXAMPLES))
            if self.state is not None:
                kept = {"sha256": self.staged.sha256, **report.as_dict()}
                self.state.put(STAGED_STATE, records[-1][0] + 1, kept)
        # the batch is done: only now is it remembered (a batch that failed is done again,
        # whole, its flows not taken for copies of themselves)
        with self._lock:
            if enforced is not None:
                self.checked += len(fresh)
                self.violations += len(alerts)
            if report is not None and self.staged is not None:
                self.report, self._report_of = report, self.staged.sha256
            for key, when in seen.items():
                self._seen[key] = when
                self._seen.move_to_end(key)
            while len(self._seen) > SEEN_MOST:
                self._seen.popitem(last=False)

    def _fresh(self, flows: list[Flow]) -> tuple[list[Flow], dict[tuple[Any, ...], float]]:
        """The flows that are not copies of one an earlier batch had (another sensor, within
        a second, before or after: sensors' clocks and files are not in step), and what to
        remember of them once the batch is done."""
        fresh: list[Flow] = []
        seen: dict[tuple[Any, ...], float] = {}
        for flow in flows:
            key = (flow.src, flow.src_port, flow.dst, flow.port, flow.protocol)
            before = self._seen.get(key)
            if flow.time is not None:
                seen[key] = flow.time
            if not (
                flow.time is not None
                and before is not None
                and abs(flow.time - before) <= COPY_WITHIN_S
            ):
                fresh.append(flow)
        return fresh, seen

    def figures(self) -> dict[str, Any]:
        """What is in force and what it found; the staged policy and what it would block."""
        out: dict[str, Any] = {"checked": self.checked, "violations": self.violations}
        if self.in_force is not None:
            out.update(self.in_force.figures())
        if self.staged is not None:
            with self._lock:  # the stage's thread swaps it whole
                report = self.report.as_dict()
            report["would_block"] = report["would_block"][:STAGED_SHOWN]
            out["staged"] = {**self.staged.figures(), **report}
        return out


def _merged(report: StageReport, more: StageReport) -> StageReport:
    """A new report: `report` with `more` taken in (`report` itself left as it was)."""
    out = StageReport(report.flows, report.blocked, Counter(report.counts))
    out.examples = {key: list(found) for key, found in report.examples.items()}
    out.add(more, examples=STAGED_EXAMPLES)
    return out


def _report_from(kept: Mapping[str, Any]) -> StageReport:
    """A staged report as the state database keeps it (`StageReport.as_dict`)."""
    report = StageReport(flows=int(kept.get("flows", 0)), blocked=int(kept.get("blocked", 0)))
    for row in kept.get("would_block", ()):
        key = (row["src_segment"], row["dst_segment"], row["protocol"], row["port"])
        report.counts[key] = int(row["count"])
        report.examples[key] = [
            Violation(
                Flow(e["src"], e["dst"], row["protocol"], row["port"], e["time"], e["uid"]),
                row["src_segment"],
                row["dst_segment"],
                row["reason"],
            )
            for e in row["examples"]
        ]
    return report


__all__ = ["InventoryStage", "PolicyFile", "RiskStage", "SegmentStage"]
