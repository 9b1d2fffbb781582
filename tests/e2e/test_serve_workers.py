"""The detection workers of `vigil serve`: a worker killed with SIGKILL in the middle of a
stream is replaced, and the stage goes on from the acknowledged position; every event is
still stored exactly once and every detection exists exactly once. The same stream through
the server's own process (`pipeline.workers = 0`) gives the same alerts and events."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from whoami_stream import RULE, event

from vigil.config import Settings
from vigil.detect.sigma import rules_from_text
from vigil.serve.pipeline import JSON
from vigil.serve.service import Service
from vigil.store.events import EventStore

TOTAL = 40_000


def run(folder: Path, workers: int, kill_after: int | None = None) -> tuple[Counter, Counter, int]:
    settings = Settings.model_validate(
        {"data_dir": folder, "indicators": False, "pipeline": {"workers": workers}}
    )
    service = Service(settings, loaded=rules_from_text(RULE))
    pipeline = service.pipeline
    for start in range(0, TOTAL, 1000):
        pipeline.publish(JSON, "test", [event(s) for s in range(start, start + 1000)])
    service.start()
    try:
        if kill_after is not None:
            assert service.pool is not None
            deadline = time.monotonic() + 120
            while pipeline.position < kill_after and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(service.pool.pids[0], signal.SIGKILL)
        deadline = time.monotonic() + 180
        while (pipeline.lag() or service.stream.acked < service.stream.end) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.1)
        assert pipeline.lag() == 0, "the stream was not processed"
    finally:
        service.stop()
    stored = Counter(
        e.fields["seq"]
        for batch in EventStore(folder / "events", writer=False).events(None, None)
        for e in batch
    )
    alerted = Counter(a["event"]["seq"] for a in service.alert_store.list(limit=TOTAL))
    return stored, alerted, pipeline.failures


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_nothing_is_lost_or_doubled(tmp_path) -> None:
    stored, alerted, failures = run(tmp_path / "killed", workers=2, kill_after=TOTAL // 4)
    assert failures >= 1  # the dead worker was noticed
    assert set(stored) == set(range(TOTAL)) and set(stored.values()) == {1}
    assert set(alerted) == set(range(0, TOTAL, 10)) and set(alerted.values()) == {1}


def test_workers_and_the_server_process_give_the_same_alerts_and_events(tmp_path) -> None:
    in_workers = run(tmp_path / "workers", workers=2)
    in_process = run(tmp_path / "in-process", workers=0)
    assert in_workers[:2] == in_process[:2]
    stored, alerted, _ = in_process
    assert set(stored) == set(range(TOTAL)) and set(stored.values()) == {1}
    assert set(alerted) == set(range(0, TOTAL, 10))
    # each worker wrote under its own name
    names = {p.name.split("-")[1] for p in (tmp_path / "workers" / "events").rglob("*.parquet")}
    assert names == {"w0", "w1"}
