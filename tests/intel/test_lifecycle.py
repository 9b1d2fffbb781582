"""Decay, expiry, revocation and sightings, against values computed by hand from the
published polynomial formula: score = base * (1 - (t / tau) ** (1 / delta))."""

from __future__ import annotations

import pytest

from vigil.intel import Indicator
from vigil.intel.lifecycle import DAY, DecayModel, current_score, is_live
from vigil.intel.store import IndicatorStore, Sighting, indicator_key

T0 = 1_700_000_000.0


@pytest.mark.parametrize(
    ("base", "tau", "delta", "days", "expected"),
    [
        (80, 60, 1.0, 15, 60.0),  # 80 * (1 - 15/60)
        (80, 60, 2.0, 15, 40.0),  # 80 * (1 - (1/4) ** (1/2)) = 80 * 0.5
        (80, 60, 0.5, 15, 75.0),  # 80 * (1 - (1/4) ** 2) = 80 * 0.9375
        (100, 180, 1.0, 45, 75.0),  # 100 * (1 - 1/4)
        (50, 60, 1.0, 0, 50.0),  # fresh: the base score
        (80, 60, 1.0, 60, 0.0),  # at the end of its lifetime
        (80, 60, 1.0, 90, 0.0),  # after it: 0, never negative
        (90, 30, 3.0, 3.75, 45.0),  # 90 * (1 - (1/8) ** (1/3)) = 90 * 0.5
    ],
)
def test_score_follows_the_polynomial_formula(base, tau, delta, days, expected) -> None:
    assert DecayModel(tau, delta).score(base, days * DAY) == pytest.approx(expected)


def test_a_time_in_the_future_counts_as_now() -> None:
    assert DecayModel(60).score(70, -5 * DAY) == 70


def test_ip_indicators_without_confidence_decay_below_the_threshold_after_36_days() -> None:
    # base 50 (no confidence given), tau 60 days for IPs, threshold 20:
    # 50 * (1 - t/60) >= 20  <=>  t <= 36 days
    since = T0
    assert current_score("ipv4", None, since, T0 + 35 * DAY) == pytest.approx(50 * (1 - 35 / 60))
    for days, live in ((35, True), (36, True), (36.5, False), (37, False)):
        got = is_live(
            "ipv4",
            confidence=None,
            since=since,
            valid_until=None,
            revoked=False,
            now=T0 + days * DAY,
        )
        assert got is live, days


def test_url_lifetime_is_180_days_and_hashes_365() -> None:
    assert current_score("url", 100, T0, T0 + 90 * DAY) == pytest.approx(50.0)
    assert current_score("sha256", 100, T0, T0 + 73 * DAY) == pytest.approx(80.0)


def test_expired_and_revoked_indicators_are_not_live() -> None:
    kwargs = {"confidence": 90, "since": T0, "now": T0 + DAY}
    assert is_live("domain", valid_until=None, revoked=False, **kwargs)
    assert not is_live("domain", valid_until=T0 + DAY, revoked=False, **kwargs)
    assert not is_live("domain", valid_until=None, revoked=True, **kwargs)


def keys_live(store: IndicatorStore, now: float) -> set[int]:
    return {key for key, _, _ in store.live(now)}


def test_a_sighting_raises_the_score_back_and_keeps_the_indicator_live(tmp_path) -> None:
    store = IndicatorStore.open(tmp_path)
    store.add([Indicator("ipv4", "203.0.113.7", "feed-a", reference="r1")], now=T0)
    key = indicator_key("ipv4", "203.0.113.7")
    assert keys_live(store, T0 + 30 * DAY) == {key}
    assert keys_live(store, T0 + 37 * DAY) == set()  # 50 * (1 - 37/60) = 19.2 < 20
    # seen in our logs on day 30: on day 37 it is 7 days since, 50 * (1 - 7/60) = 44.17
    store.record_sightings([Sighting(key, "host-1", "destination.ip", T0 + 30 * DAY)])
    assert keys_live(store, T0 + 37 * DAY) == {key}
    (stored,) = store.get([key]).values()
    assert stored.sightings == 1
    assert stored.score(T0 + 37 * DAY) == pytest.approx(50 * (1 - 7 / 60))


def test_sightings_merge_per_indicator_place_and_field(tmp_path) -> None:
    store = IndicatorStore.open(tmp_path)
    store.add([Indicator("domain", "evil.example", "feed-a")], now=T0)
    key = indicator_key("domain", "evil.example")
    store.record_sightings(
        [
            Sighting(key, "h1", "dns.question.name", T0 + 10),
            Sighting(key, "h1", "dns.question.name", T0 + 5),
            Sighting(key, "h2", "dns.question.name", T0 + 20),
        ],
        now=T0 + 100,
    )
    store.record_sightings([Sighting(key, "h1", "dns.question.name", T0 + 50)], now=T0 + 200)
    rows = {(r["where"], r["count"], r["first_seen"], r["last_seen"]) for r in store.sightings()}
    assert rows == {("h1", 3, T0 + 5, T0 + 50), ("h2", 1, T0 + 20, T0 + 20)}
    (stored,) = store.get([key]).values()
    assert stored.sightings == 4
    assert stored.last_sighting == T0 + 50
