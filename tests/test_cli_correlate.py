"""`vigil correlate`: alert files into ranked incidents, scored against labels when the
alert set has them."""

from __future__ import annotations

import json


def test_ait_scenario_is_grouped_ranked_and_scored(run_cli, need_data) -> None:
    ait = need_data("alerts", "ait-alert-data-set")
    result = run_cli(
        "correlate", str(ait / "shaw_alerts.txt.gz"), "--phases", str(ait / "attacktimes.py"),
        "--top", "2", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    incidents, (evaluation,) = lines[:-1], [line["evaluation"] for line in lines[-1:]]
    assert len(incidents) == 2 and incidents[0]["risk"] >= incidents[1]["risk"]
    assert "host:intranet_server" in incidents[0]["entities"]
    assert evaluation["scenario"] == "shaw" and evaluation["top_is_attack"] is True
    assert evaluation["alerts"] == 70_782 and evaluation["reduction"] >= 50
    assert set(evaluation["mttd_s"]) >= {"network_scans", "dirb", "dnsteal"}

    table = run_cli("correlate", str(ait / "shaw_alerts.txt.gz"), "--top", "1")
    assert table.exit_code == 0
    assert "70,782 alerts" in table.stdout and "Incidents against the labels" in table.stdout


def test_csv_alerts_need_their_mapping(run_cli, tmp_path) -> None:
    path = tmp_path / "alerts.csv"
    path.write_text("when,sig,box\n2026-11-28T10:00:00Z,Mimikatz,WS-1\n")
    missing = run_cli("correlate", str(path), "--format", "csv")
    assert missing.exit_code == 2 and "mapping of time=COLUMN and rule=COLUMN" in missing.stderr
    result = run_cli(
        "correlate", str(path), "--format", "csv", "--map", "time=when", "--map", "rule=sig",
        "--map", "host=box", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (incident,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert incident["entities"] == ["host:ws-1"] and incident["rules"] == {"Mimikatz": 1}
