"""The Zero Trust page on a real service deciding on real policies: decisions made through the
PDP route are listed the latest first with their reasons (filtered by subject and outcome),
the session an allow opened is live, a grant waiting for approval is approved by the role
its rule names and not by a viewer (nor by a post without the anti-forgery value), the
segment policy in force and the staged one's findings are shown, hostile text stays text."""

from __future__ import annotations

import re
from collections.abc import Iterator

import orjson
import pytest
from console_client import Browser, browser

from vigil.config import Settings
from vigil.events.flows import Flow, flows_record
from vigil.serve.service import Service
from vigil.web.server import build_app
from vigil.zerotrust.policy import AccessRequest

POLICIES = {
    "policies": [
        {
            "id": "wiki-readers",
            "subjects": {"anyone": True},
            "resources": {"names": ["wiki"]},
            "actions": ["read"],
            "session_s": 600,
        }
    ],
    "grants": [
        {
            "id": "payroll-audit",
            "subjects": {"users": ["carol"]},
            "resources": {"names": ["payroll"]},
            "actions": ["read"],
            "max_s": 3600,
            "approval": True,
            "approvers": ["responder"],
        }
    ],
}
SEGMENTS = """\
segments:
  - {name: office, cidrs: [10.1.0.0/16]}
  - {name: servers, cidrs: [10.2.0.0/16]}
flows:
  - {src: office, dst: servers, protocol: tcp, ports: [443]}
"""
STAGED = """\
segments:
  - {name: office, cidrs: [10.1.0.0/16]}
  - {name: servers, cidrs: [10.2.0.0/16]}
flows:
  - {src: office, dst: servers, protocol: udp, ports: [53]}
"""
HOSTILE = "<script>alert('subject')</script>"


@pytest.fixture
def zt(tmp_path) -> Iterator[Browser]:
    """A service with the policies and a segment policy in force, and its console."""
    policies = tmp_path / "policies.yml"
    policies.write_text(orjson.dumps(POLICIES).decode())
    segments = tmp_path / "segments.yml"
    segments.write_text(SEGMENTS)
    staged = tmp_path / "proposed.yml"
    staged.write_text(STAGED)
    settings = Settings.model_validate(
        {
            "data_dir": tmp_path / "data",
            "indicators": False,
            "starter_rules": False,
            "pipeline": {"workers": 0},
            "zerotrust": {
                "policies": [str(policies)],
                "segments": str(segments),
                "segments_staged": str(staged),
            },
        }
    )
    service = Service(settings)
    made = browser(build_app(service), service)
    with made.client:
        yield made


def decide(zt: Browser, **asked: object) -> dict:
    """A decision through the real PDP route (the admin's token may decide)."""
    headers = {"Authorization": f"Bearer {zt.tokens['admin']}"}
    answer = zt.client.post("/api/v1/access/decision", json=asked, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


def decisions_table(page: str) -> str:
    return page.split('id="decisions"')[1].split("</section>")[0]


def test_decisions_are_listed_latest_first_with_their_reasons(zt) -> None:
    allowed = decide(zt, subject="alice", action="read", resource="wiki", open_session=True)
    assert allowed["outcome"] == "allow" and allowed["session"]
    denied = decide(zt, subject="bob", action="write", resource="payroll")
    assert denied["outcome"] == "deny"
    decide(zt, subject=HOSTILE, action="read", resource="payroll")
    zt.sign_in("viewer")
    page = zt.get("/console/zerotrust")
    assert page.status_code == 200
    table = decisions_table(page.text)
    assert "allowed by wiki-readers" in table and "no policy lets bob write payroll" in table
    assert table.index("payroll") < table.index("allowed by wiki-readers")  # latest first
    # filtered by subject, by outcome
    bob = decisions_table(zt.get("/console/zerotrust", params={"subject": "BOB"}).text)
    assert "no policy lets bob write payroll" in bob and "wiki-readers" not in bob
    allows = decisions_table(zt.get("/console/zerotrust?outcome=allow").text)
    assert "allowed by wiki-readers" in allows and "payroll" not in allows
    # the session the allow opened is live
    sessions = page.text.split('id="sessions"')[1].split("</section>")[0]
    assert "alice" in sessions and "wiki" in sessions
    # the API reads the same
    api = zt.client.get(
        "/api/v1/access/decisions",
        params={"subject": "alice"},
        headers={"Authorization": f"Bearer {zt.tokens['viewer']}"},
    ).json()
    assert [d["id"] for d in api["decisions"]] == [allowed["id"]]
    # hostile text is shown as text
    assert "<script>alert(" not in page.text
    assert "&lt;script&gt;alert(&#39;subject&#39;)&lt;/script&gt;" in page.text


def test_a_waiting_grant_is_approved_by_its_approver_not_by_a_viewer(zt) -> None:
    grants = zt.service.grants
    waiting = grants.ask("carol", "payroll", ["read"], 600, "year-end audit")
    other = grants.ask("carol", "payroll", ["read"], 600, "second look")
    assert waiting.state == "waiting"
    zt.sign_in("viewer")
    page = zt.get("/console/zerotrust").text
    assert "year-end audit" in page and f"/console/zerotrust/grants/{waiting.id}" not in page
    refused = zt.post(f"/console/zerotrust/grants/{waiting.id}", {"decision": "approve"})
    assert refused.status_code == 403 and "viewer role may not playbooks:approve" in refused.text
    assert grants.find(state="waiting", limit=10)[0]["state"] == "waiting"

    zt.sign_in("responder")
    page = zt.get("/console/zerotrust").text
    assert f'action="/console/zerotrust/grants/{waiting.id}"' in page
    forged = zt.client.post(
        f"/console/zerotrust/grants/{waiting.id}",
        data={"decision": "approve"},
        follow_redirects=False,
    )
    assert forged.status_code == 403  # no anti-forgery value
    done = zt.post(f"/console/zerotrust/grants/{waiting.id}", {"decision": "approve"})
    assert done.status_code == 303 and done.headers["location"] == "/console/zerotrust"
    states = {g["id"]: g for g in grants.find(limit=10)}
    assert states[waiting.id]["state"] == "active"
    assert states[waiting.id]["approver"] == "token:responder-user"
    assert zt.post(f"/console/zerotrust/grants/{other.id}", {"decision": "deny"}).status_code == 303
    assert {g["id"]: g for g in grants.find(limit=10)}[other.id]["state"] == "denied"
    # deciding again is a conflict, shown as a page
    again = zt.post(f"/console/zerotrust/grants/{waiting.id}", {"decision": "deny"})
    assert again.status_code == 409 and "not waiting" in again.text
    shown = zt.get("/console/zerotrust?grant_state=active").text
    grants_part = shown.split('id="grants"')[1].split("</section>")[0]
    assert "year-end audit" in grants_part and "second look" not in grants_part
    assert "state-active" in grants_part


def test_the_segment_policy_and_what_the_staged_one_would_block(zt) -> None:
    service = zt.service
    flows = [
        Flow("10.1.0.5", "10.2.0.9", "tcp", 443, 1.0e9, "C1"),  # allowed; staged: blocked
        Flow("10.1.0.5", "10.2.0.9", "tcp", 22, 1.0e9 + 1, "C2"),  # a violation
    ]
    service.streams["flows"].publish([flows_record(flows)])  # as the detect stage does
    assert service.runners["segments"].drain(10)
    zt.sign_in("analyst")
    page = zt.get("/console/zerotrust").text
    part = page.split('id="segments"')[1]
    assert "10.1.0.0/16" in part and "proposed.yml" in part
    assert re.search(r"<td>office</td><td>servers</td><td>tcp</td><td[^>]*>443</td>", part)
    assert "2 flows checked, <strong>1</strong> violations" in part
    staged = part.split("Staged policy")[1]
    assert "2 flows seen, <strong>2</strong> it would block" in staged
    assert re.search(
        r"<td>office</td><td>servers</td><td>tcp</td>\s*<td class=\"num\">443</td>", staged
    )
    assert "10.1.0.5 → 10.2.0.9" in staged


def test_decisions_are_paged_latest_first(zt) -> None:
    service = zt.service
    for n in range(55):
        service.pdp.decide(AccessRequest(f"user{n}", "read", "wiki"))  # logged as it decides
    assert service.decision_log.wait(55)
    zt.sign_in("viewer")
    first = decisions_table(zt.get("/console/zerotrust").text)
    assert first.count("allowed by wiki-readers") == 50 and 'rel="next"' in first
    assert first.index("user54") < first.index("user53") and "user4<" not in first
    second = decisions_table(zt.get("/console/zerotrust?offset=50").text)
    assert second.count("allowed by wiki-readers") == 5 and 'rel="prev"' in second
    assert ">user0<" in second and ">user54<" not in second
