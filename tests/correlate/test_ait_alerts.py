"""The AIT Alert Data Set (Wazuh, Suricata and AMiner alerts of multi-day simulated
intrusions, each alert labelled with its attack phase or as a false positive): incidents
are at least 50x fewer than alerts, at least 90% of the attack alerts land in incidents
whose majority is attack, the riskiest incident is the attack, and each phase's MTTD is the
time from its start (attacktimes.py) to its first alert."""

from __future__ import annotations

import csv
import gzip
from datetime import UTC, datetime

import pytest

from vigil.correlate import AIT_MAPPING, Correlator, read_alerts
from vigil.correlate.evaluate import attack_phases, evaluate

SCENARIOS = ["russellmitchell", "santos", "shaw"]


@pytest.fixture(scope="module")
def ait(need_data):
    return need_data("alerts", "ait-alert-data-set")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_incidents_separate_the_attack_from_the_noise(ait, scenario) -> None:
    alerts, report = read_alerts(ait / f"{scenario}_alerts.txt.gz", "csv", AIT_MAPPING)
    assert report.rejected == 0 and report.read == len(alerts)
    correlator = Correlator()
    correlator.feed(sorted(alerts, key=lambda a: a.time))
    result = evaluate(
        scenario, correlator.incidents.values(), attack_phases(ait / "attacktimes.py")[scenario]
    )
    assert result.alerts == len(alerts)
    assert result.reduction >= 50, result.as_dict()
    assert result.attack_share >= 0.9, result.as_dict()
    assert result.top_is_attack, result.as_dict()
    # the riskiest incident is the web attack on the intranet server (wpscan and dirb)
    assert "host:intranet_server" in result.top["entities"]
    assert {"wpscan", "dirb"} <= set(result.top["labels"])

    # MTTD per phase, against the first labelled alert read straight from the CSV
    phases = attack_phases(ait / "attacktimes.py")[scenario]
    first: dict[str, int] = {}
    with gzip.open(ait / f"{scenario}_alerts.txt.gz", "rt") as handle:
        for row in csv.DictReader(handle):
            label = row["time_label"]
            if label != "false_positive":
                first[label] = min(first.get(label, 1 << 62), int(row["time"]))
    for phase, seconds in result.mttd.items():
        if phase in first:
            assert seconds == pytest.approx(first[phase] - phases[phase][0])
            assert seconds >= 0
        else:
            assert seconds is None  # a phase no alert saw


def test_attack_times_are_read_without_running_the_file(ait) -> None:
    phases = attack_phases(ait / "attacktimes.py")
    assert set(SCENARIOS) <= set(phases)
    start, end = phases["russellmitchell"]["network_scans"]
    assert datetime.fromtimestamp(start, UTC).isoformat() == "2022-01-24T03:01:00+00:00"
    assert datetime.fromtimestamp(end, UTC).isoformat() == "2022-01-24T03:56:46+00:00"
