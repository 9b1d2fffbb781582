"""Two `vigil serve --role detect` processes share the partitions of a real NATS JetStream;
one is SIGKILLed mid-stream and NATS is restarted once while events still come: the other
takes the dead worker's partitions when their leases run out, every event intake had
acknowledged is stored once and every alert the embedded deployment raises on the same real
events (SigmaHQ regression samples, Stratus CloudTrail) exists once, with the same id."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from served import free_port

from vigil.bus.jetstream import JetStreamBus
from vigil.bus.leases import PartitionLeases
from vigil.config import Settings
from vigil.ingest import FileReport, discover, read_events
from vigil.serve.pipeline import EVENT, event_record
from vigil.serve.service import Service
from vigil.store import state_engine
from vigil.store.alerts import AlertStore
from vigil.store.events import EventStore

PARTITIONS = 4


def _found(alerts: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted((a["id"], a["rule_id"], a["level"], a["host"]) for a in alerts)


def _detect_worker(folder: Path, rules, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "vigil.cli", "serve", "--role", "detect",
               "--data-dir", str(folder), "--port", str(free_port())]  # fmt: skip
    for path in rules.folders:
        command += ["--rules", str(path)]
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "serve.log").open("ab") as log:
        return subprocess.Popen(command, env={**os.environ, **env}, stdout=log, stderr=log)


def test_a_sigkilled_detect_worker_and_a_nats_restart_lose_and_double_nothing(
    tmp_path, need_data, sigma_rules, nats_server, postgres_url, until
) -> None:
    paths = [
        need_data("windows", "sigma-regression-data", "regression_data"),
        need_data("cloud", "stratus-red-team"),
    ]
    embedded = Service(
        Settings.model_validate({"data_dir": tmp_path / "embedded", "indicators": False}),
        loaded=sigma_rules.loaded,
    )
    embedded.start()
    try:
        embedded.feed(paths)
        assert embedded.drain(300)
        expected = _found(embedded.alert_store.list(limit=100_000))
    finally:
        embedded.stop()
    events = tmp_path / "events"
    env = {
        "VIGIL_BUS__URL": nats_server.url,
        "VIGIL_BUS__PARTITIONS": str(PARTITIONS),
        "VIGIL_BUS__LEASE_S": "3",
        "VIGIL_DATABASE_URL": postgres_url,
        "VIGIL_EVENTS_DIR": str(events),
        "VIGIL_INDICATORS": "false",
        "VIGIL_STARTER_RULES": "false",
        "VIGIL_CACHE_DIR": str(sigma_rules.cache_dir),
        "VIGIL_CONFIG": "/nonexistent",
    }
    workers = [_detect_worker(tmp_path / f"worker-{n}", sigma_rules, env) for n in (1, 2)]
    bus = JetStreamBus(nats_server.url)
    leases = PartitionLeases(bus, "detect", partitions=PARTITIONS, lease_s=3)
    intake = Service(
        Settings.model_validate(
            {
                "data_dir": tmp_path / "intake",
                "database_url": postgres_url,
                "events_dir": events,
                "indicators": False,
                "role": "intake",
                "bus": {"url": nats_server.url, "partitions": PARTITIONS},
            }
        ),
        loaded=sigma_rules.loaded,
    )
    try:

        def shared() -> bool:
            owners = leases.owners()
            return len(owners) == PARTITIONS and len(set(owners.values())) == 2

        until(shared, "two workers sharing the partitions", timeout=120)
        sources = list(discover(paths))
        half = len(sources) // 2
        sent = 0

        def publish(chosen: list[Any]) -> None:
            nonlocal sent
            for source in chosen:
                for batch in read_events(source, FileReport(source.name)):
                    lines = [event_record(e) for e in batch]
                    intake.events_out.publish(EVENT, f"file:{Path(source.name).name}", lines)
                    sent += len(lines)  # acknowledged: stored by JetStream

        publish(sources[:half])
        alerts = AlertStore(state_engine(postgres_url))
        until(lambda: alerts.list(limit=1), "the first alerts", timeout=120)
        workers[0].send_signal(signal.SIGKILL)  # mid-stream, without a word
        workers[0].wait(30)
        nats_server.restart()
        publish(sources[half:])
        try:
            until(
                lambda: intake.partitioned.backlog() == 0,
                "every event detected on and stored",
                timeout=300,
            )
        except AssertionError:  # what the workers said, to tell why
            for n in (1, 2):
                said = (tmp_path / f"worker-{n}" / "serve.log").read_text(errors="replace")
                print(f"--- worker {n} ---\n{said[-6000:]}")
            raise
        survivor = {owner for owner in leases.owners().values()}
        assert len(survivor) == 1 and workers[1].poll() is None
        got = alerts.list(limit=100_000)
        assert len({a["id"] for a in got}) == len(got)  # none twice
        assert _found(got) == expected and len(expected) > 100  # every one, same ids
        assert EventStore(events, writer=False).count() == sent  # every event once
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(60)
                except subprocess.TimeoutExpired:
                    worker.kill()
        intake.stop()
        bus.close()
