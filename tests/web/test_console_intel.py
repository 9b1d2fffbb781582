"""The intel page on a real service with the ESET MISP feed imported as `vigil intel import`
stores it: a value looked up shows the indicator with its source (a subdomain finds its
parent's), the source is listed with its counts and last update, the latest indicators are
paged, a sighting recorded as the pipeline records them is listed, and hostile values and
source names are shown as text."""

from __future__ import annotations

import pytest

from vigil.intel.importers import import_path
from vigil.intel.model import Indicator
from vigil.intel.store import Sighting, indicator_key

KNOWN = "server-1.ostdownload.xyz"  # a domain of the ESET feed
SOURCE = "misp:misp-feed-eset"


@pytest.fixture
def feed(console, need_data):
    """The ESET MISP feed in the indicator store (as `vigil intel import` records it)."""
    store = console.service.indicators_store
    for item in import_path(need_data("threat_intel", "misp-feed-eset")):
        assert item.kind == "misp-feed"
        store.record_import(item.result, kind=item.kind, location=item.location)
    return console


def section(page: str, name: str) -> str:
    return page.split(f'id="{name}"')[1].split("</section>")[0]


def test_a_value_looked_up_shows_the_indicator_and_its_source(feed) -> None:
    feed.sign_in("viewer")
    page = feed.get("/console/intel", params={"value": KNOWN})
    assert page.status_code == 200
    lookup = section(page.text, "lookup")
    assert f'<td class="wrap mono">{KNOWN}</td>' in lookup and SOURCE in lookup
    assert f"/console/alerts?indicator={KNOWN}" in lookup  # the pivot to its alerts
    parent = section(feed.get("/console/intel", params={"value": f"a.b.{KNOWN}"}).text, "lookup")
    assert KNOWN in parent  # a subdomain finds its parent's indicator
    nothing = section(
        feed.get("/console/intel", params={"value": "nothing.invalid"}).text, "lookup"
    )
    assert "no indicator is nothing.invalid" in nothing


def test_sources_latest_indicators_and_sightings(feed) -> None:
    service = feed.service
    store = service.indicators_store
    stats = store.stats()
    (source,) = stats["sources"]
    key = indicator_key("domain", KNOWN)
    store.record_sightings([Sighting(key, "host:ws1", "dns.question.name", 1.7e9)])
    feed.sign_in("analyst")
    page = feed.get("/console/intel").text
    sources = section(page, "sources")
    assert SOURCE in sources and f"{source['indicators']:,}" in sources
    assert "misp-feed" in sources
    recent = section(page, "recent")
    assert recent.count('<td class="wrap mono">') == 50 and 'rel="next"' in recent
    assert f"of {stats['indicators']:,}" in recent
    second = section(feed.get("/console/intel?offset=50").text, "recent")
    assert 'rel="prev"' in second and second.count('<td class="wrap mono">') == 50
    sightings = section(page, "sightings")
    assert KNOWN in sightings and "host:ws1" in sightings and "dns.question.name" in sightings
    # the API pages the same
    headers = {"Authorization": f"Bearer {feed.tokens['viewer']}"}
    api = feed.client.get("/api/v1/indicators/sightings", headers=headers).json()
    assert [(s["value"], s["where"], s["count"]) for s in api] == [(KNOWN, "host:ws1", 1)]
    latest = feed.client.get("/api/v1/indicators/recent?limit=3", headers=headers).json()
    assert len(latest) == 3 and all(SOURCE in i["sources"] for i in latest)


def test_hostile_values_and_sources_are_text(feed) -> None:
    store = feed.service.indicators_store
    hostile = "<script>alert('intel')</script>.exe"
    store.add([Indicator("filename", hostile, "<img src=x onerror=alert('src')>")])
    feed.sign_in("viewer")
    page = feed.get("/console/intel", params={"value": hostile}).text
    assert "<script>alert(" not in page and "<img src=x" not in page
    lookup = section(page, "lookup")
    assert "&lt;script&gt;alert(&#39;intel&#39;)&lt;/script&gt;.exe" in lookup
    assert "&lt;img src=x onerror=alert(&#39;src&#39;)&gt;" in lookup
