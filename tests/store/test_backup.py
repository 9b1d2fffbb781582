"""Backup and restore of Vigil's own state: a data folder made by a real embedded pipeline
(the demo intrusion: endpoint, network and cloud events, alerts, incidents) is backed up,
restored into a fresh folder and verified; damage to the backup is refused, file named."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from pathlib import Path

import pytest

from vigil import demo
from vigil.store.backup import BackupError, Manifest, backup, restore, run_queries, verify


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("state") / "vigil-data"
    incidents = demo.run(folder)
    assert incidents, "the demo made no incident to back up"
    return folder


def _flip_byte(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_restored_folder_answers_as_the_backed_up_one(data_dir, tmp_path) -> None:
    manifest = backup(data_dir, tmp_path / "backup")
    assert manifest.queries["alerts"][0][0] > 0
    assert manifest.queries["incidents"], "incidents are in the query set"
    parquet = [rel for rel in manifest.files if rel.endswith(".parquet")]
    assert parquet and manifest.queries["events"] == sum(
        manifest.files[rel]["rows"] for rel in parquet
    )
    assert "intake/committed" in manifest.files
    assert any(rel.endswith(".seg") for rel in manifest.files)
    checked = restore(tmp_path / "backup", tmp_path / "restored")
    assert checked.parquet_rows == manifest.queries["events"]
    restored = tmp_path / "restored"
    assert run_queries(restored / "vigil.db") == {
        k: v for k, v in manifest.queries.items() if k != "events"
    }
    for rel in manifest.files:
        assert (restored / rel).read_bytes() == (data_dir / rel).read_bytes(), rel


def test_a_second_backup_copies_only_what_changed(data_dir, tmp_path) -> None:
    first = backup(data_dir, tmp_path / "backup")
    parquet = [rel for rel in first.files if rel.endswith(".parquet")]
    segments = [rel for rel in first.files if rel.endswith(".seg")]
    assert first.copied >= len(parquet) + len(segments) > 0
    again = backup(data_dir, tmp_path / "backup")
    assert again.copied == 0 and again.copied_bytes == 0
    digests = [again.files[r]["sha256"] for r in parquet]
    assert digests == [first.files[r]["sha256"] for r in parquet]
    verify(tmp_path / "backup")


def test_one_damaged_byte_of_a_parquet_file_refuses_the_restore_naming_it(
    data_dir, tmp_path
) -> None:
    manifest = backup(data_dir, tmp_path / "backup")
    rel = next(rel for rel in manifest.files if rel.endswith(".parquet"))
    damaged = tmp_path / "backup" / "data" / rel
    _flip_byte(damaged, damaged.stat().st_size // 2)
    with pytest.raises(BackupError, match=re.escape(str(damaged))):
        restore(tmp_path / "backup", tmp_path / "restored")
    assert not (tmp_path / "restored").exists() or not any((tmp_path / "restored").iterdir())


def test_one_damaged_page_of_the_database_backup_refuses_the_restore(data_dir, tmp_path) -> None:
    backup(data_dir, tmp_path / "backup")
    database = tmp_path / "backup" / "state.db"
    page = sqlite3.connect(database).execute("PRAGMA page_size").fetchone()[0]
    _flip_byte(database, page * 2 + 100)  # inside the third page
    with pytest.raises(BackupError, match=r"state\.db"):
        restore(tmp_path / "backup", tmp_path / "restored")


def test_a_damaged_database_whose_digest_was_forged_still_fails_its_integrity_check(
    data_dir, tmp_path
) -> None:
    backup(data_dir, tmp_path / "backup")
    database = tmp_path / "backup" / "state.db"
    page = sqlite3.connect(database).execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(database.read_bytes())
    data[page * 2 : page * 3] = bytes([0x5A]) * page  # a whole page of garbage
    database.write_bytes(bytes(data))
    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    manifest["database"]["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    (tmp_path / "backup" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BackupError, match=r"state\.db"):
        verify(tmp_path / "backup")


def test_restore_refuses_a_folder_with_data_and_a_folder_without_a_backup(
    data_dir, tmp_path
) -> None:
    backup(data_dir, tmp_path / "backup")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "vigil.db").write_bytes(b"")
    with pytest.raises(Exception, match="fresh data folder"):
        restore(tmp_path / "backup", occupied)
    with pytest.raises(Exception, match=r"manifest\.json is missing"):
        Manifest.read(tmp_path)


def test_the_commands_back_up_verify_and_refuse_damage_with_exit_code_2(
    data_dir, tmp_path, run_cli
) -> None:
    result = run_cli("backup", tmp_path / "b", "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    assert "Backup written to" in result.output
    result = run_cli("restore", tmp_path / "b", "--data-dir", tmp_path / "r", "--verify")
    assert result.exit_code == 0, result.output
    assert "restored into" in result.output
    manifest = Manifest.read(tmp_path / "b")
    rel = next(rel for rel in manifest.files if rel.endswith(".parquet"))
    _flip_byte(tmp_path / "b" / "data" / rel, 200)
    result = run_cli("restore", tmp_path / "b", "--check-only")
    assert result.exit_code == 2
    assert rel.split("/")[-1] in result.output


@pytest.fixture
def postgres_state(tmp_path, postgres_server) -> tuple[Path, str]:
    """A data folder whose state database is on a real PostgreSQL server, filled by the
    embedded pipeline with the demo intrusion (alerts, incidents)."""
    import time

    from vigil.config import Settings
    from vigil.serve.pipeline import JSON
    from vigil.serve.service import Service

    url = postgres_server.database()
    settings = Settings.model_validate(
        {
            "data_dir": tmp_path / "pg-data",
            "database_url": url,
            "indicators": False,
            "pipeline": {"workers": 0},
        }
    )
    service = Service(settings)
    try:
        service.pipeline.publish(JSON, "demo", demo.records(time.time() - demo.duration()))
        assert service.drain(120)
    finally:
        service.stop()
    return tmp_path / "pg-data", url


def test_a_postgresql_state_database_is_dumped_and_restored_with_the_same_answers(
    postgres_state, postgres_server, tmp_path
) -> None:
    folder, url = postgres_state
    manifest = backup(folder, tmp_path / "backup", database_url=url)
    assert manifest.database["kind"] == "postgresql" and manifest.database["file"] == "state.pgdump"
    assert manifest.database["tables"]["alert"] == manifest.queries["alerts"][0][0] > 0
    assert manifest.queries["incidents"]
    target = postgres_server.database()
    checked = restore(tmp_path / "backup", tmp_path / "restored", database_url=target)
    assert checked.tables == manifest.database["tables"]
    with pytest.raises(Exception, match="empty database"):  # once only: it holds tables now
        restore(tmp_path / "backup", tmp_path / "again", database_url=target)


def test_a_damaged_postgresql_dump_is_refused_naming_it(postgres_state, postgres_server, tmp_path):
    folder, url = postgres_state
    backup(folder, tmp_path / "backup", database_url=url)
    dump = tmp_path / "backup" / "state.pgdump"
    _flip_byte(dump, dump.stat().st_size // 2)
    with pytest.raises(BackupError, match=re.escape(str(dump))):
        restore(tmp_path / "backup", tmp_path / "restored", database_url=postgres_server.database())
