"""Incidents in the state database and their cases: the stage saves what correlation made
(and a replayed batch adds nothing), merges move alerts and case entries, the status
workflow refuses what it cannot do and stamps what it does, evidence is kept by SHA-256,
and response metrics come from the stamps."""

from __future__ import annotations

import hashlib
import io
import time

import pytest

from vigil.correlate import IncidentStage, Settings
from vigil.errors import Conflict, Invalid, NotFound

HOST, ALICE, OTHER = ("host", "ws-1"), ("user", "alice"), ("host", "ws-2")


def test_the_stage_saves_incidents_with_reasons_and_skips_a_replay(store, alert) -> None:
    stage = IncidentStage(store)
    heard: list = []
    stage.listeners.append(heard.append)
    batch = [
        alert("a1", 100, HOST, event_time=40, raised=160, level="high"),
        alert("a2", 110, HOST, ALICE, rule="r2", raised=170),
    ]
    (incident,) = stage.feed(batch)
    assert stage.feed(batch) == []  # the same alerts again (a replay): nothing new
    (saved,) = store.ranked()
    assert saved["id"] == incident.id and saved["alerts"] == 2 and saved["status"] == "new"
    assert saved["entities"] == ["host:ws-1", "user:alice"]
    assert saved["mttd_s"] == 120  # first alert raised at 160, its event at 40
    full = store.get(incident.id)
    assert full["reasons"] == [
        {"alert": "a1", "reason": "opened: no open incident names its entities"},
        {"alert": "a2", "reason": "shares host ws-1"},
    ]
    # 10 s of a day's half-life: 25 · 2^(-10/86400) + 10
    assert [[(c.entity, round(c.risk, 3)) for c in changes] for changes in heard] == [
        [(HOST, 25.0), (HOST, 34.998), (ALICE, 10.0)]
    ]
    assert {(e["kind"], e["value"]): round(e["risk"], 3) for e in store.entities()} == {
        ("host", "ws-1"): 34.998, ("user", "alice"): 10.0,
    }  # fmt: skip


def test_a_merge_moves_alerts_and_case_entries_to_the_incident_that_stays(store, alert) -> None:
    stage = IncidentStage(store)
    (first,) = stage.feed([alert("a1", 100, HOST)])
    (second,) = stage.feed([alert("a2", 105, ALICE)])
    store.note(second.id, "ana", "looked at alice")
    (merged,) = stage.feed([alert("a3", 110, HOST, ALICE)])
    assert merged.id == first.id and store.count() == 1
    full = store.get(first.id)
    assert full["alert_ids"] == ["a1", "a2", "a3"]
    assert full["merges"] == [f"{second.id} merged at alert a3: it shares user alice (1 alerts)"]
    assert [e["text"] for e in full["timeline"]] == ["looked at alice"]


def test_status_workflow_stamps_its_times_and_refuses_the_impossible(store, alert) -> None:
    (incident,) = IncidentStage(store).feed([alert("a1", 100, HOST)])
    case = incident.id
    with pytest.raises(Invalid, match="unknown status"):
        store.set_status(case, "closed", "ana")
    store.set_status(case, "triaged", "ana", note="real")
    with pytest.raises(Conflict, match="is triaged: it can go to contained, resolved"):
        store.set_status(case, "new", "ana")
    store.set_status(case, "contained", "bo")
    store.set_status(case, "resolved", "bo")
    store.set_status(case, "triaged", "ana")  # reopened
    row = store.get(case)
    assert row["status"] == "triaged"
    assert row["created"] <= row["triaged_at"] <= row["contained_at"] <= row["resolved_at"]
    steps = [e["text"] for e in row["timeline"] if e["kind"] == "status"]
    assert steps == ["new → triaged", "triaged → contained", "contained → resolved",
                     "resolved → triaged"]  # fmt: skip
    with pytest.raises(NotFound, match="no incident INC-nope"):
        store.set_status("INC-nope", "triaged", "ana")


def test_assignee_notes_tasks_and_evidence_make_one_timeline(store, tmp_path, alert) -> None:
    (incident,) = IncidentStage(store).feed([alert("a1", 100, HOST)])
    case = incident.id
    store.assign(case, "bo", "ana")
    store.note(case, "bo", "isolating ws-1")
    task = store.add_task(case, "bo", "collect memory image")
    content = b"MZ\x90\x00 suspicious binary" * 1000
    item = store.add_evidence(case, "bo", "../../etc/dropper.exe", io.BytesIO(content))
    assert item == {"name": "dropper.exe", "sha256": hashlib.sha256(content).hexdigest(),
                    "size": len(content)}  # fmt: skip
    kept = store.evidence_path(item["sha256"])
    assert kept.read_bytes() == content and kept.parent == tmp_path / "evidence"
    again = store.add_evidence(case, "bo", "copy.exe", io.BytesIO(content))
    assert again["sha256"] == item["sha256"] and len(list(kept.parent.iterdir())) == 1
    assert store.tasks(case) == [{"id": task, "title": "collect memory image", "done": False}]
    store.complete_task(case, task, "bo")
    assert store.tasks(case)[0]["done"] is True
    kinds = [e["kind"] for e in store.timeline(case)]
    assert kinds == ["assign", "note", "task", "evidence", "evidence", "done"]
    assert store.get(case)["assignee"] == "bo"
    with pytest.raises(NotFound, match="no task 999"):
        store.complete_task(case, 999, "bo")
    with pytest.raises(NotFound, match="no evidence"):
        store.evidence_path("0" * 64)


def test_response_metrics_come_from_the_stamps(store, monkeypatch, alert) -> None:
    import vigil.correlate.store as module

    class Clock:  # the store's `time` module, its clock set by the test
        now = 1000.0
        strftime = staticmethod(time.strftime)
        gmtime = staticmethod(time.gmtime)

        def time(self) -> float:
            return self.now

    clock = Clock()
    monkeypatch.setattr(module, "time", clock)
    stage = IncidentStage(store, Settings())
    (incident,) = stage.feed([alert("a1", 900, HOST, event_time=900, raised=960)])  # made at 1000
    clock.now = 1600.0
    store.set_status(incident.id, "triaged", "ana")  # acknowledged 600 s after
    clock.now = 4600.0
    store.set_status(incident.id, "resolved", "ana")  # resolved 3600 s after
    metrics = store.response_metrics(days=30, now=5000)
    assert (metrics["mttd"], metrics["mtta"], metrics["mttr"]) == (60, 600, 3600)
    assert metrics["mttc"] is None and metrics["incidents"] == 1
    assert metrics["mtta_by_day"] == {"1970-01-01": 600}
    row = store.get(incident.id)  # and per incident
    assert (row["mttd_s"], row["mtta_s"], row["mttc_s"], row["mttr_s"]) == (60, 600, None, 3600)
