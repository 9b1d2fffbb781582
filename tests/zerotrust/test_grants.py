"""Just-in-time access: a grant lets its user do what it names during its window, and one
second after the window ends the same request is denied; asking outside the grant rules is
refused; a rule that wants approval holds the grant until a person of the right role
decides; every request, start and end of a grant is in the audit chain (the end written when
it happens, not when someone next asks)."""

from __future__ import annotations

import time

import pytest

from vigil.errors import Forbidden, InputError
from vigil.respond.audit import AuditLog
from vigil.store import state_engine
from vigil.zerotrust.grants import Grants
from vigil.zerotrust.pdp import DecisionPoint
from vigil.zerotrust.policy import AccessRequest, parse

POLICIES = parse(
    {
        "grants": [
            {
                "id": "dba-break-glass",
                "subjects": {"groups": ["dba"]},
                "resources": {"names": ["prod-db"]},
                "actions": ["admin"],
                "max_s": 60,
            },
            {
                "id": "payroll-audit",
                "subjects": {"users": ["carol"]},
                "resources": {"names": ["payroll"]},
                "actions": ["read"],
                "max_s": 3600,
                "approval": True,
                "approvers": ["responder"],
            },
        ]
    },
    "grants.yml",
)
ADMIN_DB = AccessRequest("alice", "admin", "prod-db", groups=("dba",))


def test_a_grant_allows_during_its_window_and_is_denied_a_second_after(tmp_path) -> None:
    audit = AuditLog(state_engine(tmp_path))
    grants = Grants(audit.engine, POLICIES, audit.append)
    pdp = DecisionPoint(POLICIES, grants=grants.covering)
    assert pdp.decide(ADMIN_DB).outcome == "deny"  # no grant yet: default deny
    grant = grants.ask("alice", "prod-db", ["admin"], 1.5, "INC-42: restore", groups=["dba"])
    allowed = pdp.decide(ADMIN_DB)
    assert allowed.outcome == "allow" and allowed.policy == f"grant:{grant.id}"
    assert 0 < allowed.obligations["session_s"] <= 2
    assert pdp.decide(AccessRequest("alice", "read", "prod-db")).outcome == "deny"  # not named
    assert pdp.decide(AccessRequest("bob", "admin", "prod-db")).outcome == "deny"  # not theirs
    time.sleep(max(0.0, grant.ends + 1.0 - time.time()))  # a second after it ends
    denied = pdp.decide(ADMIN_DB)
    assert denied.outcome == "deny" and denied.policy is None
    said = [(e["action"], e["subject"]) for e in audit.entries()]
    for action in ("grant.requested", "grant.started", "grant.expired"):
        assert (action, f"grant:{grant.id}") in said, said
    expired = next(e for e in audit.entries() if e["action"] == "grant.expired")
    assert grant.ends <= expired["at"] < grant.ends + 1.0  # ended on time, by itself
    assert audit.verify().ok
    grants.close()


def test_asking_is_bounded_by_the_rules_and_approval_waits_for_the_right_role(tmp_path) -> None:
    audit = AuditLog(state_engine(tmp_path))
    grants = Grants(audit.engine, POLICIES, audit.append)
    with pytest.raises(Forbidden, match="no grant rule lets mallory"):
        grants.ask("mallory", "prod-db", ["admin"], 60, "why not", groups=["sales"])
    with pytest.raises(InputError, match="at most 60 s"):
        grants.ask("alice", "prod-db", ["admin"], 3600, "long", groups=["dba"])
    waiting = grants.ask("carol", "payroll", ["read"], 600, "year-end audit")
    assert waiting.state == "waiting"
    pdp = DecisionPoint(POLICIES, grants=grants.covering)
    read = AccessRequest("carol", "read", "payroll")
    assert pdp.decide(read).outcome == "deny"  # not before a person says yes
    with pytest.raises(Forbidden):
        grants.decide(waiting.id, "approved", "victor", {"viewer"})
    approved = grants.decide(waiting.id, "approved", "rita", {"responder"})
    assert approved.state == "active" and approved.ends - approved.starts == pytest.approx(600)
    assert pdp.decide(read).outcome == "allow"
    said = [(e["actor"], e["action"]) for e in audit.entries()]
    assert ("rita", "grant.approved") in said
    grants.close()


def test_vigil_zt_lists_grants_and_sessions(run_cli, tmp_path) -> None:
    from vigil.zerotrust.pdp import Decision
    from vigil.zerotrust.sessions import Sessions

    data = tmp_path / "data"
    engine = state_engine(data)
    grants = Grants(engine, POLICIES)
    grant = grants.ask("alice", "prod-db", ["admin"], 30, "INC-42", groups=["dba"])
    grants.close()
    sessions = Sessions(engine, DecisionPoint(POLICIES))
    allow = Decision("d1", time.time(), "allow", ADMIN_DB, obligations={"session_s": 60})
    opened = sessions.open(ADMIN_DB, allow)
    sessions.revoke(opened.id, "user risk 80 is over 50")
    listed = run_cli("zt", "grants", "--data-dir", data)
    assert listed.exit_code == 0, listed.output
    assert grant.id[:8] in listed.output and "active" in listed.output
    revoked = run_cli("zt", "sessions", "--state", "revoked", "--data-dir", data)
    assert revoked.exit_code == 0 and opened.id[:8] in revoked.output
    assert "user risk 80" in revoked.output.replace("\n", " ")
