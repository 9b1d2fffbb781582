"""Grouping alerts into incidents: joins and merges name the entities that made them,
windows close incidents, spans cut long ones (the next one follows it), kill-chain
progression raises severity, and incident risk favours rare rules."""

from __future__ import annotations

import pytest

from vigil.correlate import AlertIn, Correlator, Settings, progresses


def alert(id: str, time: float, rule: str = "r1", *entities: tuple[str, str], **kw) -> AlertIn:
    return AlertIn(id=id, time=time, rule=rule, title=rule, entities=entities, **kw)


HOST_A, HOST_B, ALICE = ("host", "ws-a"), ("host", "ws-b"), ("user", "alice")


def test_an_alert_joins_the_incident_naming_its_entity_and_says_which() -> None:
    correlator = Correlator()
    first = correlator.add(alert("a1", 0, "r1", HOST_A))
    second = correlator.add(alert("a2", 60, "r2", HOST_A, ALICE))
    assert first is second and len(correlator.incidents) == 1
    reasons = [(m.alert, m.reason) for m in first.reasons]
    assert reasons == [
        ("a1", "opened: no open incident names its entities"),
        ("a2", "shares host ws-a"),
    ]
    assert first.entities == {HOST_A, ALICE}


def test_an_alert_naming_two_open_incidents_merges_them_with_the_reason() -> None:
    correlator = Correlator()
    on_a = correlator.add(alert("a1", 0, "r1", HOST_A))
    on_alice = correlator.add(alert("a2", 10, "r2", ALICE, HOST_B))
    assert on_a is not on_alice
    bridge = correlator.add(alert("a3", 20, "r3", HOST_A, ALICE))
    assert bridge is on_a and list(correlator.incidents) == [on_a.id]
    assert bridge.merges == [f"{on_alice.id} merged at alert a3: it shares user alice (1 alerts)"]
    assert [a.id for a in bridge.alerts] == ["a1", "a2", "a3"]
    assert bridge.entities == {HOST_A, HOST_B, ALICE}
    # the merged incident's entities now lead here
    assert correlator.add(alert("a4", 30, "r1", HOST_B)) is bridge


def test_a_quiet_window_closes_an_incident_and_the_next_one_follows_it() -> None:
    correlator = Correlator(Settings(window=600, span=3600))
    first = correlator.add(alert("a1", 0, "r1", HOST_A))
    later = correlator.add(alert("a2", 601, "r1", HOST_A))
    assert later is not first and later.follows == first.id
    assert later.reasons[0].reason == f"opened: continues {first.id} (its window closed)"


def test_a_busy_incident_is_cut_at_its_span() -> None:
    correlator = Correlator(Settings(window=600, span=1800))
    seen = {correlator.add(alert(f"a{t}", t, "r1", HOST_A)).id for t in range(0, 3600, 300)}
    assert len(seen) == 2  # 0..1500 and 1800..3300


def test_tactics_in_kill_chain_order_raise_the_level_one_step() -> None:
    correlator = Correlator()
    steps = ["initial-access", "execution", "credential-access"]
    for n, tactic in enumerate(steps):
        incident = correlator.add(
            alert(f"a{n}", n, f"r{n}", HOST_A, level="medium", tactics=(tactic,))
        )
        assert incident.level == ("high" if n == 2 else "medium")
    assert progresses(["credential-access", "execution", "initial-access"], 3) is False
    assert progresses(["execution", "impact", "persistence", "exfiltration"], 3) is True


def test_alerts_without_entities_group_by_rule() -> None:
    correlator = Correlator()
    one = correlator.add(alert("a1", 0, "scan"))
    assert correlator.add(alert("a2", 5, "scan")) is one
    assert correlator.add(alert("a3", 5, "other")) is not one


def test_rare_rules_outrank_a_long_stream_of_a_common_one() -> None:
    correlator = Correlator()
    for n in range(500):  # a noisy host: one rule, all day
        correlator.add(alert(f"n{n}", n * 60, "noise", HOST_A))
    for n, rule in enumerate(["scan", "exploit", "shell"]):
        correlator.add(alert(f"x{n}", 30_000 + n, rule, HOST_B))
    top = correlator.ranked()[0]
    assert top.entities == {HOST_B}
    assert top.risk == pytest.approx(correlator.score(top))


def test_entity_risk_is_updated_per_alert() -> None:
    correlator = Correlator(Settings(half_life=3600))
    correlator.add(alert("a1", 0, "r1", HOST_A, level="high"))
    correlator.add(alert("a2", 3600, "r1", HOST_A, level="medium"))
    assert correlator.risk.risk(HOST_A, 3600) == pytest.approx(25 / 2 + 10)
    changes = correlator.take_risk_changes()
    assert [(c.entity, round(c.risk, 2)) for c in changes] == [(HOST_A, 25.0), (HOST_A, 22.5)]
    assert correlator.take_risk_changes() == []
