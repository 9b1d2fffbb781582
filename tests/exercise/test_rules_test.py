"""`vigil rules test`: each rule on its regression samples (SigmaHQ's `regression_tests_path`
and `info.yml` convention), every rule on benign baselines.

A rule repository is laid out in a temporary folder as SigmaHQ lays it out: Vigil's LSASS
read rule names an info.yml whose sample is the Mimikatz LSASS recording (linked from the
reference data, not copied). The known count is read from the recording by plain reading: its
Sysmon 10 records opening lsass.exe with one of the rule's access masks, from a process
outside the rule's filters."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import orjson
import yaml

from vigil.detect.sigma import starter_rules
from vigil.exercise.recordings import records

RULE = "endpoint/vigil_lsass_access_read.yml"
RECORDING = (
    "windows",
    "evtx-to-mitre-attack",
    "TA0006-Credential Access",
    "T1003-Credential dumping",
    "ID10-Mimikatz LSASS process dump.evtx.gz",
)
MASKS = {"0x1010", "0x1410", "0x1438", "0x143a", "0x1fffff"}


def lsass_reads(path: Path) -> int:
    count = 0
    for line in records(path):
        event = orjson.loads(line)["Event"]
        data = event.get("EventData") or {}
        source = str(data.get("SourceImage", "")).lower()
        if (
            str(event["System"]["EventID"]) == "10"
            and str(data.get("TargetImage", "")).lower().endswith("\\lsass.exe")
            and str(data.get("GrantedAccess", "")).lower() in MASKS
            and not source.startswith(("c:\\windows\\system32\\", "c:\\program files"))
        ):
            count += 1
    return count


def repository(tmp_path: Path, sample: Path, match_count: int) -> Path:
    root = tmp_path / "repo"
    rule = yaml.safe_load((starter_rules() / RULE).read_text())
    info = "regression_data/rules/windows/process_access/vigil_lsass_access_read/info.yml"
    rule["regression_tests_path"] = info
    (root / "rules").mkdir(parents=True)
    (root / "rules" / "lsass.yml").write_text(yaml.safe_dump(rule, sort_keys=False))
    (root / info).parent.mkdir(parents=True)
    (root / info).parent.joinpath("sample.evtx.gz").symlink_to(sample)
    (root / info).write_text(
        yaml.safe_dump(
            {
                "id": "00000000-0000-4000-8000-000000000001",
                "rule_metadata": [{"id": rule["id"], "title": rule["title"]}],
                "regression_tests_info": [
                    {
                        "name": "Positive Detection Test",
                        "type": "evtx",
                        "provider": "Microsoft-Windows-Sysmon",
                        "match_count": match_count,
                        "path": str(Path(info).parent / "sample.evtx.gz"),
                    }
                ],
            }
        )
    )
    shutil.copy(starter_rules() / "endpoint" / "vigil_mimikatz_keywords.yml", root / "rules")
    return root


def test_a_rule_passes_its_samples_and_a_count_that_differs_fails(
    run_cli, need_data, tmp_path
) -> None:
    sample = need_data(*RECORDING)
    expected = lsass_reads(sample)
    assert expected >= 1
    root = repository(tmp_path, sample, expected)
    passed = run_cli("rules", "test", str(root / "rules"), "--json", "--no-cache")
    assert passed.exit_code == 0, passed.output
    found = json.loads(passed.stdout)
    assert [(s["title"], s["expected"], s["found"]) for s in found["samples"]] == [
        ("Process Opens LSASS With Memory Read Access", expected, expected)
    ]
    assert found["without_samples"] == 1  # the Mimikatz keywords rule names none

    wrong = repository(tmp_path / "wrong", sample, expected + 1)
    failed = run_cli("rules", "test", str(wrong / "rules"), "--json", "--no-cache")
    assert failed.exit_code == 1
    assert json.loads(failed.stdout)["samples"][0]["passed"] is False


def test_a_rule_firing_on_the_baseline_is_named(run_cli, need_data, tmp_path) -> None:
    benign = need_data("windows", "evtx-rs-benign-and-corrupt")
    zeek = need_data("network", "wrccdc2018-zeek")
    for baseline in (benign, zeek):  # the pack is quiet on both
        clean = run_cli(
            "rules", "test", str(starter_rules()), "--baseline", str(baseline), "--json"
        )
        assert clean.exit_code == 0, clean.output
        assert json.loads(clean.stdout)["baseline"] == {}
    # the admin share mapping alone, without the spread correlation it feeds: WRCCDC's
    # management hosts map ADMIN$ 261 times
    alone = tmp_path / "rules"
    alone.mkdir()
    shutil.copy(starter_rules() / "network" / "vigil_zeek_smb_admin_share.yml", alone)
    noisy = run_cli("rules", "test", str(alone), "--baseline", str(zeek), "--json")
    assert noisy.exit_code == 1
    assert json.loads(noisy.stdout)["baseline"] == {"Administrative Share Mapped Over SMB": 261}
