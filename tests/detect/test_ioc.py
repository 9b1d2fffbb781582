"""Indicator matching on events' ECS entities: exact values, parent domains, networks,
URLs, hashes, e-mail, and what must not match."""

from __future__ import annotations

import pytest

from vigil.detect.ioc import IndicatorMatcher, IntelScan
from vigil.events import Event
from vigil.intel import Indicator, canonical
from vigil.intel.store import IndicatorStore, indicator_key


def matcher_of(*items: tuple[str, str]) -> IndicatorMatcher:
    matcher = IndicatorMatcher()
    for kind, value in items:
        kind, value = canonical(kind, value)
        matcher.add(indicator_key(kind, value), kind, value)
    matcher.compile()
    return matcher


def zeek(dataset: str, **fields) -> Event:
    return Event(fields=fields, source="test.log", record=1, dataset=dataset)


def matched(matcher: IndicatorMatcher, event: Event) -> set[tuple[str, str, str]]:
    return {(m.type, m.indicator, m.field) for m in matcher.match(event)}


def test_a_domain_matches_itself_and_its_subdomains_but_not_lookalikes() -> None:
    matcher = matcher_of(("domain", "Evil.Example."))
    for query, hit in (
        ("evil.example", True),
        ("EVIL.example.", True),
        ("a.b.evil.example", True),
        ("notevil.example", False),
        ("evil.example.org", False),
        ("example", False),
    ):
        event = zeek("zeek.dns", query=query)
        want = {("domain", "evil.example", "dns.question.name")} if hit else set()
        assert matched(matcher, event) == want, query


def test_a_bare_top_level_domain_indicator_does_not_match_every_name() -> None:
    matcher = matcher_of(("domain", "com"))
    assert matched(matcher, zeek("zeek.dns", query="www.google.com")) == set()


def test_addresses_match_exactly_and_within_overlapping_networks() -> None:
    matcher = matcher_of(
        ("ipv4", "198.51.100.7"),
        ("cidr", "198.51.100.0/24"),
        ("cidr", "198.51.0.0/16"),
        ("cidr", "2001:db8::/32"),
    )
    event = zeek("zeek.conn", **{"id.orig_h": "10.0.0.1", "id.resp_h": "198.51.100.7"})
    assert matched(matcher, event) == {
        ("ipv4", "198.51.100.7", "destination.ip"),
        ("cidr", "198.51.100.0/24", "destination.ip"),
        ("cidr", "198.51.0.0/16", "destination.ip"),
    }
    event = zeek("zeek.conn", **{"id.orig_h": "198.51.200.1", "id.resp_h": "198.52.0.1"})
    assert matched(matcher, event) == {("cidr", "198.51.0.0/16", "source.ip")}
    event = zeek("zeek.conn", **{"id.orig_h": "2001:db8::1", "id.resp_h": "2001:db9::1"})
    assert matched(matcher, event) == {("cidr", "2001:db8::/32", "source.ip")}
    # the edges of a network: first and last address in, the ones beside out
    for address, hit in (("198.51.0.0", True), ("198.51.255.255", True),
                         ("198.50.255.255", False), ("198.52.0.0", False)):  # fmt: skip
        event = zeek("zeek.conn", **{"id.resp_h": address})
        assert bool(matched(matcher, event)) is hit, address


def test_urls_match_in_canonical_form_with_the_host_kept_apart() -> None:
    matcher = matcher_of(("url", "http://Bad.Example/gate.php?id=1"))
    event = zeek("zeek.http", host="bad.example", uri="/gate.php?id=1")
    assert matched(matcher, event) == {("url", "bad.example/gate.php?id=1", "url.original")}
    event = zeek("zeek.http", host="bad.example", uri="/gate.php?id=2")
    assert matched(matcher, event) == set()


def test_hashes_emails_files_and_address_ports_match() -> None:
    sha = "a" * 64
    matcher = matcher_of(
        ("sha256", sha.upper()),
        ("email", "Phisher@Bad.Example"),
        ("ip-port", "203.0.113.9:4444"),
    )
    files = zeek("zeek.files", sha256=sha, filename="x.exe")
    assert matched(matcher, files) == {("sha256", sha, "file.hash.sha256")}
    smtp = zeek("zeek.smtp", mailfrom="<phisher@bad.example>", rcptto=["a@corp.example"])
    assert matched(matcher, smtp) == {("email", "phisher@bad.example", "email.from.address")}
    conn = zeek("zeek.conn", **{"id.resp_h": "203.0.113.9", "id.resp_p": 4444})
    assert matched(matcher, conn) == {("ip-port", "203.0.113.9:4444", "destination")}
    other_port = zeek("zeek.conn", **{"id.resp_h": "203.0.113.9", "id.resp_p": 443})
    assert matched(matcher, other_port) == set()


def test_sysmon_hashes_match_through_the_ecs_view() -> None:
    md5 = "0123456789abcdef0123456789abcdef"
    matcher = matcher_of(("md5", md5))
    event = Event(
        fields={"EventID": 1, "Hashes": f"SHA1={'b' * 40},MD5={md5.upper()},IMPHASH={'c' * 32}"},
        source="sysmon.evtx",
        product="windows",
        dataset="windows",
    )
    assert matched(matcher, event) == {("md5", md5, "file.hash.md5")}


def test_revoked_and_expired_indicators_do_not_match_while_another_source_keeps_them(
    tmp_path,
) -> None:
    store = IndicatorStore.open(tmp_path)
    store.add(
        [
            Indicator("domain", "gone.example", "feed-a", revoked=True),
            Indicator("domain", "old.example", "feed-a", valid_until=1.0),
            Indicator("domain", "both.example", "feed-a", revoked=True),
            Indicator("domain", "both.example", "feed-b", confidence=90),
        ]
    )
    intel = IntelScan.load(store)
    assert set(intel.matcher.domains) == {"both.example"}
    (detection,) = intel.detections([zeek("zeek.dns", query="www.both.example")], "now")
    assert detection.kind == "indicator"
    assert detection.level == "high"  # feed-b's confidence 90
    assert [s["source"] for s in detection.details["sources"]] == ["feed-b"]


def test_deduplicated_indicators_keep_every_source_and_their_attack_tags(tmp_path) -> None:
    store = IndicatorStore.open(tmp_path)
    counts = store.add(
        [
            Indicator(
                "ipv4",
                "192.0.2.5",
                "misp:eset",
                confidence=70,
                techniques=("T1071.001",),
                actors=("Turla",),
                reference="uuid-1",
            ),
            Indicator(
                "ipv4",
                "192.0.2.5",
                "stix:report.json",
                confidence=40,
                techniques=("T1105",),
                reference="indicator--1",
            ),
        ]
    )
    assert (counts.new, counts.indicators) == (1, 2)
    intel = IntelScan.load(store)
    event = zeek("zeek.conn", **{"id.orig_h": "10.1.1.1", "id.resp_h": "192.0.2.5"})
    (detection,) = intel.detections([event], "now")
    assert detection.details["confidence"] == 70
    assert set(detection.details["techniques"]) == {"T1071.001", "T1105"}
    assert {"attack.t1071.001", "attack.t1105"} <= set(detection.tags)
    assert "Turla" in detection.rule_title
    assert detection.matched_fields == {"destination.ip": "192.0.2.5"}
    assert {s["source"] for s in detection.details["sources"]} == {"misp:eset", "stix:report.json"}


@pytest.mark.parametrize("count", [10, 10_000])
def test_lookups_per_event_do_not_depend_on_how_many_indicators_are_loaded(count) -> None:
    """The matcher only does hash lookups and bisections: what it touches per event is the
    same for 10 or 10,000 indicators (counted through the dict and bisect calls made)."""
    matcher = matcher_of(
        *[("domain", f"d{i}.example") for i in range(count)],
        *[("cidr", f"10.{i % 250}.{i // 250}.0/24") for i in range(count)],
    )
    probes: list[str] = []

    class Counting(dict):
        def get(self, key, default=None):  # type: ignore[override]
            probes.append(key)
            return super().get(key, default)

    matcher.domains = Counting(matcher.domains)
    event = zeek("zeek.dns", query="a.b.c.example", **{"id.resp_h": "10.1.2.3"})
    matcher.match(event)
    assert probes == ["a.b.c.example", "b.c.example", "c.example"]


def test_ipv6_address_ports_match_in_brackets() -> None:
    matcher = matcher_of(("ip-port", "[2001:DB8::9]:4444"))
    conn = zeek("zeek.conn", **{"id.resp_h": "2001:db8::9", "id.resp_p": 4444})
    assert matched(matcher, conn) == {("ip-port", "[2001:db8::9]:4444", "destination")}


def test_an_attribute_deleted_in_misp_stops_matching_when_its_event_is_read_again(
    tmp_path,
) -> None:
    from vigil.intel.misp import from_event

    def event(deleted: bool) -> dict:
        attribute = {"uuid": "a-1", "type": "domain", "value": "c2.example", "to_ids": True,
                     "deleted": deleted, "timestamp": "1700000000"}  # fmt: skip
        return {"Event": {"uuid": "e-1", "info": "x", "threat_level_id": "1",
                          "Attribute": [attribute]}}  # fmt: skip

    store = IndicatorStore.open(tmp_path)
    store.record_import(from_event(event(False), "misp:feed"), kind="misp-feed", location="x")
    assert set(IntelScan.load(store).matcher.domains) == {"c2.example"}
    store.record_import(from_event(event(True), "misp:feed"), kind="misp-feed", location="x")
    assert set(IntelScan.load(store).matcher.domains) == set()
