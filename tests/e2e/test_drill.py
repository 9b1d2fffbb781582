"""The recovery drill on real Zeek events: what was acknowledged but not yet processed when
the data folder was lost is replayed from the restored intake log (RPO 0); a drill that
cannot run fails and leaves the data folder as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.bus.segments import SegmentLog
from vigil.config import Settings
from vigil.serve import drill as drill_module
from vigil.serve.drill import DrillFailed, drill
from vigil.serve.service import Service
from vigil.store.backup import BackupError


def _settings(folder: Path) -> Settings:
    return Settings.model_validate(
        {"data_dir": folder, "indicators": False, "pipeline": {"workers": 0}}
    )


@pytest.fixture
def dns(need_data) -> Path:
    return need_data("network", "stratosphere", "005-zeek-scenario-malicious", "dns.log")


def test_acknowledged_events_not_yet_processed_survive_the_loss(tmp_path, dns) -> None:
    settings = _settings(tmp_path / "data")
    service = Service(settings)
    service.start()
    half = service.feed([dns])
    assert service.drain(60)  # the first copy processed and stored
    service.stop()
    service = Service(settings)  # not started: the second copy is acknowledged, not processed
    taken = service.feed([dns])
    service.stop()
    report = drill(settings, tmp_path / "backup")
    assert half == taken == 992  # the records of dns.log (its header lines are no events)
    assert report.acknowledged == half + taken
    assert report.rpo_events == 0
    assert report.stored + report.set_aside == report.acknowledged
    assert report.stored == 2 * 992
    assert report.rto_seconds > 0 and report.lost_folder.is_dir()
    assert report.alerts_after >= report.alerts_before


def test_a_drill_on_a_folder_in_use_fails_and_changes_nothing(tmp_path, dns) -> None:
    settings = _settings(tmp_path / "data")
    service = Service(settings)
    service.feed([dns])
    service.stop()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with SegmentLog(tmp_path / "data" / "intake"), pytest.raises(DrillFailed, match="in use"):
        drill(settings, tmp_path / "backup")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_failed_restore_puts_the_original_folder_back(tmp_path, dns, monkeypatch) -> None:
    settings = _settings(tmp_path / "data")
    service = Service(settings)
    service.feed([dns])
    service.stop()
    intake = sorted((tmp_path / "data" / "intake").glob("*.seg"))
    contents = [p.read_bytes() for p in intake]

    def damaged(src: Path, data_dir: Path) -> None:
        data_dir.mkdir()
        (data_dir / "half-restored").write_text("x")
        raise BackupError(f"{src}/state.db: SHA-256 differs from the manifest's (damaged)")

    monkeypatch.setattr(drill_module, "restore", damaged)
    with pytest.raises(DrillFailed, match="original data folder is back"):
        drill(settings, tmp_path / "backup")
    assert [p.read_bytes() for p in intake] == contents
    assert not (tmp_path / "data" / "half-restored").exists()
    assert list(tmp_path.glob("data.failed-restore-*"))
