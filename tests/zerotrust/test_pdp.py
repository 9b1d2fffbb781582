"""The policy decision point: default deny with a reason; an allow with its session lifetime;
step-up when only MFA or the device is missing; deny rules win; device posture, source
network, country (the offline database), working hours in the rule's time zone and live
risk each decide on their own; a broken policy file is refused naming the field."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from vigil.errors import InputError
from vigil.zerotrust.pdp import DecisionPoint, Knowledge
from vigil.zerotrust.policy import AccessRequest, parse

POLICIES = {
    "policies": [
        {
            "id": "finance-apps",
            "subjects": {"groups": ["finance"]},
            "resources": {"tags": ["finance-app"]},
            "actions": ["read", "write"],
            "when": {
                "mfa": True,
                "device": {"managed": True, "edr": True, "max_patch_age_days": 30},
                "networks": ["10.0.0.0/8"],
                "max_user_risk": 50,
                "max_device_risk": 50,
            },
            "step_up": ["mfa", "device"],
            "session_s": 1800,
        },
        {
            "id": "wiki-from-germany",
            "subjects": {"anyone": True},
            "resources": {"names": ["wiki"]},
            "actions": ["read"],
            "when": {"countries": ["DE"]},
        },
        {
            "id": "office-hours",
            "subjects": {"users": ["bob"]},
            "resources": {"names": ["hr"]},
            "when": {
                "hours": {
                    "days": ["mon", "tue", "wed", "thu", "fri"],
                    "start": "08:00",
                    "end": "18:00",
                    "tz": "Europe/Berlin",
                }
            },
        },
        {
            "id": "no-contractors-on-finance",
            "effect": "deny",
            "subjects": {"groups": ["contractor"]},
            "resources": {"tags": ["finance-app"]},
        },
    ]
}
ALICE = AccessRequest(
    "alice", "read", "payroll", groups=("finance",), mfa=True, device="ws1", source_ip="10.1.2.3"
)


@pytest.fixture
def pdp() -> DecisionPoint:
    knowledge = Knowledge()
    knowledge.set_resource("payroll", ["finance-app"], "finance")
    knowledge.set_device("ws1", {"managed": True, "edr": True, "patch_age_days": 3})
    knowledge.set_device("ws2", {"managed": True, "edr": False, "patch_age_days": 3})
    return DecisionPoint(parse(POLICIES, "test"), knowledge)


def test_allow_step_up_and_default_deny(pdp) -> None:
    allowed = pdp.decide(ALICE)
    assert (allowed.outcome, allowed.policy) == ("allow", "finance-apps")
    assert allowed.obligations == {"session_s": 1800}
    no_mfa = pdp.decide(dataclasses.replace(ALICE, mfa=False))
    assert no_mfa.outcome == "step_up" and no_mfa.obligations["step_up"] == ["mfa"]
    edr_off = pdp.decide(dataclasses.replace(ALICE, device="ws2"))
    assert edr_off.outcome == "step_up"
    assert edr_off.reasons == ("device ws2: edr is not True",)
    stranger = pdp.decide(dataclasses.replace(ALICE, subject="eve", groups=()))
    assert stranger.outcome == "deny" and stranger.policy is None
    assert stranger.reasons == ("no policy lets eve read payroll",)
    outside = pdp.decide(dataclasses.replace(ALICE, source_ip="192.0.2.7"))
    assert outside.outcome == "deny"  # a network is not something to step up to
    assert "outside 10.0.0.0/8" in outside.reasons[0]
    assert pdp.decide(dataclasses.replace(ALICE, action="delete")).outcome == "deny"


def test_a_deny_rule_wins_and_live_risk_revokes(pdp) -> None:
    contractor = pdp.decide(dataclasses.replace(ALICE, groups=("finance", "contractor")))
    assert (contractor.outcome, contractor.policy) == ("deny", "no-contractors-on-finance")
    pdp.knowledge.set_risk("user", "ALICE", 75.0)
    risky = pdp.decide(ALICE)
    assert risky.outcome == "deny" and risky.reasons == ("finance-apps: user risk 75 is over 50",)
    pdp.knowledge.set_risk("user", "alice", 10.0)
    pdp.knowledge.set_risk("host", "ws1", 90.0)
    assert pdp.decide(ALICE).reasons == ("finance-apps: device risk 90 is over 50",)


def test_country_from_the_offline_database_and_hours_in_the_rules_zone(pdp) -> None:
    wiki = AccessRequest("carol", "read", "wiki")
    assert pdp.decide(dataclasses.replace(wiki, source_ip="185.220.101.47")).outcome == "allow"
    abroad = pdp.decide(dataclasses.replace(wiki, source_ip="8.8.8.8"))
    assert abroad.outcome == "deny" and "country US is not one of DE" in abroad.reasons[0]
    private = pdp.decide(dataclasses.replace(wiki, source_ip="10.0.0.1"))
    assert "country unknown" in private.reasons[0]
    berlin = ZoneInfo("Europe/Berlin")
    monday_9 = datetime(2026, 11, 30, 9, 0, tzinfo=berlin).timestamp()
    monday_19 = datetime(2026, 11, 30, 19, 0, tzinfo=berlin).timestamp()
    saturday_9 = datetime(2026, 12, 5, 9, 0, tzinfo=berlin).timestamp()
    hr = AccessRequest("bob", "read", "hr")
    assert pdp.decide(dataclasses.replace(hr, at=monday_9)).outcome == "allow"
    assert pdp.decide(dataclasses.replace(hr, at=monday_19)).outcome == "deny"
    assert pdp.decide(dataclasses.replace(hr, at=saturday_9)).outcome == "deny"


def test_a_broken_policy_is_refused_naming_the_field() -> None:
    with pytest.raises(InputError, match=r"policies\.0\.when\.networks"):
        parse(
            {
                "policies": [
                    {
                        "id": "x",
                        "subjects": {},
                        "resources": {},
                        "when": {"networks": ["10.0.0.0/33"]},
                    }
                ]
            },
            "p.yml",
        )
    with pytest.raises(InputError, match="tz"):
        parse(
            {
                "policies": [
                    {
                        "id": "x",
                        "subjects": {},
                        "resources": {},
                        "when": {"hours": {"tz": "Mars/Olympus"}},
                    }
                ]
            },
            "p.yml",
        )
    with pytest.raises(InputError, match="effect"):
        parse(
            {"policies": [{"id": "x", "subjects": {}, "resources": {}, "effect": "maybe"}]}, "p.yml"
        )
