"""The same stage code on distributed engines: state on a real PostgreSQL server (through
the same models and migrations), then streams on a real NATS JetStream server too, give
exactly the alerts, incidents and stored events of the embedded deployment (segment logs,
SQLite) on the same real events: the SigmaHQ regression samples and the Stratus Red Team
CloudTrail detonations. (Incidents are compared whole: grouping follows the alerts
stream's order, never how its batches happen to fall; when the correlate stage sorted each
batch by time, two runs on one database gave 73 and 72 incidents.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vigil.config import Settings
from vigil.serve.partitions import InEventOrder
from vigil.serve.service import Service


def _paths(need_data) -> list[Path]:
    return [
        need_data("windows", "sigma-regression-data", "regression_data"),
        need_data("cloud", "stratus-red-team"),
    ]


def _run(settings: dict[str, Any], loaded, paths: list[Path]) -> dict[str, Any]:
    service = Service(Settings.model_validate(settings), loaded=loaded)
    service.start()
    try:
        taken = service.feed(paths)
        assert service.drain(300)
        return _outcome(service, taken)
    finally:
        service.stop()


def _outcome(service: Service, taken: int) -> dict[str, Any]:
    alerts = service.alert_store.list(limit=100_000)
    incidents = service.incident_store.ranked(limit=100_000)
    stored = service.hunt_sql("SELECT count(*) AS n FROM events", limit=1)["rows"]
    return {
        "taken": taken,
        "stored": stored,
        "alerts": sorted((a["id"], a["rule_id"], a["level"], a["host"]) for a in alerts),
        "incidents": sorted(
            (i["alerts"], i["level"], tuple(sorted(i["entities"]))) for i in incidents
        ),
    }


@pytest.mark.parametrize("bus", [False, True], ids=["postgresql", "nats-postgresql"])
def test_distributed_engines_give_the_embedded_alerts_and_incidents(
    request, tmp_path, need_data, sigma_rules, postgres_url, bus
) -> None:
    paths = _paths(need_data)
    common = {"indicators": False, "pipeline": {"workers": 0}}
    embedded = _run({**common, "data_dir": tmp_path / "embedded"}, sigma_rules.loaded, paths)
    settings = {**common, "data_dir": tmp_path / "distributed", "database_url": postgres_url}
    if bus:
        settings["bus"] = {"url": request.getfixturevalue("nats_server").url}
    distributed = _run(settings, sigma_rules.loaded, paths)
    assert embedded["taken"] == distributed["taken"] > 0
    assert len(embedded["alerts"]) > 100 and embedded["incidents"]
    assert distributed["stored"] == embedded["stored"]
    assert distributed["alerts"] == embedded["alerts"]
    assert distributed["incidents"] == embedded["incidents"]


def test_two_detect_workers_give_the_embedded_alerts_and_incidents(
    tmp_path, need_data, sigma_rules, nats_server, postgres_url, until
) -> None:
    """The roles of the distributed deployment, each its own `Service` as `vigil serve
    --role` builds it: an intake, two detect workers sharing eight partitions, a correlate
    stage; the alerts (ids included) and the incidents are the embedded deployment's."""
    paths = _paths(need_data)
    loaded = sigma_rules.loaded
    embedded = _run({"indicators": False, "data_dir": tmp_path / "embedded"}, loaded, paths)
    common = {
        "indicators": False,
        "database_url": postgres_url,
        "events_dir": tmp_path / "events",
        "bus": {"url": nats_server.url, "partitions": 8, "lease_s": 2.0},
    }

    def role(name: str, folder: str) -> Service:
        given = {**common, "data_dir": tmp_path / folder, "role": name}
        return Service(Settings.model_validate(given), loaded=loaded)

    intake, correlate = role("intake", "intake"), role("correlate", "correlate")
    detect = [role("detect", "detect-1"), role("detect", "detect-2")]
    for service in (*detect, correlate):
        service.start()
    try:
        taken = intake.feed(paths)
        until(
            lambda: intake.partitioned.backlog() == 0,
            "the events detected on and stored",
            timeout=300,
        )
        # the two share the partitions evenly, once the one that started first has handed
        # half over (its leases run out on the bus's clock: on a loaded machine that can be
        # after the events are all done)
        until(
            lambda: [len(s.workers.owned) for s in detect if s.workers is not None] == [4, 4],
            "the partitions shared four and four",
            timeout=60,
        )
        runner = correlate.correlating
        assert runner is not None
        # every partition's progress past the last event, every alert correlated
        stream = runner.stream
        assert isinstance(stream, InEventOrder)
        until(lambda: stream.waiting == 0 and runner.lag() == 0, "alerts correlated")
        got = _outcome(intake, taken)
    finally:
        for service in (*detect, correlate, intake):
            service.stop()
    assert got["taken"] == embedded["taken"]
    assert got["stored"] == embedded["stored"]
    assert got["alerts"] == embedded["alerts"]
    assert got["incidents"] == embedded["incidents"]
