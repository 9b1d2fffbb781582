"""The detect stage over a partitioned `events` stream on a real NATS JetStream and
PostgreSQL: two workers share four partitions through leases and raise exactly the alerts
of the embedded deployment on the same real events (SigmaHQ regression samples, Stratus
CloudTrail); each event is stored once; a worker that stops hands its partitions over and
the other finishes them."""

from __future__ import annotations

import time
from pathlib import Path

from vigil.bus.jetstream import JetStreamBus
from vigil.config import Settings
from vigil.ingest import FileReport, discover, read_events
from vigil.serve.partitions import PartitionedEvents
from vigil.serve.pipeline import EVENT, event_record
from vigil.serve.service import Service
from vigil.store import state_engine
from vigil.store.alerts import AlertStore
from vigil.store.events import EventStore

PARTITIONS = 4


def _paths(need_data) -> list[Path]:
    return [
        need_data("windows", "sigma-regression-data", "regression_data"),
        need_data("cloud", "stratus-red-team"),
    ]


def _publish(intake: PartitionedEvents, paths: list[Path]) -> int:
    """The events of the files through a partitioned intake, as `vigil serve` reads them."""
    sent = 0
    for source in discover(paths):
        for batch in read_events(source, FileReport(source.name)):
            intake.publish(
                EVENT, f"file:{Path(source.name).name}", [event_record(e) for e in batch]
            )
            sent += len(batch)
    return sent


def _found(alerts: list[dict]) -> set[tuple]:
    """An alert: its id (which names its event's offset on `events`: one stream, whatever
    the partitioning), rule, level, host and the event (file, record)."""
    return {
        (a["id"], a["rule_id"], a["level"], a["host"], a["source"], a["record"]) for a in alerts
    }


def _embedded(folder: Path, loaded, paths: list[Path]) -> set[tuple]:
    settings = {"data_dir": folder, "indicators": False, "pipeline": {"workers": 0}}
    service = Service(Settings.model_validate(settings), loaded=loaded)
    service.start()
    try:
        service.feed(paths)
        assert service.drain(300)
        return _found(service.alert_store.list(limit=100_000, kind="sigma"))
    finally:
        service.stop()


def _worker(folder: Path, url: str, database_url: str, events: Path, loaded, me: str) -> Service:
    """A detect worker (`vigil serve --role detect`), not started: the test steps it."""
    settings = {
        "data_dir": folder / me,
        "database_url": database_url,
        "events_dir": events,
        "indicators": False,
        "role": "detect",
        "bus": {"url": url, "partitions": PARTITIONS, "lease_s": 2.0},
        "pipeline": {"batch_max": 500, "batch_wait_ms": 0},
    }
    service = Service(Settings.model_validate(settings), loaded=loaded)
    assert service.workers is not None
    service.workers.leases.me = me
    return service


def test_two_workers_share_the_partitions_and_raise_the_embedded_alerts(
    tmp_path, need_data, sigma_rules, nats_server, postgres_url
) -> None:
    loaded = sigma_rules.loaded
    paths = _paths(need_data)
    expected = _embedded(tmp_path / "embedded", loaded, paths)
    bus = JetStreamBus(nats_server.url)
    intake = PartitionedEvents(bus.stream("events"), partitions=PARTITIONS)
    sent = _publish(intake, paths)
    assert intake.lag() == sent
    events = tmp_path / "events"
    one = _worker(tmp_path, nats_server.url, postgres_url, events, loaded, "one")
    two = _worker(tmp_path, nats_server.url, postgres_url, events, loaded, "two")
    first, second = one.workers, two.workers
    assert first is not None and second is not None
    try:
        for _ in range(3):  # join and balance: two partitions each
            first.rebalance()
            second.rebalance()
        assert len(first.owned) == len(second.owned) == 2 and first.owned.isdisjoint(second.owned)
        first.step(0.05)  # the first does a little, then stops and hands its partitions over
        first.stop()
        for _ in range(3):
            second.rebalance()
        assert second.owned == set(range(PARTITIONS))
        assert second.drain(300)
        assert intake.backlog() == 0
        alerts = AlertStore(state_engine(postgres_url)).list(limit=100_000, kind="sigma")
        assert len({a["id"] for a in alerts}) == len(alerts)  # none twice
        got = _found(alerts)
        assert got == expected and len(expected) > 100
        stored = EventStore(events, writer=False).count()
        assert stored == sent  # every event once, whichever worker stored it
    finally:
        one.stop()
        two.stop()
        bus.close()


def test_a_killed_worker_and_a_nats_restart_lose_and_double_nothing(
    tmp_path, need_data, sigma_rules, nats_server, postgres_url
) -> None:
    """A worker dies mid-stream without a word (its batches done but not acknowledged, its
    leases left to run out); NATS is then restarted; the other worker takes over and every
    event is stored once, every alert exists once."""
    loaded = sigma_rules.loaded
    paths = _paths(need_data)
    expected = _embedded(tmp_path / "embedded", loaded, paths)
    bus = JetStreamBus(nats_server.url)
    sent = _publish(PartitionedEvents(bus.stream("events"), partitions=PARTITIONS), paths)
    bus.close()
    events = tmp_path / "events"
    doomed = _worker(tmp_path, nats_server.url, postgres_url, events, loaded, "doomed")
    survivor = _worker(tmp_path, nats_server.url, postgres_url, events, loaded, "survivor")
    dying, taking = doomed.workers, survivor.workers
    assert dying is not None and taking is not None
    try:
        for _ in range(3):
            dying.rebalance()
            taking.rebalance()
        assert len(dying.owned) == 2
        for _ in range(3):
            dying.step(0.05)  # alerts written, events handed to the store, little acknowledged
        for pipeline in dying.pipelines.values():  # killed: what its stores held is lost,
            assert pipeline.analyzer is not None and pipeline.analyzer.events is not None
            pipeline.analyzer.events.discard()  # nothing more is written,
            pipeline.analyzer.events.close()
        assert doomed.bus is not None
        doomed.bus.close()  # acknowledged or handed over
        nats_server.restart()
        deadline = time.monotonic() + 30
        while taking.owned != set(range(PARTITIONS)) and time.monotonic() < deadline:
            taking.rebalance()  # reconnects, then takes the partitions as leases run out
            time.sleep(0.5)
        assert taking.owned == set(range(PARTITIONS))
        assert taking.drain(300)
        alerts = AlertStore(state_engine(postgres_url)).list(limit=100_000, kind="sigma")
        assert len({a["id"] for a in alerts}) == len(alerts)
        assert _found(alerts) == expected
        assert EventStore(events, writer=False).count() == sent
    finally:
        survivor.stop()
