"""`vigil incident ...`, `vigil entities`, `vigil metrics`: the case workflow from the
command line, on the data folder's database."""

from __future__ import annotations

import hashlib
import json

import pytest

from vigil.correlate import AlertIn, IncidentStage, IncidentStore
from vigil.store import migrate, state_engine


@pytest.fixture
def incident_id(tmp_path, monkeypatch) -> str:
    data = tmp_path / "vigil-data"
    monkeypatch.setenv("VIGIL_DATA_DIR", str(data))
    engine = state_engine(data)
    migrate(engine)
    stage = IncidentStage(IncidentStore(engine))
    (incident,) = stage.feed(
        [
            AlertIn(id="a1", time=100, rule="mimikatz", title="Mimikatz", level="high",
                    entities=(("host", "ws-1"), ("user", "alice")), tactics=("credential-access",),
                    event_time=90, raised=100),
            AlertIn(id="a2", time=110, rule="psexec", title="PsExec", level="medium",
                    entities=(("host", "ws-1"),), tactics=("lateral-movement",), raised=112),
        ]
    )  # fmt: skip
    return incident.id


def test_a_case_is_worked_from_the_command_line(run_cli, incident_id, tmp_path) -> None:
    listed = run_cli("incident", "list", "--json")
    assert listed.exit_code == 0, listed.output
    (row,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert row["id"] == incident_id and row["level"] == "high" and row["mttd_s"] == 10
    assert row["tactics"] == ["credential-access", "lateral-movement"]

    assert run_cli("incident", "status", incident_id, "triaged", "--note", "real").exit_code == 0
    refused = run_cli("incident", "status", incident_id, "new")
    assert refused.exit_code == 2 and "it can go to contained" in refused.stderr
    assert run_cli("incident", "assign", incident_id, "bo").exit_code == 0
    assert run_cli("incident", "note", incident_id, "ws-1 isolated").exit_code == 0
    task = run_cli("incident", "task", incident_id, "reset alice's password")
    assert task.exit_code == 0 and task.stdout.startswith("task ")
    task_id = task.stdout.split()[1]
    assert run_cli("incident", "task", incident_id, "--done", task_id).exit_code == 0
    evidence = tmp_path / "lsass.dmp"
    evidence.write_bytes(b"MDMP" * 4096)
    kept = run_cli("incident", "evidence", incident_id, str(evidence))
    assert hashlib.sha256(evidence.read_bytes()).hexdigest() in kept.stdout

    shown = json.loads(run_cli("incident", "show", incident_id, "--json").stdout)
    assert shown["status"] == "triaged" and shown["assignee"] == "bo"
    still_open = run_cli("incident", "list", "--status", "open", "--json").stdout.splitlines()
    assert [json.loads(line)["id"] for line in still_open] == [incident_id]
    assert shown["tasks"] == [{"id": int(task_id), "title": "reset alice's password", "done": True}]
    assert [e["kind"] for e in shown["timeline"]] == [
        "status", "assign", "note", "task", "done", "evidence",
    ]  # fmt: skip
    assert run_cli("incident", "show", incident_id).exit_code == 0
    missing = run_cli("incident", "show", "INC-none")
    assert missing.exit_code == 2 and "no incident INC-none" in missing.stderr

    risky = [json.loads(line) for line in run_cli("entities", "--json").stdout.splitlines()]
    assert [(e["kind"], e["value"]) for e in risky][:2] == [("host", "ws-1"), ("user", "alice")]
    figures = json.loads(run_cli("metrics", "--json").stdout)
    assert figures["incidents"] == 1 and figures["mttd"] == 10 and figures["mtta"] >= 0
    assert run_cli("metrics").exit_code == 0 and run_cli("incident", "list").exit_code == 0
