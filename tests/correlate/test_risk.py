"""Entity risk halves every half-life; the values here are worked out by hand."""

from __future__ import annotations

import pytest

from vigil.correlate import EntityRisk

HOST = ("host", "ws-1")


def test_risk_halves_every_half_life_and_adds_up() -> None:
    risk = EntityRisk(half_life=3600)
    risk.add(HOST, 10, at=0)
    assert risk.risk(HOST, 0) == 10
    assert risk.risk(HOST, 3600) == pytest.approx(5)
    assert risk.risk(HOST, 7200) == pytest.approx(2.5)
    risk.add(HOST, 25, at=3600)  # 10 · ½ + 25
    assert risk.risk(HOST, 3600) == pytest.approx(30)
    assert risk.risk(HOST, 5400) == pytest.approx(30 / 2**0.5)  # half a half-life later


def test_a_late_alert_counts_with_the_decay_it_has_had() -> None:
    risk = EntityRisk(half_life=3600)
    risk.add(HOST, 10, at=3600)
    risk.add(HOST, 20, at=0)  # arrives late: by 3600 it is worth 10
    assert risk.risk(HOST, 3600) == pytest.approx(20)


def test_levels_give_their_points_and_unknown_entities_have_none() -> None:
    risk = EntityRisk(half_life=60)
    changes = risk.alert([HOST, ("user", "bob")], "critical", at=0)
    assert [c.risk for c in changes] == [50, 50]
    assert risk.risk(("user", "carol"), 0) == 0
    assert [e for e, _ in risk.top(0)] == [HOST, ("user", "bob")]
    with pytest.raises(ValueError):
        EntityRisk(half_life=0)
