"""The decision log keeps every decision: 20,000 decided from two threads at once are all on
the `decisions` stream (a real segment log), in order, anchored range by range in the audit
chain with each range's count and the SHA-256 of its records; the chain verifies; and over the API a
decision is in the log before it is answered."""

from __future__ import annotations

import asyncio
import hashlib
import queue
import threading
import time

import orjson
import pytest
from fastapi.testclient import TestClient

from vigil.api.auth import TokenStore
from vigil.bus import LocalStream
from vigil.config import Settings
from vigil.respond.audit import AuditLog
from vigil.serve.service import Service
from vigil.store import state_engine
from vigil.web.server import build_app
from vigil.zerotrust.log import DecisionLog
from vigil.zerotrust.pdp import DecisionPoint
from vigil.zerotrust.policy import AccessRequest, parse

POLICY = {
    "policies": [
        {
            "id": "wiki",
            "subjects": {"anyone": True},
            "resources": {"names": ["wiki"]},
            "actions": ["read"],
        }
    ]
}


def test_every_decision_is_kept_in_order_and_anchored(tmp_path) -> None:
    stream = LocalStream(tmp_path / "decisions", fsync=False)
    audit = AuditLog(state_engine(tmp_path))
    log = DecisionLog(stream.publish, lambda b: audit.append("zt", "decisions.logged", "d", b))
    pdp = DecisionPoint(parse(POLICY, "p"), log=log.append)
    log.start()

    def ask(who: str) -> None:
        for n in range(10_000):
            pdp.decide(AccessRequest(f"{who}{n}", "read", "wiki" if n % 2 else "payroll"))

    askers = [threading.Thread(target=ask, args=(w,)) for w in ("a", "b")]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join()
    log.stop()
    records = [data for _, data in stream.fetch(0, 100_000, 0)]
    assert len(records) == 20_000 == log.written
    outcomes = [orjson.loads(r)["outcome"] for r in records]
    assert outcomes.count("allow") == outcomes.count("deny") == 10_000
    anchors = [orjson.loads(e["detail"]) for e in audit.entries()]
    assert sum(a["count"] for a in anchors) == 20_000
    at = 0
    for anchor in anchors:  # each range's digest matches what the stream holds
        batch = records[at : at + anchor["count"]]
        assert hashlib.sha256(b"\n".join(batch)).hexdigest() == anchor["sha256"]
        at += anchor["count"]
    assert audit.verify().ok


def test_over_the_api_a_decision_is_logged_before_it_is_answered(tmp_path) -> None:
    policies = tmp_path / "policies.yml"
    policies.write_text(orjson.dumps(POLICY).decode())  # JSON is YAML
    service = Service(
        Settings.model_validate(
            {
                "data_dir": tmp_path / "data",
                "indicators": False,
                "starter_rules": False,
                "zerotrust": {"policies": [str(policies)]},
            }
        )
    )
    token = TokenStore(service.engine).create("pep", "proxy")[0]
    with TestClient(build_app(service)) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        allowed = client.post(
            "/api/v1/access/decision",
            json={"subject": "alice", "action": "read", "resource": "wiki"},
        )
        denied = client.post(
            "/api/v1/access/decision",
            json={"subject": "alice", "action": "write", "resource": "wiki"},
        )
        assert service.decision_log.written == 2  # kept before the answers came back
    assert allowed.status_code == 200 and allowed.json()["outcome"] == "allow"
    assert allowed.json()["policy"] == "wiki"
    assert denied.json()["outcome"] == "deny"
    assert denied.json()["reasons"] == ["no policy lets alice write wiki"]


def test_a_coroutine_waits_for_its_decision_without_a_thread_and_gives_up_on_a_stalled_log(
    tmp_path,
) -> None:
    written: list[int] = []
    stalled = threading.Event()

    def publish(records) -> None:
        if stalled.is_set():  # a stalled stream: the batch is written two seconds late
            time.sleep(2.0)
        written.append(len(records))

    log = DecisionLog(publish)
    pdp = DecisionPoint(parse(POLICY, "p"))
    log.start()

    async def ask() -> tuple[bool, bool]:
        first = log.append(pdp.decide(AccessRequest("alice", "read", "wiki"), logged=False))
        kept = await log.kept(first, timeout=5)
        stalled.set()
        second = log.append(pdp.decide(AccessRequest("bob", "read", "wiki"), logged=False))
        return kept, await log.kept(second, timeout=0.3)

    kept, late = asyncio.run(ask())  # the waiter's event loop is closed from here on
    stalled.clear()
    third = log.append(pdp.decide(AccessRequest("carol", "read", "wiki"), logged=False))
    assert log.wait(third, 5)  # the writer outlived the waiter that gave up
    log.stop()
    assert kept and written[0] == 1
    assert not late  # not on the stream within its time: the API answers 503, not an allow
    assert sum(written) == 3  # and the decision is still written once the stream is back


def test_a_full_log_refuses_a_decision_it_cannot_keep_instead_of_blocking() -> None:
    written: list[bytes] = []
    log = DecisionLog(written.extend, most=1)  # its writer not started: nothing drains it
    pdp = DecisionPoint(parse(POLICY, "p"))
    first = log.append(pdp.decide(AccessRequest("alice", "read", "wiki"), logged=False))
    with pytest.raises(queue.Full):
        log.append(pdp.decide(AccessRequest("bob", "read", "wiki"), logged=False), wait=False)
    log.start()
    assert log.wait(first, 5) and len(written) == 1  # the refused one was never logged
    log.stop()
