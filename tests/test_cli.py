"""The `vigil` command line: errors, output formats, figures, and `rules check`.

Runs in-process through typer's CliRunner, except where the terminal width of a real process
matters (then the installed `vigil` console script). Every run uses a private plan cache.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import evtx
import pytest
from typer.testing import Result

WHOAMI_RULE = r"""
title: Whoami Execution
id: 5f0a8b1e-3c2d-4e5f-8a9b-0c1d2e3f4a5b
status: test
logsource:
    product: windows
    category: process_creation
detection:
    selection:
        Image|endswith: '\whoami.exe'
    condition: selection
level: high
"""

JSONL_KEYS = {
    "kind",
    "rule_id",
    "rule_title",
    "level",
    "tags",
    "timestamp",
    "host",
    "source_file",
    "record_id",
    "matched_fields",
    "event",
}
FILE_KEYS = {"path", "format", "records_read", "records_rejected", "rejects", "detections"}
TOTAL_KEYS = {
    "files",
    "records_read",
    "records_rejected",
    "detections",
    "load_seconds",
    "parse_seconds",
    "match_seconds",
}


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "whoami.yml").write_text(WHOAMI_RULE)
    return folder


@pytest.fixture
def regression(need_data, labels_of) -> tuple[Path, list[dict[str, Any]]]:
    folder = need_data("windows", "sigma-regression-data")
    return folder, labels_of(folder)


@pytest.fixture
def sample(regression, need_data) -> tuple[dict[str, Any], Path, Path]:
    """A regression sample with a known match count: (label, its .evtx.gz, its rule file)."""
    folder, labels = regression
    label = next(lab for lab in labels if (lab["match_count"] or 0) > 1)
    return label, folder / label["file"], need_data("sigma", label["rule_path"])


@pytest.fixture
def all_rules(sigma_rules, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """`--rules` options for every SigmaHQ folder, with the session's compiled plan cached."""
    monkeypatch.setenv("VIGIL_CACHE_DIR", str(sigma_rules.cache_dir))
    return [arg for folder in sigma_rules.folders for arg in ("--rules", str(folder))]


def pyevtx_record_count(path: Path) -> int:
    """Records pyevtx-rs yields from an .evtx.gz, going on after each error."""
    records = evtx.PyEvtxParser(io.BytesIO(gzip.decompress(path.read_bytes()))).records_json()
    count = 0
    while True:
        try:
            next(records)
        except StopIteration:
            return count
        except RuntimeError:
            continue
        count += 1


def jsonl_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def assert_clean_usage_error(result: Result, *mentions: str) -> None:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    assert "Traceback" not in result.stderr
    for text in mentions:
        assert text in lines[0]


def vigil_process(args: list[str], cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it with its output redirected."""
    script = Path(sys.executable).parent / "vigil"
    found = str(script) if script.exists() else shutil.which("vigil")
    if found is None:
        pytest.skip("the vigil console script is not installed")
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["VIGIL_CACHE_DIR"] = str(cache)
    return subprocess.run(
        [found, *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )


# --- usage errors -----------------------------------------------------------------------------


def test_missing_path_exits_2_with_a_one_line_error(
    run_cli, rules_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli("scan", "no-such-case", "--rules", "rules")
    assert_clean_usage_error(result, "no-such-case")


def test_missing_rules_folder_exits_2_with_a_one_line_error(
    run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "logs.jsonl").write_text('{"a": 1}\n')
    result = run_cli("scan", "logs.jsonl", "--rules", "no-such-rules")
    assert_clean_usage_error(result, "no-such-rules")


def test_unknown_format_exits_2(run_cli, rules_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "logs.jsonl").write_text('{"a": 1}\n')
    result = run_cli("scan", tmp_path / "logs.jsonl", "--rules", rules_dir, "--format", "xml")
    assert_clean_usage_error(result, "xml")


def test_unknown_min_level_exits_2(run_cli, rules_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "logs.jsonl").write_text('{"a": 1}\n')
    result = run_cli("scan", tmp_path / "logs.jsonl", "--rules", rules_dir, "--min-level", "severe")
    assert_clean_usage_error(result, "severe")


def test_scan_without_rules_exits_2(run_cli, tmp_path: Path) -> None:
    (tmp_path / "logs.jsonl").write_text('{"a": 1}\n')
    result = run_cli("scan", tmp_path / "logs.jsonl")
    assert_clean_usage_error(result, "--rules")


def test_rules_check_of_a_missing_folder_exits_2(
    run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli("rules", "check", "no-such-rules")
    assert_clean_usage_error(result, "no-such-rules")


def test_error_naming_a_long_missing_path_stays_on_one_line(
    rules_dir: Path, tmp_path: Path
) -> None:
    missing = tmp_path / ("case-" + "x" * 120) / "Security.evtx"
    result = vigil_process(
        ["scan", str(missing), "--rules", str(rules_dir)], tmp_path, tmp_path / "cache"
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(missing) in lines[0]


def test_error_names_a_path_with_brackets_verbatim(
    run_cli, rules_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli("scan", "cases/[host42]/Security.evtx", "--rules", rules_dir)
    assert_clean_usage_error(result, "cases/[host42]/Security.evtx")


def test_problem_table_names_a_file_with_brackets_verbatim(rules_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "[a].jsonl").write_text('{"a": 1}\n{"a": oops}\n')
    result = vigil_process(
        ["scan", "[a].jsonl", "--rules", str(rules_dir)], tmp_path, tmp_path / "cache"
    )
    assert result.returncode == 0, result.stderr
    assert "Files with problems" in result.stderr
    assert "[a].jsonl" in result.stderr


# --- output formats ---------------------------------------------------------------------------


def test_jsonl_output_is_one_detection_object_per_line_with_the_labelled_rule(
    run_cli, all_rules: list[str], sample, tmp_path: Path
) -> None:
    label, evtx_path, _ = sample
    out = tmp_path / "detections.jsonl"

    result = run_cli("scan", evtx_path, *all_rules, "--format", "jsonl", "-o", out)

    assert result.exit_code == 0, result.output
    detections = jsonl_lines(out.read_text("utf-8"))
    assert detections
    for detection in detections:
        assert detection.keys() >= JSONL_KEYS
        assert detection["source_file"] == str(evtx_path)
        assert detection["kind"] == "sigma"
        assert isinstance(detection["tags"], list)
    fired = Counter(d["rule_id"] for d in detections)
    assert fired[label["rule_id"]] >= label["match_count"]


def test_jsonl_goes_to_standard_output_without_o(run_cli, sample) -> None:
    label, evtx_path, rule = sample

    result = run_cli("scan", evtx_path, "--rules", rule, "--format", "jsonl")

    assert result.exit_code == 0, result.output
    detections = jsonl_lines(result.stdout)
    assert [d["rule_id"] for d in detections] == [label["rule_id"]] * len(detections)
    assert len(detections) >= label["match_count"]


def test_stats_file_has_per_file_and_total_figures(
    run_cli, sample, need_data, tmp_path: Path
) -> None:
    label, evtx_path, rule = sample
    corrupt = need_data(
        "windows", "evtx-rs-benign-and-corrupt", "sample-with-zero-data-size-event.evtx.gz"
    )
    stats_path = tmp_path / "stats.json"
    out = tmp_path / "detections.jsonl"

    result = run_cli(
        "scan", evtx_path, corrupt, "--rules", rule, "--format", "jsonl", "-o", out,
        "--stats", stats_path,
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    stats = json.loads(stats_path.read_text("utf-8"))
    files = {f["path"]: f for f in stats["files"]}
    assert set(files) == {str(evtx_path), str(corrupt)}
    for entry in files.values():
        assert entry.keys() >= FILE_KEYS
        assert entry["format"] == "evtx"
        for reject in entry["rejects"]:
            assert set(reject) == {"record", "reason"}
    assert files[str(corrupt)]["records_read"] == pyevtx_record_count(corrupt)
    assert files[str(corrupt)]["rejects"]
    assert files[str(evtx_path)]["rejects"] == []

    totals = stats["totals"]
    assert totals.keys() >= TOTAL_KEYS
    detections = jsonl_lines(out.read_text("utf-8"))
    assert totals["files"] == 2
    assert totals["detections"] == len(detections) == sum(f["detections"] for f in files.values())
    assert files[str(evtx_path)]["detections"] >= label["match_count"]
    assert totals["records_read"] == sum(f["records_read"] for f in files.values())
    assert totals["records_rejected"] == sum(f["records_rejected"] for f in files.values())
    for key in ("load_seconds", "parse_seconds", "match_seconds"):
        assert isinstance(totals[key], int | float) and totals[key] >= 0


def test_csv_output_has_a_header_row_and_one_row_per_detection(
    run_cli, sample, tmp_path: Path
) -> None:
    label, evtx_path, rule = sample
    as_csv, as_jsonl = tmp_path / "d.csv", tmp_path / "d.jsonl"

    assert run_cli("scan", evtx_path, "--rules", rule, "-f", "csv", "-o", as_csv).exit_code == 0
    assert run_cli("scan", evtx_path, "--rules", rule, "-f", "jsonl", "-o", as_jsonl).exit_code == 0

    rows = list(csv.DictReader(io.StringIO(as_csv.read_text("utf-8"))))
    header = next(csv.reader(io.StringIO(as_csv.read_text("utf-8"))))
    assert {"timestamp", "level", "rule_title", "rule_id", "source_file", "record_id"} <= set(
        header
    )
    detections = jsonl_lines(as_jsonl.read_text("utf-8"))
    assert len(rows) == len(detections) >= label["match_count"]
    assert [r["rule_id"] for r in rows] == [label["rule_id"]] * len(rows)
    assert sorted(r["record_id"] for r in rows) == sorted(str(d["record_id"]) for d in detections)


def test_min_level_high_reports_only_high_and_critical(
    run_cli, all_rules: list[str], regression, tmp_path: Path
) -> None:
    folder, _ = regression
    everything, high = tmp_path / "all.jsonl", tmp_path / "high.jsonl"

    assert run_cli("scan", folder, *all_rules, "-f", "jsonl", "-o", everything).exit_code == 0
    assert (
        run_cli(
            "scan", folder, *all_rules, "-f", "jsonl", "-o", high, "--min-level", "high"
        ).exit_code
        == 0
    )

    def key(d: dict[str, Any]) -> tuple[str, str, str]:
        return (d["source_file"], str(d["record_id"]), d["rule_id"])

    unfiltered = jsonl_lines(everything.read_text("utf-8"))
    filtered = jsonl_lines(high.read_text("utf-8"))
    assert {d["level"] for d in unfiltered} - {"high", "critical"}, "nothing below high to drop"
    assert filtered
    assert {d["level"] for d in filtered} <= {"high", "critical"}
    assert Counter(map(key, filtered)) == Counter(
        key(d) for d in unfiltered if d["level"] in ("high", "critical")
    )


# --- bad input through the CLI ----------------------------------------------------------------


def test_scan_of_benign_and_corrupt_evtx_names_each_corrupt_file_with_a_reason(
    run_cli, need_data, labels_of, rules_dir: Path, tmp_path: Path
) -> None:
    folder = need_data("windows", "evtx-rs-benign-and-corrupt")
    stats_path = tmp_path / "stats.json"

    result = run_cli("scan", folder, "--rules", rules_dir, "--stats", stats_path)

    assert result.exit_code == 0, result.output
    files = {Path(f["path"]).name: f for f in json.loads(stats_path.read_text())["files"]}
    for label in labels_of(folder):
        entry = files[label["file"]]
        problems = [*entry["rejects"], *entry["warnings"]]
        if label["corrupt"]:
            assert problems, f"{label['file']} is corrupt but reported clean"
            assert all(p["reason"] and p["record"] for p in problems), problems
        else:
            assert not problems, f"{label['file']} is benign: {problems}"


# --- rules check ------------------------------------------------------------------------------


def test_rules_check_loads_at_least_99_percent_of_sigmahq(
    run_cli, sigma_rule_dirs: list[Path]
) -> None:
    result = run_cli("rules", "check", *sigma_rule_dirs, "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rule_files = [
        p for folder in sigma_rule_dirs for p in folder.rglob("*") if p.suffix in (".yml", ".yaml")
    ]
    assert report["files"] == len(rule_files)
    assert report["loaded_percent"] >= 99
    assert report["rules"] + report["correlations"] + report["unusable"] >= len(rule_files)
    assert len(report["problems"]) == report["unusable"]
    for problem in report["problems"]:
        assert problem["reason"].strip(), problem
        assert Path(problem["path"]).is_file(), problem


def test_rules_check_names_the_rule_that_cannot_be_used(run_cli, rules_dir: Path) -> None:
    broken = rules_dir / "broken.yml"
    broken.write_text(WHOAMI_RULE.replace("5f0a8b1e", "6f0a8b1e").replace("selection\n", "sel\n"))

    result = run_cli("rules", "check", rules_dir, "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["files"], report["rules"], report["unusable"]) == (2, 1, 1)
    assert report["loaded_percent"] == 50.0
    [problem] = report["problems"]
    assert problem["path"] == str(broken)
    assert problem["reason"].strip()
