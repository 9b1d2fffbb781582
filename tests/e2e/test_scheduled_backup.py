"""Scheduled backups in a running `vigil serve`: real Zeek events taken in over the API are
in the backup, which verifies; the last result is in /health and /metrics; a backup that
fails degrades /health, is counted, and stops nothing."""

from __future__ import annotations

from pathlib import Path

import orjson
from fastapi.testclient import TestClient

from vigil.api.auth import TokenStore
from vigil.config import Settings
from vigil.ingest import FileReport, discover, read_events
from vigil.serve.service import Service
from vigil.store.backup import verify
from vigil.web.server import build_app


def _served(folder: Path, dest: Path) -> tuple[Service, dict[str, str]]:
    settings = Settings.model_validate(
        {
            "data_dir": folder,
            "indicators": False,
            "pipeline": {"workers": 0},
            "backup": {"dest": dest, "every_s": 0.3},
        }
    )
    service = Service(settings)
    tokens = TokenStore(service.engine)
    return service, {
        "ingest": tokens.create("ingest", "test")[0],
        "viewer": tokens.create("viewer", "test")[0],
    }


def _ndjson(path: Path) -> bytes:
    """The records of a Zeek log as NDJSON lines, as an agent would send them."""
    lines = []
    for source in discover([path]):
        for batch in read_events(source, FileReport(source.name)):
            lines.extend(orjson.dumps(event.fields) for event in batch)
    return b"\n".join(lines)


def test_the_scheduled_backup_holds_what_was_taken_in_and_reports_itself(
    tmp_path, need_data, until
) -> None:
    dns = need_data("network", "stratosphere", "005-zeek-scenario-malicious", "dns.log")
    service, keys = _served(tmp_path / "data", tmp_path / "backup")
    with TestClient(build_app(service)) as client:
        ingest = {"Authorization": f"Bearer {keys['ingest']}"}
        reply = client.post("/api/v1/ingest", content=_ndjson(dns), headers=ingest)
        assert reply.status_code == 202 and reply.json()["accepted"] == 992
        assert service.drain(60)
        viewer = {"Authorization": f"Bearer {keys['viewer']}"}

        def backed_up_all() -> dict | None:
            last = client.get("/health", headers=viewer).json()["backup"]
            return last if last and last["ok"] and last["events"] == 992 else None

        last = until(backed_up_all, "a backup of every event")
        assert last["files"] > 0 and last["dest"] == str(tmp_path / "backup")
        metrics = client.get("/metrics", headers=viewer).text
        assert "vigil_backup_last_ok 1.0" in metrics
        assert 'vigil_backup_runs_total{result="ok"}' in metrics
    manifest, checked = verify(tmp_path / "backup")
    assert checked.parquet_rows == manifest.queries["events"] == 992


def test_a_failing_backup_degrades_health_and_the_service_goes_on(
    tmp_path, need_data, until
) -> None:
    dns = need_data("network", "stratosphere", "005-zeek-scenario-malicious", "dns.log")
    (tmp_path / "not-a-folder").write_text("x")
    service, keys = _served(tmp_path / "data", tmp_path / "not-a-folder")
    with TestClient(build_app(service)) as client:
        viewer = {"Authorization": f"Bearer {keys['viewer']}"}
        health = until(
            lambda: (h := client.get("/health", headers=viewer).json())["backup"] and h,
            "a backup's result",
        )
        assert health["status"] == "degraded"
        assert any(p.startswith("backup failing") for p in health["problems"])
        assert health["backup"]["ok"] is False and "not-a-folder" in health["backup"]["error"]
        metrics = client.get("/metrics", headers=viewer).text
        assert 'vigil_backup_runs_total{result="failed"}' in metrics
        assert "vigil_backup_last_ok 0.0" in metrics
        ingest = {"Authorization": f"Bearer {keys['ingest']}"}
        reply = client.post("/api/v1/ingest", content=_ndjson(dns), headers=ingest)
        assert reply.status_code == 202 and reply.json()["accepted"] == 992
        assert service.drain(60)
