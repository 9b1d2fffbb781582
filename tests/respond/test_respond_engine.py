"""The response engine on SQLite and a real PostgreSQL: an alert starts one run per key; steps
run in order, a parallel block at once; a failed step compensates what the run did, newest
first, and undo does the same for a finished run; an approval gate holds a run without a
worker, refuses the wrong role, lets the right one through, and denies by itself when its time
passes; guardrails refuse our own addresses and hold protected assets (named, tagged, a crown
jewel in the inventory) for approval; every step is in the audit chain."""

from __future__ import annotations

import time
from typing import Any

import pytest

from vigil.config import RespondSettings
from vigil.correlate.store import IncidentStore
from vigil.errors import Conflict, Forbidden
from vigil.events.records import Action, Alert, Detection
from vigil.respond.actions import ACTIONS
from vigil.respond.audit import AuditLog
from vigil.respond.engine import Responder
from vigil.respond.playbook import parse
from vigil.store import state_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        return state_engine(tmp_path)
    return state_engine(request.getfixturevalue("postgres_url"))


def playbook(steps: list[Any], **trigger: Any) -> Any:
    return parse(
        {
            "id": "test-book",
            "name": "Test",
            "trigger": {"type": "alert", **trigger},
            "steps": steps,
        },
        "test",
        ACTIONS,
    )


def alert(n: int, host: str = "ws1", ip: str = "203.0.113.7", **kw: Any) -> Alert:
    detection = Detection(
        "sigma",
        "rule-1",
        "LSASS read",
        kw.get("level", "high"),
        "test",
        ("attack.credential-access", "attack.t1003.001"),
        time.time(),
        None,
        host,
        "f",
        n,
        {},
        {"Image": "x"},
        "now",
    )
    return Alert(
        f"alert-{n}",
        detection,
        (("host", host), ("ip", ip), ("user", "corp\\alice")),
        raised=time.time(),
    )


def responder(engine, book, *, assets=None, **settings: Any) -> tuple[Responder, list[Action]]:
    published: list[Action] = []
    given = RespondSettings.model_validate(
        {"firewall": {"hosts": {"ws1": [], "dc1": []}}, **settings}
    )
    made = Responder(
        engine,
        given,
        IncidentStore(engine),
        assets=assets,
        publish=published.extend,
        playbooks=[book],
        worker="test",
    )
    return made, published


def steps_of(made: Responder, run_id: str, phase: str = "steps") -> list[tuple[str, str]]:
    return [(s["step"], s["state"]) for s in made.run(run_id)[phase]]


def test_one_run_per_key_steps_in_order_and_a_parallel_block(engine) -> None:
    book = playbook(
        [
            {"id": "block", "action": "firewall.block", "with": {"address": "{{ entity.ip }}"}},
            {
                "parallel": [
                    {
                        "id": "isolate",
                        "action": "firewall.isolate",
                        "with": {"host": "{{ entity.host }}"},
                    },
                    {
                        "id": "note",
                        "action": "case.open",
                        "with": {"incident": ""},
                        "when": "entity.nothing",
                        "on_failure": "continue",
                    },
                ]
            },
        ],
        tags=["attack.t1003"],
        level="high",
        entity="host",
        dedupe="{{ entity.host }}",
    )
    made, published = responder(engine, book)
    first = made.on_alerts([alert(1), alert(2)])
    assert len(first) == 1 and made.on_alerts([alert(3)]) == []  # one run per host
    assert made.on_alerts([alert(4, level="medium", host="ws2")]) == []  # below the level
    assert made.execute(first[0]) == "done"
    done = steps_of(made, first[0])
    assert done[0] == ("block", "done")  # first; then the parallel block, in either order
    assert set(done[1:]) == {("isolate", "done"), ("note", "skipped")}
    run = made.run(first[0])
    assert run["dry_run"] is True  # the global pilot mode
    assert run["steps"][0]["inputs"] == {"address": "203.0.113.7"}
    assert run["steps"][0]["result"]["commands"]  # what it would have sent
    assert [a.state for a in published if a.step == "block"] == ["done"]
    actions = [e["action"] for e in AuditLog(engine).entries()]
    assert actions.count("run.created") == 1 and actions.count("action.done") == 2
    assert AuditLog(engine).verify().ok


def test_a_failed_step_compensates_newest_first_and_undo_does_too(engine) -> None:
    book = playbook(
        [
            {"id": "block", "action": "firewall.block", "with": {"address": "{{ entity.ip }}"}},
            {"id": "isolate", "action": "firewall.isolate", "with": {"host": "{{ entity.host }}"}},
            {"id": "isolate-other", "action": "firewall.isolate", "with": {"host": "nowhere"}},
        ],
    )
    made, _ = responder(engine, book)
    run_id = made.on_alerts([alert(1)])[0]
    assert made.execute(run_id) == "failed"
    assert steps_of(made, run_id) == [
        ("block", "compensated"),
        ("isolate", "compensated"),
        ("isolate-other", "failed"),
    ]
    undo = made.run(run_id)["undo"]
    assert [(u["action"], u["state"]) for u in undo] == [
        ("firewall.release", "done"),
        ("firewall.unblock", "done"),
    ]
    assert "no firewall is configured for host 'nowhere'" in made.run(run_id)["reason"]

    block = {"id": "block", "action": "firewall.block", "with": {"address": "{{ entity.ip }}"}}
    isolate = {"id": "isolate", "action": "firewall.isolate", "with": {"host": "{{ entity.host }}"}}
    two = playbook([block, isolate])
    made, _ = responder(engine, two.model_copy(update={"id": "two"}))
    run_id = made.on_alerts([alert(2)])[0]
    assert made.execute(run_id) == "done"
    with pytest.raises(Conflict):
        made.decide_run(run_id, "approved", "alice", None)  # it was never held
    made.undo(run_id, "alice")
    assert made.execute(run_id) == "undone"
    assert [u["action"] for u in made.run(run_id)["undo"]] == [
        "firewall.release",
        "firewall.unblock",
    ]
    with pytest.raises(Conflict):
        made.undo(run_id, "alice")  # once


def test_an_approval_holds_without_a_worker_and_only_the_right_role_decides(engine) -> None:
    book = playbook(
        [
            {
                "id": "isolate",
                "action": "firewall.isolate",
                "with": {"host": "{{ entity.host }}"},
                "approval": {"roles": ["responder"], "timeout_s": 600},
            }
        ]
    )
    made, published = responder(engine, book)
    run_id = made.on_alerts([alert(1)])[0]
    assert made.execute(run_id) == "waiting"
    assert not made._active  # no worker holds it
    [pending] = made.pending()
    assert pending["run_id"] == run_id and pending["approval_roles"] == ["responder"]
    with pytest.raises(Forbidden):
        made.approve(run_id, "isolate", "victor", {"viewer"})
    made.approve(run_id, "isolate", "rita", {"responder"})
    with pytest.raises(Conflict):
        made.approve(run_id, "isolate", "rita", {"responder"})  # decided already
    assert made.execute(run_id) == "done"
    assert [a.state for a in published if a.step == "isolate"] == ["waiting", "approved", "done"]
    said = [(e["actor"], e["action"]) for e in AuditLog(engine).entries()]
    assert ("vigil:respond", "approval.requested") in said and ("rita", "approval.approved") in said


def test_an_unanswered_approval_is_denied_when_its_time_passes(engine) -> None:
    book = playbook(
        [
            {
                "id": "isolate",
                "action": "firewall.isolate",
                "with": {"host": "{{ entity.host }}"},
                "approval": {"timeout_s": 5},
            }
        ]
    )
    made, _ = responder(engine, book)
    run_id = made.on_alerts([alert(1)])[0]
    assert made.execute(run_id) == "waiting"
    made.sweep(now=time.time() + 1)
    assert made.run(run_id)["state"] == "waiting"  # not yet
    made.sweep(now=time.time() + 10)
    assert made.execute(run_id) == "denied"
    assert steps_of(made, run_id) == [("isolate", "denied")]
    assert made.run(run_id)["steps"][0]["decided_by"] == "vigil:timeout"


def test_guardrails_refuse_our_addresses_and_hold_protected_assets(engine, tmp_path) -> None:
    from vigil.assets.importers import import_bytes
    from vigil.assets.store import AssetStore

    assets = AssetStore(engine)
    cmdb = b"hostname,ip,criticality,tags\ndc1,10.0.0.5,crown-jewel,domain-controller\n"
    assets.merge(import_bytes(cmdb, "cmdb.csv"))
    book = playbook(
        [
            {
                "id": "block",
                "action": "firewall.block",
                "with": {"address": "{{ entity.ip }}"},
                "on_failure": "continue",
            },
            {"id": "isolate", "action": "firewall.isolate", "with": {"host": "{{ entity.host }}"}},
        ],
    )
    made, _ = responder(engine, book, assets=assets, guardrails={"protected_hosts": ["ws1"]})
    internal = made.on_alerts([alert(1, host="dc1", ip="10.20.30.40")])[0]
    assert made.execute(internal) == "waiting"
    run = made.run(internal)
    assert steps_of(made, internal) == [("block", "refused"), ("isolate", "waiting")]
    assert "never-block list (10.0.0.0/8)" in run["steps"][0]["error"]
    assert "crown jewel" in run["steps"][1]["approval_reason"]
    named = made.on_alerts([alert(2, host="ws1", ip="198.51.100.1")])[0]
    assert made.execute(named) == "waiting"
    assert "protected" in made.run(named)["steps"][1]["approval_reason"]
    made.deny(named, "isolate", "rita", {"responder"}, "it is the CEO's laptop")
    assert made.execute(named) == "denied"
    assert steps_of(made, named) == [("block", "done"), ("isolate", "denied")]


def test_a_retry_waits_its_backoff_without_holding_a_worker(engine, lab) -> None:
    host_ns, _ = lab
    book = playbook(
        [
            {
                "id": "isolate",
                "action": "firewall.isolate",
                "with": {"host": "{{ entity.host }}"},
                "retries": 2,
                "backoff_s": 0.3,
            }
        ]
    )
    made, _ = responder(engine, book, dry_run=False)
    hosts = made.settings.firewall.hosts
    hosts["ws1"] = ["ip", "netns", "exec", f"{host_ns}-not-yet"]  # nft fails there: retried
    run_id = made.on_alerts([alert(1)])[0]
    began = time.monotonic()
    assert made.execute(run_id) == "running"
    assert time.monotonic() - began < 0.3  # it did not sleep through its backoff
    assert not made._active and steps_of(made, run_id) == [("isolate", "retrying")]
    made.execute(run_id)  # too early: nobody takes it before its time
    assert made.run(run_id)["steps"][0]["attempts"] == 1
    hosts["ws1"] = ["ip", "netns", "exec", host_ns]
    time.sleep(0.35)
    assert made.execute(run_id) == "done"
    step = made.run(run_id)["steps"][0]
    assert step["attempts"] == 2 and step["result"]["state"]["isolated"] is True
