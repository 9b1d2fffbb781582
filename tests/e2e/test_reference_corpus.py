"""The SigmaHQ regression corpus, scanned with every SigmaHQ rule of the same release.

Ground truth: sigma-regression-data/labels.jsonl names, for every sample, the rule that must
fire on it and sometimes how often (`match_count`). Each sample exists twice: the EVTX
recording and the same events rendered as JSON.
"""

from __future__ import annotations

import gzip
import io
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import evtx
import pytest

from vigil.scan import ScanResult, scan_inputs

pytestmark = pytest.mark.slow

Key = tuple[str, str, str]  # (source_file, record_id, rule_id)


@pytest.fixture(scope="module")
def regression(
    need_data: Callable[..., Path], labels_of: Callable[[Path], list[dict[str, Any]]]
) -> tuple[Path, list[dict[str, Any]]]:
    folder = need_data("windows", "sigma-regression-data")
    return folder, labels_of(folder)


def json_sibling(evtx_path: Path) -> Path:
    return evtx_path.with_name(evtx_path.name.removesuffix(".evtx.gz") + ".json")


def keys(result: ScanResult) -> Counter[Key]:
    return Counter((d.source_file, str(d.record_id), d.rule_id) for d in result.detections)


def unmet_labels(regression, sigma_rules, sample_of: Callable[[Path], Path]) -> list[str]:
    folder, labels = regression
    failures = []
    for label in labels:
        path = sample_of(folder / label["file"])
        result = scan_inputs([path], sigma_rules.loaded)
        fired = sum(1 for d in result.detections if d.rule_id == label["rule_id"])
        needed = label["match_count"] or 1
        if fired < needed:
            failures.append(f"{label['rule_id']} fired {fired}x, needs {needed}x: {path}")
    return failures


def test_every_labelled_rule_fires_on_its_evtx_sample(regression, sigma_rules) -> None:
    failures = unmet_labels(regression, sigma_rules, lambda p: p)
    assert not failures, f"{len(failures)}/{len(regression[1])} samples:\n" + "\n".join(failures)


def test_every_labelled_rule_fires_on_its_json_sample(regression, sigma_rules) -> None:
    failures = unmet_labels(regression, sigma_rules, json_sibling)
    assert not failures, f"{len(failures)}/{len(regression[1])} samples:\n" + "\n".join(failures)


def test_detections_do_not_depend_on_which_files_are_scanned_together(
    regression, sigma_rules
) -> None:
    folder, labels = regression
    together = keys(scan_inputs([folder], sigma_rules.loaded))
    differ = []
    for label in labels:
        for path in (folder / label["file"], json_sibling(folder / label["file"])):
            alone = keys(scan_inputs([path], sigma_rules.loaded))
            within = Counter({k: n for k, n in together.items() if k[0] == str(path)})
            if alone != within:
                differ.append(
                    f"{path}: alone-only {alone - within}, together-only {within - alone}"
                )
    assert sum(together.values()) > len(labels)
    assert not differ, "\n".join(differ)


def test_file_order_does_not_change_the_detections(regression, sigma_rules) -> None:
    folder, labels = regression
    paths = [folder / label["file"] for label in labels]
    forward = scan_inputs(paths, sigma_rules.loaded)
    backward = scan_inputs(paths[::-1], sigma_rules.loaded)
    assert keys(forward) == keys(backward)
    assert [d.rule_id for d in forward.detections] == [d.rule_id for d in backward.detections]


def test_every_event_log_clear_in_the_t1070_001_recording_is_detected(
    need_data: Callable[..., Path], sigma_rules
) -> None:
    path = need_data(
        "windows",
        "evtx-to-mitre-attack",
        "TA0005-Defense Evasion",
        "T1070.001-Clear Windows event logs",
        "ID104-1102-Event log cleared.evtx.gz",
    )
    clears = set()
    for record in evtx.PyEvtxParser(io.BytesIO(gzip.decompress(path.read_bytes()))).records_json():
        system = json.loads(record["data"])["Event"]["System"]
        eid = system["EventID"]
        if (eid["#text"] if isinstance(eid, dict) else eid) in (104, 1102):
            clears.add(system["EventRecordID"])
    assert len(clears) > 90

    result = scan_inputs([path], sigma_rules.loaded)

    detected = {d.record_id for d in result.detections if "attack.t1070.001" in d.tags}
    missed = sorted(clears - detected)
    assert not missed, f"{len(missed)} of {len(clears)} log clears not detected: {missed[:10]}"


def test_defender_exclusion_recording_raises_sigmahq_exclusions_added(
    need_data, sigma_rules
) -> None:
    """Defender writes `<Data Name="New Value">`; the rule asks for `NewValue`."""
    path = need_data(
        "windows",
        "evtx-to-mitre-attack",
        "TA0005-Defense Evasion",
        "T1562.001-Impair Defenses-Disable or Modify tool",
        "ID5007-Defender threat exclusion (native).evtx.gz",
    )
    result = scan_inputs([path], sigma_rules.loaded)
    titles = {d.rule_id: d.rule_title for d in result.detections}
    assert titles.get("1321dc4e-a1fe-481d-a016-52c45f0c8b4f") == "Windows Defender Exclusions Added"
