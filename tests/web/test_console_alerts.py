"""The alerts page: filters and pivots show exactly the matching alerts, paging reaches past
the first page, a hunt pivot runs and finds the alert's event, quick-adds write through the
intel and asset stores (a viewer's are refused), and event fields show as text."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from console_client import Browser, browser

from vigil.config import Settings
from vigil.detect.sigma import load_rules
from vigil.intel.model import Indicator
from vigil.intel.store import IndicatorStore
from vigil.serve.service import Service
from vigil.web.server import build_app

WHOAMI = "0b3a1c52-8d7e-4f61-9a2b-3c4d5e6f7a8b"
RULE = f"""\
title: Whoami
id: {WHOAMI}
status: test
logsource: {{product: windows, category: process_creation}}
detection:
    selection: {{Image|endswith: '\\\\whoami.exe'}}
    condition: selection
level: high
"""
BAD_IP = "203.0.113.66"  # an indicator a feed gave
SCRIPT = "<script>alert('pwned')</script>"
ALERT_LINK = re.compile(r'href="/console/alerts/([0-9a-f]{32})"')


def whoami(host: str, user: str, minute: int, command: str = "whoami /all") -> bytes:
    return orjson.dumps(
        {
            "EventID": 1,
            "Channel": "Microsoft-Windows-Sysmon/Operational",
            "Hostname": host,
            "User": f"CORP\\{user}",
            "UtcTime": f"2026-11-28 10:{minute:02d}:00.000",
            "Image": "C:\\Windows\\System32\\whoami.exe",
            "CommandLine": command,
        }
    )


def connection(host: str, user: str, destination: str) -> bytes:
    return orjson.dumps(
        {
            "EventID": 3,
            "Channel": "Microsoft-Windows-Sysmon/Operational",
            "Hostname": host,
            "User": f"CORP\\{user}",
            "UtcTime": "2026-11-28 10:30:00.000",
            "Image": "C:\\Users\\bob\\dropper.exe",
            "Protocol": "tcp",
            "SourceIp": "10.0.0.2",
            "SourcePort": 50123,
            "DestinationIp": destination,
            "DestinationPort": 443,
        }
    )


@pytest.fixture(scope="module")
def triage(tmp_path_factory) -> Iterator[Browser]:
    """A real service with a Sigma rule and an indicator, fed through its intake: alice's
    pc1 ran whoami 3 times (once with a script in its command line), bob's pc2 twice and
    connected once to the indicator's address, carol's pc3 60 times (for paging)."""
    folder: Path = tmp_path_factory.mktemp("triage")
    (folder / "rules").mkdir()
    (folder / "rules" / "whoami.yml").write_text(RULE)
    IndicatorStore.open(folder).add([Indicator("ipv4", BAD_IP, "feed", confidence=60)])
    settings = Settings(
        data_dir=folder, indicators=True, starter_rules=False, pipeline={"workers": 0}
    )
    service = Service(settings, loaded=load_rules([folder / "rules"], use_cache=False))
    made = browser(build_app(service), service)
    with made.client:
        events = [
            whoami("pc1", "alice", 1),
            whoami("pc1", "alice", 2, f"cmd /c whoami {SCRIPT}"),
            whoami("pc1", "alice", 3),
            whoami("pc2", "bob", 4),
            whoami("pc2", "bob", 5),
            connection("pc2", "bob", BAD_IP),
            *(whoami("pc3", "carol", 10 + i % 40) for i in range(60)),
        ]
        service.ingest(events, source="test")
        assert service.drain(30)
        yield made


def shown(page: str) -> list[str]:
    """The ids of the alerts a page lists (once each, in order)."""
    return list(dict.fromkeys(ALERT_LINK.findall(page)))


def alerts_of(service: Service, **filters: str) -> list[dict]:
    return service.alert_store.list(limit=1000, **filters)


def test_filters_show_only_the_matching_alerts(triage: Browser) -> None:
    triage.sign_in("viewer")
    store = triage.service.alert_store
    cases = {
        "host=pc1": 3,
        "host=PC2": 3,  # compared as entities are: lower case
        "user=alice": 3,
        "user=CORP%5Cbob": 3,  # DOMAIN\user is user
        f"ip={BAD_IP}": 1,
        f"indicator={BAD_IP}": 1,
        "host=pc2&rule=" + WHOAMI: 2,
        "host=pc1&user=bob": 0,
        "host=pc2&user=bob": 3,
        f"host=pc2&ip={BAD_IP}": 1,
        "level=medium&host=pc2": 1,  # the indicator's confidence 60: medium
    }
    for query, count in cases.items():
        page = triage.get(f"/console/alerts?{query}")
        assert page.status_code == 200, (query, page.text)
        ids = shown(page.text)
        assert len(ids) == count, query
        for alert_id in ids:
            alert = store.get(alert_id)
            assert alert is not None
            if "host=pc1" in query:
                assert alert["host"] == "pc1"
            if "ip=" in query:
                assert alert["kind"] == "indicator" and ["ip", BAD_IP] in alert["entities"]
    assert "no alert matches these filters" in triage.get("/console/alerts?host=nowhere").text
    # an incident's alerts: those the correlation put in it
    (alert,) = alerts_of(triage.service, indicator=BAD_IP)
    (incident,) = alert["incidents"]
    page = triage.get(f"/console/alerts?incident={incident}").text
    members = set(shown(page))
    assert alert["id"] in members
    assert all(triage.service.alert_store.get(i)["incidents"] == [incident] for i in members)
    assert f'href="/console/incidents/{incident}"' in page


def test_the_api_filters_through_the_same_store(triage: Browser) -> None:
    headers = {"Authorization": f"Bearer {triage.tokens['viewer']}"}
    got = triage.client.get("/api/v1/alerts", params={"user": "bob"}, headers=headers).json()
    assert len(got) == 3 and all(["user", "bob"] in a["entities"] for a in got)
    page = triage.client.get(
        "/api/v1/alerts", params={"host": "pc3", "limit": 50, "offset": 50}, headers=headers
    ).json()
    assert len(page) == 10


def test_paging_reaches_every_alert_once(triage: Browser) -> None:
    triage.sign_in("analyst")
    first = triage.get("/console/alerts?host=pc3")
    assert len(shown(first.text)) == 50
    following = re.search(r'href="([^"]+)" rel="next"', first.text)
    assert following, "no next page link"
    second = triage.get(html.unescape(following.group(1)))
    assert len(shown(second.text)) == 10
    assert 'rel="next"' not in second.text and 'rel="prev"' in second.text
    every = set(shown(first.text)) | set(shown(second.text))
    assert every == {a["id"] for a in alerts_of(triage.service, host="pc3")}
    assert len(every) == 60


def test_pivots_lead_to_the_same_host_user_rule_and_indicator(triage: Browser) -> None:
    triage.sign_in("analyst")
    (indicator_alert,) = alerts_of(triage.service, indicator=BAD_IP)
    page = triage.get(f"/console/alerts?ip={BAD_IP}").text
    pivots = {
        label: html.unescape(href)
        for href, label in re.findall(r'<a href="([^"]+)" class="pivot-(\w+)"', page)
    }
    assert pivots["host"] == "/console/alerts?host=pc2"
    assert pivots["user"] == "/console/alerts?user=bob"
    assert pivots["indicator"] == f"/console/alerts?indicator={BAD_IP}"
    assert set(shown(triage.get(pivots["host"]).text)) == {
        a["id"] for a in alerts_of(triage.service, host="pc2")
    }
    assert set(shown(triage.get(pivots["rule"]).text)) == {indicator_alert["id"]}
    # from a whoami alert, the same rule: every whoami alert (65, over two pages)
    whoami_page = triage.get("/console/alerts?host=pc1").text
    rule = re.search(r'<a href="([^"]+)" class="pivot-rule"', whoami_page)
    assert rule and html.unescape(rule.group(1)) == f"/console/alerts?rule={WHOAMI}"
    assert len(shown(triage.get(html.unescape(rule.group(1))).text)) == 50


def test_a_hunt_pivot_runs_and_finds_the_alerts_event(triage: Browser) -> None:
    triage.sign_in("analyst")
    alert = next(a for a in alerts_of(triage.service, host="pc1") if SCRIPT not in str(a))
    page = triage.get(f"/console/alerts/{alert['id']}").text
    hunt = re.search(r'<a href="([^"]+)" class="pivot-hunt"', page)
    assert hunt, "no hunt pivot"
    result = triage.get(html.unescape(hunt.group(1)))
    assert result.status_code == 200, result.text
    assert "FROM events" in result.text  # the query, prefilled
    rows = re.findall(r'<tr><td class="nowrap">(\d+)</td>', result.text)  # first column: offset
    assert str(alert["event_offset"]) in rows
    assert len(rows) == 3  # pc1's three events, not pc2's nor pc3's
    assert "pc2" not in result.text.split("<tbody>")[1]


def test_quick_add_an_indicator_from_the_event(triage: Browser) -> None:
    (alert,) = alerts_of(triage.service, indicator=BAD_IP)
    triage.sign_in("viewer")
    page = triage.get(f"/console/alerts/{alert['id']}").text
    assert "Add an indicator" not in page  # a viewer is not offered the form
    refused = triage.post(
        f"/console/alerts/{alert['id']}/indicator", {"type": "ipv4", "value": "10.0.0.2"}
    )
    assert refused.status_code == 403
    assert not triage.service.indicators_store.search("10.0.0.2")
    triage.sign_in("analyst")
    page = triage.get(f"/console/alerts/{alert['id']}").text
    assert 'name="value" value="10.0.0.2"' in page  # offered from the event
    done = triage.post(
        f"/console/alerts/{alert['id']}/indicator", {"type": "ipv4", "value": "10.0.0.2"}
    )
    assert done.status_code == 303
    (stored,) = triage.service.indicators_store.search("10.0.0.2")
    assert (stored.type, stored.value) == ("ipv4", "10.0.0.2")
    assert [(s.source, s.reference) for s in stored.sources] == [("manual", "analyst-user")]
    assert "Indicator added: ipv4:10.0.0.2" in triage.get(done.headers["location"]).text
    bad = triage.post(f"/console/alerts/{alert['id']}/indicator", {"type": "md5", "value": "x"})
    assert bad.status_code == 400 and "not an indicator of type md5" in bad.text


def test_quick_add_an_asset_from_the_events_host(triage: Browser) -> None:
    alert = alerts_of(triage.service, host="pc1")[0]
    triage.sign_in("viewer")
    refused = triage.post(f"/console/alerts/{alert['id']}/asset", {"hostname": "pc1"})
    assert refused.status_code == 403
    triage.sign_in("analyst")
    done = triage.post(
        f"/console/alerts/{alert['id']}/asset",
        {"hostname": "pc1", "ip": "10.0.0.1", "criticality": "high", "owner": "it"},
    )
    assert done.status_code == 303, done.text
    node = triage.service.asset_store.node("host:pc1")
    assert node is not None and node["attrs"]["criticality"] == "high"
    page = triage.get(done.headers["location"]).text
    assert 'href="/console/assets/host%3Apc1"' in page or 'href="/console/assets/host:pc1"' in page


def test_a_script_in_an_event_field_shows_as_text(triage: Browser) -> None:
    triage.sign_in("analyst")
    (alert,) = [a for a in alerts_of(triage.service, host="pc1") if SCRIPT in str(a["event"])]
    page = triage.get(f"/console/alerts/{alert['id']}").text
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in page
    assert "<script>alert(" not in page
    hunt = triage.get(
        "/console/hunt?sql=" + "SELECT process_command_line FROM events WHERE host_name = 'pc1'"
    ).text
    assert "&lt;script&gt;" in hunt and "<script>alert(" not in hunt


def test_an_unknown_alert_is_a_page_saying_so(triage: Browser) -> None:
    triage.sign_in("viewer")
    page = triage.get("/console/alerts/" + "0" * 32)
    assert page.status_code == 404 and "no alert" in page.text
