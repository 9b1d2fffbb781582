"""Indicators against labelled traffic: maltrail's Simda list on the Simda DNS capture
flags exactly the records whose query is a Simda domain (or under one), and the whole
maltrail subset flags no record the Stratosphere labels call Benign."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.detect.ioc import IntelScan
from vigil.detect.sigma import load_rules
from vigil.intel.importers import import_path
from vigil.intel.store import IndicatorStore
from vigil.scan import scan_inputs


def simda_domains(path: Path) -> set[str]:
    lines = (line.strip() for line in path.read_text("utf-8").splitlines())
    return {line.lower() for line in lines if line and not line.startswith("#")}


def zeek_rows(path: Path) -> list[dict[str, str]]:
    """Zeek TSV rows read with the standard library, numbered by line as Vigil does."""
    fields: list[str] = []
    rows = []
    for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif line and not line.startswith("#"):
            rows.append({"_line": str(number), **dict(zip(fields, line.split("\t"), strict=True))})
    return rows


@pytest.fixture(scope="module")
def no_rules():
    return load_rules([])


def intel_from(tmp_path: Path, *targets: Path) -> IntelScan:
    store = IndicatorStore.open(tmp_path)
    for target in targets:
        for item in import_path(target):
            if item.kind != "skipped":
                store.record_import(item.result, kind=item.kind, location=item.location)
    return IntelScan.load(store)


@pytest.mark.parametrize("jobs", [1, 2])
def test_simda_list_flags_exactly_the_simda_queries(need_data, tmp_path, no_rules, jobs) -> None:
    trails = need_data("threat_intel", "maltrail-subset", "malware", "simda.txt")
    dns = need_data("network", "stratosphere", "005-zeek-scenario-malicious", "dns.log")
    domains = simda_domains(trails)
    rows = zeek_rows(dns)
    expected = {
        int(row["_line"])
        for row in rows
        if (query := row["query"].lower().rstrip("."))
        and any(query == d or query.endswith("." + d) for d in domains)
    }
    assert (len(rows), len(expected)) == (992, 955)

    # the whole capture (dns, conn and http logs), in worker processes with jobs=2
    result = scan_inputs([dns.parent], no_rules, intel=intel_from(tmp_path, trails), jobs=jobs)
    on_dns = [d for d in result.detections if d.source_file == str(dns)]
    assert all(d.kind == "indicator" for d in result.detections)
    assert {d.record_id for d in on_dns} == expected
    assert len(on_dns) == 955
    assert all("simda" in d.details["actors"] for d in on_dns)
    assert result.counters["indicator_hits"] == len(result.detections)


def test_no_benign_record_is_flagged_with_every_maltrail_list(
    need_data, tmp_path, no_rules
) -> None:
    trails = need_data("threat_intel", "maltrail-subset")
    labelled = [
        need_data("network", "stratosphere", "001-zeek-scenario-malicious", "labeled-conn.log"),
        *sorted(need_data("network", "stratosphere", "008-zeek-mixed", "data").glob("*.labeled")),
    ]
    intel = intel_from(tmp_path, trails)
    # every list: 95,361 entries, 89,164 indicators, 84,064 distinct once canonical
    assert len(intel.matcher) > 80_000
    result = scan_inputs(labelled, no_rules, intel=intel)
    benign = {
        (str(path), int(row["_line"]))
        for path in labelled
        for row in zeek_rows(path)
        if row.get("label") == "Benign"
    }
    assert len(benign) > 2_000  # the labels are read (001 has 9, 008 thousands)
    flagged = {(d.source_file, d.record_id) for d in result.detections}
    assert not flagged & benign
