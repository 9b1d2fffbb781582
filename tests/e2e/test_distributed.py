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
from vigil.serve.service import Service


def _run(settings: dict[str, Any], loaded, paths: list[Path]) -> dict[str, Any]:
    service = Service(Settings.model_validate(settings), loaded=loaded)
    service.start()
    try:
        taken = service.feed(paths)
        assert service.drain(300)
        alerts = service.alert_store.list(limit=100_000)
        incidents = service.incident_store.ranked(limit=100_000)
        stored = service.hunt_sql("SELECT count(*) AS n FROM events", limit=1)["rows"]
    finally:
        service.stop()
    return {
        "taken": taken,
        "stored": stored,
        "alerts": sorted((a["id"], a["rule_id"], a["level"], a["host"]) for a in alerts),
        "incidents": sorted(
            (i["alerts"], i["level"], tuple(sorted(i["entities"]))) for i in incidents
        ),
    }


@pytest.mark.parametrize(
    ("bus", "workers"),
    [(False, 0), (True, 0), (True, 2)],
    ids=["postgresql", "nats-postgresql", "nats-postgresql-2-workers"],
)
def test_distributed_engines_give_the_embedded_alerts_and_incidents(
    request, tmp_path, need_data, sigma_rules, postgres_url, bus, workers
) -> None:
    paths = [
        need_data("windows", "sigma-regression-data", "regression_data"),
        need_data("cloud", "stratus-red-team"),
    ]
    common = {"indicators": False, "pipeline": {"workers": workers}}
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
