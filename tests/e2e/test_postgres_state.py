"""The state database on a real PostgreSQL server: the same real events (the SigmaHQ
regression samples and the Stratus Red Team CloudTrail detonations) through the same
pipeline give exactly the alerts and incidents they give on SQLite, through the same models
and migrations. (Incidents are compared whole: grouping follows the alerts stream's order,
never how its batches happen to fall; when the stage sorted each batch by time, two runs on
one database gave 73 and 72 incidents.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vigil.config import Settings
from vigil.serve.service import Service


def _run(folder: Path, database_url: str | None, loaded, paths: list[Path]) -> dict[str, Any]:
    settings = Settings.model_validate(
        {
            "data_dir": folder,
            "database_url": database_url,
            "indicators": False,
            "pipeline": {"workers": 0},
        }
    )
    service = Service(settings, loaded=loaded)
    service.start()
    try:
        taken = service.feed(paths)
        assert service.drain(300)
        alerts = service.alert_store.list(limit=100_000)
        incidents = service.incident_store.ranked(limit=100_000)
    finally:
        service.stop()
    return {
        "taken": taken,
        "alerts": sorted((a["id"], a["rule_id"], a["level"], a["host"]) for a in alerts),
        "incidents": sorted(
            (i["alerts"], i["level"], tuple(sorted(i["entities"]))) for i in incidents
        ),
        "in_incidents": sum(i["alerts"] for i in incidents),
    }


def test_the_same_events_give_the_same_alerts_and_incidents_on_postgresql(
    tmp_path, need_data, sigma_rules, postgres_url
) -> None:
    paths = [
        need_data("windows", "sigma-regression-data", "regression_data"),
        need_data("cloud", "stratus-red-team"),
    ]
    on_sqlite = _run(tmp_path / "sqlite", None, sigma_rules.loaded, paths)
    on_postgres = _run(tmp_path / "postgres", postgres_url, sigma_rules.loaded, paths)
    assert on_sqlite["taken"] == on_postgres["taken"] > 0
    assert len(on_sqlite["alerts"]) > 100
    assert on_postgres["alerts"] == on_sqlite["alerts"]
    assert on_postgres["in_incidents"] == on_sqlite["in_incidents"] == len(on_sqlite["alerts"])
    assert on_postgres["incidents"] == on_sqlite["incidents"]
