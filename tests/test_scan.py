"""`vigil.scan`: the timeline, its order, and scanning in several processes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from vigil.scan import scan_inputs


def _keys(result: Any) -> list[tuple[str, Any, str]]:
    return [(d.source_file, d.record_id, d.rule_id) for d in result.detections]


def test_two_worker_processes_give_the_same_timeline_as_one(
    sigma_rules: Any, need_data: Callable[..., Path]
) -> None:
    folder = need_data("windows", "evtx-to-mitre-attack", "TA0006-Credential Access")
    alone = scan_inputs([folder], sigma_rules.loaded)
    parallel = scan_inputs([folder], sigma_rules.loaded, jobs=2)
    assert alone.detections, "the credential-access recordings raise detections"
    assert _keys(parallel) == _keys(alone)
    assert [f.path for f in parallel.files] == [f.path for f in alone.files]
    assert parallel.totals["records_read"] == alone.totals["records_read"]


def test_timeline_is_in_event_time_order(sigma_rules: Any, need_data: Callable[..., Path]) -> None:
    folder = need_data("windows", "evtx-to-mitre-attack", "TA0008-Lateral Movement")
    times = [d.time for d in scan_inputs([folder], sigma_rules.loaded).detections]
    timed = [t for t in times if t is not None]
    assert timed == sorted(timed)
    assert times[: len(timed)] == timed  # events without a time come last


def test_min_level_keeps_only_that_level_and_above(
    sigma_rules: Any, need_data: Callable[..., Path]
) -> None:
    folder = need_data("windows", "evtx-to-mitre-attack", "TA0002-Execution")
    result = scan_inputs([folder], sigma_rules.loaded, min_level="high")
    assert result.detections
    assert {d.level for d in result.detections} <= {"high", "critical"}
