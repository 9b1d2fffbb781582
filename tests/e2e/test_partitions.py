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
from vigil.serve.partitions import PartitionedDetect, PartitionedEvents
from vigil.serve.pipeline import EVENT, Analyzer, Detector, Pipeline, event_record
from vigil.serve.service import Service
from vigil.store import migrate, state_engine
from vigil.store.alerts import AlertStore
from vigil.store.events import EventStore
from vigil.store.stages import StageStateStore

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
    """What an alert found: rule, level, host and the event (file, record). (Alert ids also
    name the event's intake offset, which a partitioned stream numbers per partition.)"""
    return {(a["rule_id"], a["level"], a["host"], a["source"], a["record"]) for a in alerts}


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


def _worker(url: str, database_url: str, events: Path, loaded, me: str) -> PartitionedDetect:
    bus = JetStreamBus(url)
    engine = state_engine(database_url)
    migrate(engine)
    alerts_out = bus.stream("alerts")

    def pipeline(partition: int, stream) -> Pipeline:
        detector = Detector(
            loaded,
            AlertStore(engine),
            None,
            alerts_out=alerts_out,
            kept=StageStateStore(engine),
            name=f"detect-{partition}",
        )
        # a partition's offsets are its own: its events in a folder of their own, its
        # alert identities named by it
        store = EventStore(events / f"partition={partition}", name=f"p{partition}")
        analyzer = Analyzer(loaded, store, None, stream=f"{partition}:")
        return Pipeline(stream, detector, analyzer, batch_max=500, batch_wait=0.0)

    return PartitionedDetect(bus, pipeline, partitions=PARTITIONS, lease_s=2.0, me=me)


def test_two_workers_share_the_partitions_and_raise_the_embedded_alerts(
    tmp_path, need_data, sigma_rules, nats_server, postgres_url
) -> None:
    loaded = sigma_rules.loaded
    paths = _paths(need_data)
    expected = _embedded(tmp_path / "embedded", loaded, paths)
    bus = JetStreamBus(nats_server.url)
    intake = PartitionedEvents(bus, partitions=PARTITIONS)
    sent = _publish(intake, paths)
    assert intake.lag() == sent
    events = tmp_path / "events"
    one = _worker(nats_server.url, postgres_url, events, loaded, "one")
    two = _worker(nats_server.url, postgres_url, events, loaded, "two")
    try:
        for _ in range(3):  # join and balance: two partitions each
            one.rebalance()
            two.rebalance()
        assert len(one.owned) == len(two.owned) == 2 and one.owned.isdisjoint(two.owned)
        one.step(0.05)  # the first does a little, then stops and hands its partitions over
        one.stop()
        for _ in range(3):
            two.rebalance()
        assert two.owned == set(range(PARTITIONS))
        assert two.drain(300)
        assert intake.lag() == 0
        alerts = AlertStore(state_engine(postgres_url)).list(limit=100_000, kind="sigma")
        assert len({a["id"] for a in alerts}) == len(alerts)  # none twice
        got = _found(alerts)
        assert got == expected and len(expected) > 100
        stored = EventStore(events, writer=False).count()
        assert stored == sent  # every event once, whichever worker stored it
    finally:
        two.stop()
        for worker in (one, two):
            worker.bus.close()
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
    sent = _publish(PartitionedEvents(bus, partitions=PARTITIONS), paths)
    bus.close()
    events = tmp_path / "events"
    doomed = _worker(nats_server.url, postgres_url, events, loaded, "doomed")
    survivor = _worker(nats_server.url, postgres_url, events, loaded, "survivor")
    try:
        for _ in range(3):
            doomed.rebalance()
            survivor.rebalance()
        assert len(doomed.owned) == 2
        for _ in range(3):
            doomed.step(0.05)  # alerts written, events handed to the store, little acknowledged
        for pipeline in doomed.pipelines.values():  # killed: what its stores held is lost,
            assert pipeline.analyzer is not None and pipeline.analyzer.events is not None
            pipeline.analyzer.events.discard()  # nothing more is written,
            pipeline.analyzer.events.close()
        doomed.bus.close()  # acknowledged or handed over
        nats_server.restart()
        deadline = time.monotonic() + 30
        while survivor.owned != set(range(PARTITIONS)) and time.monotonic() < deadline:
            survivor.rebalance()  # reconnects, then takes the partitions as leases run out
            time.sleep(0.5)
        assert survivor.owned == set(range(PARTITIONS))
        assert survivor.drain(300)
        alerts = AlertStore(state_engine(postgres_url)).list(limit=100_000, kind="sigma")
        assert len({a["id"] for a in alerts}) == len(alerts)
        assert _found(alerts) == expected
        assert EventStore(events, writer=False).count() == sent
    finally:
        survivor.stop()
        survivor.bus.close()
