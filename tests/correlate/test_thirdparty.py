"""Alerts of other tools: Suricata EVE (the real samples), Wazuh alerts.json records (as
Wazuh documents them), CSV with a mapping; bad records are set aside with their reason."""

from __future__ import annotations

import json

import orjson
import pytest

from vigil.correlate import Correlator, Mapping, read_alerts
from vigil.errors import InputError


def test_suricata_eve_alerts_are_read_with_levels_and_addresses(need_data) -> None:
    path = need_data("network", "suricata-eve-alerts", "wrccdc-2018", "alerts-only.json")
    records = json.loads(path.read_text())
    alerts, report = read_alerts(path, "suricata")
    assert len(alerts) == report.read == 207 and report.rejected == 0
    first = records[0]
    assert alerts[0].rule == f"suricata:1:{first['alert']['signature_id']}"
    assert alerts[0].title == first["alert"]["signature"]
    levels = {r["alert"]["severity"]: a.level for r, a in zip(records, alerts, strict=True)}
    assert levels == {1: "high", 2: "medium", 3: "low"}
    # 0.0.0.0 names nobody; the destination does
    assert alerts[0].entities == (("ip", first["dest_ip"]),)
    assert len({a.id for a in alerts}) == 207
    incidents = Correlator()
    incidents.feed(sorted(alerts, key=lambda a: a.time))
    assert 0 < len(incidents.incidents) < 207


WAZUH = {
    "timestamp": "2026-11-28T10:15:02.123+0000",
    "rule": {
        "level": 10,
        "description": "sshd: brute force trying to get access to the system.",
        "id": "5712",
        "mitre": {"id": ["T1110"], "tactic": ["Credential Access"]},
    },
    "agent": {"id": "001", "name": "web-01", "ip": "10.0.0.5"},
    "data": {"srcip": "203.0.113.9", "dstuser": "root"},
}


def test_wazuh_alerts_keep_rule_level_tactic_and_entities(tmp_path) -> None:
    path = tmp_path / "alerts.json"
    path.write_bytes(orjson.dumps(WAZUH) + b"\n{broken\n" + orjson.dumps([1]) + b"\n")
    alerts, report = read_alerts(path, "wazuh")
    (alert,) = alerts
    assert (alert.rule, alert.level, alert.tactics) == (
        "wazuh:5712",
        "high",
        ("credential-access",),
    )
    assert set(alert.entities) == {
        ("host", "web-01"), ("ip", "10.0.0.5"), ("ip", "203.0.113.9"), ("user", "root"),
    }  # fmt: skip
    assert alert.time == pytest.approx(1795860902.123)
    assert report.rejected == 2
    assert [r["record"] for r in report.set_aside] == [2, 3]
    assert "invalid JSON" in report.set_aside[0]["reason"]


def test_csv_alerts_follow_their_mapping_and_bad_rows_are_set_aside(tmp_path) -> None:
    path = tmp_path / "alerts.csv"
    path.write_text(
        "when,sig,box,who,severity\n"
        "2026-11-28T10:00:00Z,Mimikatz,WS-1,alice,high\n"
        "not a time,Mimikatz,WS-1,alice,high\n"
        "1795860000,Scan,WS-2,,low,extra\n"
        "1795860000,Scan,WS-2,,low\n"
    )
    mapping = Mapping(
        time="when", rule="sig", level="severity",
        entities={"host": ("box",), "user": ("who",)}, labels=("sig",),
    )  # fmt: skip
    alerts, report = read_alerts(path, "csv", mapping)
    assert [(a.rule, a.level, a.entities) for a in alerts] == [
        ("Mimikatz", "high", (("host", "ws-1"), ("user", "alice"))),
        ("Scan", "low", (("host", "ws-2"),)),
    ]
    assert [r["record"] for r in report.set_aside] == [3, 4]
    with pytest.raises(InputError, match="the CSV has no column x"):
        read_alerts(path, "csv", Mapping(time="x", rule="sig"))
    with pytest.raises(InputError, match="need a field mapping"):
        read_alerts(path, "csv")
    with pytest.raises(InputError, match="unknown alert format"):
        read_alerts(path, "splunk")
