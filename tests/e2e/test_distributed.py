"""The same stage code on distributed engines: streams on a real NATS JetStream server and
state on a real PostgreSQL server give exactly the alerts and incidents of the embedded
deployment (segment logs, SQLite) on the same real events: the SigmaHQ regression samples
and the Stratus Red Team CloudTrail detonations."""

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


@pytest.mark.parametrize("workers", [0, 2])
def test_nats_and_postgresql_give_the_embedded_alerts_and_incidents(
    tmp_path, need_data, sigma_rules, nats_server, postgres_url, workers
) -> None:
    paths = [
        need_data("windows", "sigma-regression-data", "regression_data"),
        need_data("cloud", "stratus-red-team"),
    ]
    common = {"indicators": False, "pipeline": {"workers": workers}}
    embedded = _run({**common, "data_dir": tmp_path / "embedded"}, sigma_rules.loaded, paths)
    distributed = _run(
        {
            **common,
            "data_dir": tmp_path / "distributed",
            "database_url": postgres_url,
            "bus": {"url": nats_server.url},
        },
        sigma_rules.loaded,
        paths,
    )
    assert embedded["taken"] == distributed["taken"] > 0
    assert len(embedded["alerts"]) > 100 and embedded["incidents"]
    assert distributed["stored"] == embedded["stored"]
    assert distributed["alerts"] == embedded["alerts"]
    assert distributed["incidents"] == embedded["incidents"]
