"""`vigil intel ...` and `vigil scan --intel` end to end, on the reference intelligence."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "vigil-data"
    monkeypatch.setenv("VIGIL_DATA_DIR", str(folder))
    return folder


def test_import_scan_search_and_export_sightings(run_cli, need_data, data_dir, tmp_path) -> None:
    simda = need_data("threat_intel", "maltrail-subset", "malware", "simda.txt")
    dns = need_data("network", "stratosphere", "005-zeek-scenario-malicious", "dns.log")
    imported = run_cli("intel", "import", simda)
    assert imported.exit_code == 0, imported.output
    assert "list:simda.txt" in imported.output

    stats = run_cli("intel", "stats", "--json")
    figures = json.loads(stats.stdout)
    # simda.txt: 1,284 distinct domains and one URL (http://176.65.157.89)
    assert figures["by_type"] == {"domain": 1284, "url": 1}
    assert figures["live"] == figures["indicators"] == 1285

    scanned = run_cli("scan", dns, "--intel", "--format", "jsonl", "--limit", "0")
    assert scanned.exit_code == 0, scanned.output
    detections = [json.loads(line) for line in scanned.stdout.splitlines() if line.startswith("{")]
    assert len(detections) == 955
    assert {d["kind"] for d in detections} == {"indicator"}

    found = run_cli("intel", "search", "www.gatyfus.com", "--json")
    (hit,) = json.loads(found.stdout)
    assert (hit["type"], hit["value"], hit["live"]) == ("domain", "gatyfus.com", True)
    assert hit["sightings"] > 0

    bundle_path = tmp_path / "sightings.json"
    exported = run_cli("intel", "sightings", "--output", bundle_path)
    assert exported.exit_code == 0, exported.output
    bundle = json.loads(bundle_path.read_text())
    sightings = [o for o in bundle["objects"] if o["type"] == "sighting"]
    by_id = {o["id"]: o for o in bundle["objects"]}
    assert sum(s["count"] for s in sightings) == 955
    for sighting in sightings:
        assert by_id[sighting["sighting_of_ref"]]["type"] == "indicator"
        assert by_id[sighting["where_sighted_refs"][0]]["type"] == "identity"
    assert run_cli("intel", "search", "example.org").exit_code == 1


def test_unsupported_patterns_are_listed_and_written(run_cli, need_data, data_dir, tmp_path):
    apt1 = need_data("threat_intel", "stix21-oasis-examples")
    aside = tmp_path / "aside.jsonl"
    result = run_cli("intel", "import", apt1, "--aside", aside)
    assert result.exit_code == 0, result.output
    items = [json.loads(line) for line in aside.read_text().splitlines()]
    unsupported = [i for i in items if i.get("unsupported")]
    assert unsupported and all(i["reference"].startswith("indicator--") for i in unsupported)
    assert "Unsupported" in result.output


def test_pull_reads_configured_sources_and_keeps_no_password(
    run_cli, need_data, data_dir, tmp_path, monkeypatch
) -> None:
    feed = need_data("threat_intel", "misp-feed-eset")
    config = tmp_path / "vigil.toml"
    config.write_text(f'[[intel.sources]]\nname = "eset"\nkind = "misp-feed"\nurl = "{feed}"\n')
    first = run_cli("intel", "pull", "--config", config)
    assert first.exit_code == 0, first.output
    again = run_cli("intel", "pull", "--config", config)
    assert again.exit_code == 0, again.output
    rows = [line for line in again.output.splitlines() if "eset" in line]
    assert rows and all(re.search(r"│\s+0\s+│", row) for row in rows)  # nothing new

    config.write_text(
        '[[intel.sources]]\nname = "x"\nkind = "taxii"\nurl = "http://h/"\npassword = "s3cret"\n'
    )
    refused = run_cli("intel", "pull", "--config", config)
    assert refused.exit_code == 2
    assert "environment variable" in refused.output and "s3cret" not in refused.output


def test_coverage_and_navigator_layer_run_offline(run_cli, sigma_rules, tmp_path) -> None:
    rules = sigma_rules.folders[0]
    result = run_cli("intel", "coverage", "--group", "APT29", "--rules", rules, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["group"]["id"] == "G0016"
    assert sum(report["counts"].values()) == len(report["techniques"]) == 66
    assert report["counts"]["covered"] > 40

    layer_path = tmp_path / "layer.json"
    made = run_cli("intel", "attack-layer", "--rules", rules, "--group", "G0016", "-o", layer_path)
    assert made.exit_code == 0, made.output
    layer = json.loads(layer_path.read_text())
    assert layer["versions"]["layer"] == "4.5" and layer["domain"] == "enterprise-attack"
    assert all(re.fullmatch(r"T\d{4}(\.\d{3})?", t["techniqueID"]) for t in layer["techniques"])

    unknown = run_cli("intel", "coverage", "--group", "APT 2999", "--rules", rules)
    assert unknown.exit_code == 2


def test_import_from_a_url_reads_the_downloaded_bundle(run_cli, need_data, data_dir) -> None:
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    folder = need_data("threat_intel", "stix21-oasis-examples", "cti-documentation", "examples",
                       "example_json")  # fmt: skip
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/apt1.json"
        result = run_cli("intel", "import", url)
        missing = run_cli("intel", "import", url.replace("apt1", "nothing"))
    finally:
        server.shutdown()
    assert result.exit_code == 0, result.output
    figures = json.loads(run_cli("intel", "stats", "--json").stdout)
    assert figures["source_rows"] == {"stix:apt1.json": 10}  # as the STIX importer's own test
    assert missing.exit_code == 2 and "404" in missing.output
