"""Continuous verification: a session opened by an allow is decided again the moment the
user's live risk changes (as the zerotrust stage hands it over from correlation); once no
longer allowed it is revoked at once, the next request in it is refused with the reason, the
revocation is in the audit chain, and a push receiver gets a signed CAEP session-revoked
token naming the session."""

from __future__ import annotations

import orjson
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import KeySet

from servers import Inbox, in_thread
from vigil.api.auth import TokenStore
from vigil.config import Settings
from vigil.respond.audit import AuditLog
from vigil.serve.service import Service
from vigil.web.server import build_app
from vigil.zerotrust.ssf import DEVICE_COMPLIANCE_CHANGE, SESSION_REVOKED

POLICY = {
    "policies": [
        {
            "id": "wiki",
            "subjects": {"anyone": True},
            "resources": {"names": ["wiki"]},
            "actions": ["read"],
            "when": {"max_user_risk": 50},
            "session_s": 600,
        }
    ]
}


def served(tmp_path, policy: dict[str, object], push: str) -> Service:
    """A service deciding on `policy`, with one push receiver (the proxy)."""
    policies = tmp_path / "policies.yml"
    policies.write_text(orjson.dumps(policy).decode())
    receiver = {"id": "proxy", "audience": "https://proxy.test", "push_url": push}
    return Service(
        Settings.model_validate(
            {
                "data_dir": tmp_path / "data",
                "indicators": False,
                "starter_rules": False,
                "zerotrust": {"policies": [str(policies)], "receivers": [receiver]},
            }
        )
    )


def test_a_session_is_revoked_the_moment_risk_crosses_and_receivers_are_told(tmp_path) -> None:
    with in_thread(Inbox()) as receiver:
        service = served(tmp_path, POLICY, f"{receiver.url}/ssf")
        token = TokenStore(service.engine).create("pep", "proxy")[0]
        asked = {"subject": "alice", "action": "read", "resource": "wiki", "open_session": True}
        with TestClient(build_app(service)) as client:
            client.headers["Authorization"] = f"Bearer {token}"
            opened = client.post("/api/v1/access/decision", json=asked).json()
            assert opened["outcome"] == "allow" and opened["obligations"] == {"session_s": 600}
            session = opened["session"]
            again = {**asked, "open_session": False, "session": session}
            assert client.post("/api/v1/access/decision", json=again).json()["outcome"] == "allow"
            service.knowledge.set_risk("user", "alice", 35.0)  # below the line: it holds
            assert service.sessions.check(session) is None
            service.knowledge.set_risk("user", "alice", 80.0)  # over it: revoked at once
            refused = client.post("/api/v1/access/decision", json=again).json()
            assert refused["outcome"] == "deny"
            assert refused["reasons"] == ["the session was revoked: wiki: user risk 80 is over 50"]
            jwks = client.get("/api/v1/ssf/jwks").json()
        service.transmitter.close()
        [pushed] = receiver.tokens
    claims = jwt.decode(pushed, KeySet.import_key_set(jwks)).claims
    assert claims["sub_id"] == {"format": "opaque", "id": session}
    assert claims["aud"] == "https://proxy.test"
    revoked = claims["events"][SESSION_REVOKED]
    assert revoked["reason_admin"] == {"en": "wiki: user risk 80 is over 50"}
    said = [(e["action"], e["subject"]) for e in AuditLog(service.engine).entries()]
    assert ("session.revoked", f"session:{session}") in said


def test_the_containment_playbook_ends_the_sessions_of_the_compromised_host(tmp_path) -> None:
    policies = tmp_path / "policies.yml"
    policies.write_text(orjson.dumps(POLICY).decode())
    service = Service(
        Settings.model_validate(
            {
                "data_dir": tmp_path / "data",
                "indicators": False,
                "starter_rules": False,
                "zerotrust": {"policies": [str(policies)]},
                "respond": {"dry_run": False, "firewall": {"hosts": {}}},
            }
        )
    )
    from vigil.zerotrust.policy import AccessRequest

    asked = AccessRequest("alice", "read", "wiki", device="ws9")
    opened = service.sessions.open(asked, service.pdp.decide(asked))
    other = AccessRequest("bob", "read", "wiki", device="ws1")
    kept = service.sessions.open(other, service.pdp.decide(other))
    responder = service.responder
    assert responder is not None
    book = responder.playbook("contain-credential-dumping")
    step = next(s for s in book.all_steps() if s.id == "end-sessions")
    result = responder.connectors.run(
        step.action,
        {"device": "ws9", "reason": "LSASS dumped"},
        key="run:end-sessions",
        dry_run=False,
        timeout_s=5,
    )
    assert result.ok and result.state == {"revoked": [opened.id]}
    assert service.sessions.check(opened.id) == "the session was revoked: LSASS dumped"
    assert service.sessions.check(kept.id) is None  # another host's session stays
    service.stop()


DEVICE_POLICY = {
    "policies": [
        {
            "id": "payroll",
            "subjects": {"anyone": True},
            "resources": {"names": ["payroll"]},
            "actions": ["read"],
            "when": {"device": {"managed": True, "edr": True}},
        }
    ]
}


def test_an_import_saying_edr_stopped_revokes_the_devices_session_at_once(tmp_path) -> None:
    """The assets stage announces the hosts an import changed (`inventory` stream); the
    zerotrust-inventory stage reads them from the inventory at once, so the session on that
    device is revoked and the receivers told the device is no longer compliant, without
    waiting for the minute's reload."""
    with in_thread(Inbox()) as receiver:
        service = served(tmp_path, DEVICE_POLICY, f"{receiver.url}/ssf")
        token = TokenStore(service.engine).create("pep", "proxy")[0]
        asked = {
            "subject": "bob",
            "action": "read",
            "resource": "payroll",
            "device": "ws7",
            "open_session": True,
        }
        with TestClient(build_app(service)) as client:
            client.headers["Authorization"] = f"Bearer {token}"
            service.import_assets(b"hostname,ip,edr\nws7,10.0.1.7,yes\n", "mdm.csv")
            assert service.drain(30)
            opened = client.post("/api/v1/access/decision", json=asked).json()
            assert opened["outcome"] == "allow", opened
            service.import_assets(b"hostname,ip,edr\nws7,10.0.1.7,stopped\n", "mdm.csv")
            assert service.drain(30)  # the assets stage, then zerotrust-inventory
            assert service.sessions.check(opened["session"]) == (
                "the session was revoked: payroll: device ws7: edr is not True"
            )
        service.transmitter.close()
        kinds = [
            next(
                iter(
                    jwt.decode(t, KeySet.import_key_set(service.transmitter.key.jwks())).claims[
                        "events"
                    ]
                )
            )
            for t in receiver.tokens
        ]
    assert kinds.count(SESSION_REVOKED) == 1 and kinds.count(DEVICE_COMPLIANCE_CHANGE) == 1
