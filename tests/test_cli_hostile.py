"""The `vigil` command line given bad input: one plain error line naming the problem, a
non-zero exit, never a traceback, and nothing started or written first.

Runs in-process through typer's CliRunner; `vigil serve` runs as a child process (with a
deadline) so that a command that wrongly starts serving cannot hang the suite."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

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


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "whoami.yml").write_text(WHOAMI_RULE)
    return folder


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "logs.jsonl"
    path.write_text('{"a": 1}\n')
    return path


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    """A regular file, given where a folder is expected."""
    path = tmp_path / "not-a-folder"
    path.write_text("x")
    return path


@pytest.fixture
def broken_rules(tmp_path: Path) -> Path:
    folder = tmp_path / "broken-rules"
    folder.mkdir()
    (folder / "unclosed.yml").write_text("title: [unclosed\n")
    (folder / "no-detection.yml").write_text("title: Nothing\nlogsource: {product: windows}\n")
    return folder


@pytest.fixture
def empty_rules(tmp_path: Path) -> Path:
    folder = tmp_path / "empty-rules"
    folder.mkdir()
    return folder


def assert_clean_error(result: Result, *mentions: str) -> None:
    """Exited non-zero on purpose (SystemExit), no traceback, and the output names it."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    for text in mentions:
        assert text in result.output, result.output


def assert_one_error_line(result: Result, *mentions: str) -> None:
    """As above, and the error is one `error:` line on standard error naming each mention."""
    assert_clean_error(result, *mentions)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for text in mentions:
        assert text in errors[0], errors[0]


# --- output into a missing folder, or onto a folder -------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "table"])
def test_scan_into_a_missing_folder_says_so_without_a_traceback(
    run_cli, rules_dir: Path, log_file: Path, tmp_path: Path, fmt: str
) -> None:
    missing = tmp_path / "missing" / "dir"
    result = run_cli("scan", log_file, "--rules", rules_dir, "--format", fmt, "-o", missing / "out")
    assert_one_error_line(result, str(missing), "no such folder")


@pytest.mark.parametrize("option", ["--stats", "--rejects"])
def test_scan_figures_into_a_missing_folder_say_so_before_scanning(
    run_cli, rules_dir: Path, log_file: Path, tmp_path: Path, option: str
) -> None:
    missing = tmp_path / "missing"
    result = run_cli("scan", log_file, "--rules", rules_dir, option, missing / "out.json")
    assert_one_error_line(result, str(missing), "no such folder")
    assert "Read " not in result.output  # refused before any log was read


def test_scan_output_onto_a_folder_is_refused(
    run_cli, rules_dir: Path, log_file: Path, tmp_path: Path
) -> None:
    result = run_cli("scan", log_file, "--rules", rules_dir, "--format", "jsonl", "-o", tmp_path)
    assert_one_error_line(result, str(tmp_path), "is a folder")


def test_scan_output_under_a_file_is_refused(
    run_cli, rules_dir: Path, log_file: Path, a_file: Path
) -> None:
    result = run_cli("scan", log_file, "--rules", rules_dir, "-o", a_file / "out.jsonl")
    assert_one_error_line(result, str(a_file), "not a folder")


def test_sightings_into_a_missing_folder_say_so(run_cli, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    result = run_cli(
        "intel", "sightings", "-o", missing / "sightings.json", "--data-dir", tmp_path / "data"
    )
    assert_one_error_line(result, str(missing), "no such folder")


def test_attack_layer_into_a_missing_folder_says_so(
    run_cli, rules_dir: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "missing"
    result = run_cli("intel", "attack-layer", "--rules", rules_dir, "-o", missing / "layer.json")
    assert_one_error_line(result, str(missing), "no such folder")


def test_import_aside_into_a_missing_folder_says_so(run_cli, tmp_path: Path) -> None:
    feed = tmp_path / "feed.txt"
    feed.write_text("203.0.113.7\n")
    missing = tmp_path / "missing"
    result = run_cli(
        "intel", "import", feed, "--aside", missing / "aside.jsonl", "--data-dir", tmp_path / "d"
    )
    assert_one_error_line(result, str(missing), "no such folder")


# --- hunt --since ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("since", "says"),
    [
        ("999999w", "100 years"),
        ("garbage", "not a time"),
        ("9999-12-31T23:59:59-05:00", "out of the range of dates"),
        ("0001-01-01T00:00:00+01:00", "out of the range of dates"),
    ],
)
def test_hunt_since_out_of_range_or_garbage_is_one_clean_error(
    run_cli, rules_dir: Path, tmp_path: Path, since: str, says: str
) -> None:
    result = run_cli(
        "hunt", "--sigma", rules_dir / "whoami.yml", "--since", since, "--data-dir", tmp_path / "d"
    )
    assert_one_error_line(result, since, says)


def test_hunt_since_without_sigma_is_refused(run_cli, tmp_path: Path) -> None:
    result = run_cli("hunt", "SELECT 1", "--since", "1d", "--data-dir", tmp_path / "d")
    assert_one_error_line(result, "--since", "--sigma")


# --- limits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["-5", "0"])
@pytest.mark.parametrize(
    "command",
    [
        ("hunt", "SELECT 1", "--limit"),
        ("incident", "list", "--limit"),
        ("entities", "--limit"),
        ("metrics", "--days"),
    ],
    ids=lambda c: " ".join(c),
)
def test_a_limit_below_one_is_refused(
    run_cli, tmp_path: Path, command: tuple[str, ...], value: str
) -> None:
    result = run_cli(*command, value, "--data-dir", tmp_path / "d")
    assert_clean_error(result, command[-1])
    assert not (tmp_path / "d").exists()  # refused before the data folder was touched


def test_scan_limit_below_zero_is_refused(run_cli, rules_dir: Path, log_file: Path) -> None:
    result = run_cli("scan", log_file, "--rules", rules_dir, "--limit", "-5")
    assert_clean_error(result, "--limit")


def test_correlate_top_below_zero_is_refused(run_cli, log_file: Path) -> None:
    result = run_cli("correlate", log_file, "--top", "-1")
    assert_clean_error(result, "--top")


# --- a data folder that is a file -------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("hunt", "SELECT 1"),
        ("token", "create", "--role", "analyst"),
        ("incident", "list"),
        ("incident", "show", "INC-1"),
        ("entities",),
        ("metrics",),
        ("intel", "stats"),
        ("intel", "search", "203.0.113.7"),
        ("intel", "sightings"),
        ("demo",),
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_a_data_dir_that_is_a_file_is_not_a_folder(
    run_cli, a_file: Path, command: tuple[str, ...]
) -> None:
    result = run_cli(*command, "--data-dir", a_file)
    assert_one_error_line(result, str(a_file), "not a folder")


def test_scan_intel_with_a_data_dir_that_is_a_file_says_so_before_loading_rules(
    run_cli, rules_dir: Path, log_file: Path, a_file: Path
) -> None:
    result = run_cli("scan", log_file, "--rules", rules_dir, "--intel", "--data-dir", a_file)
    assert_one_error_line(result, str(a_file), "not a folder")
    assert "Loaded" not in result.output


def test_a_data_dir_from_the_environment_that_is_a_file_is_not_a_folder(
    run_cli, a_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIGIL_DATA_DIR", str(a_file))
    assert_one_error_line(run_cli("incident", "list"), str(a_file), "not a folder")
    assert_one_error_line(run_cli("intel", "stats"), str(a_file), "not a folder")


def test_a_data_dir_inside_a_file_names_the_file(run_cli, a_file: Path) -> None:
    result = run_cli("incident", "list", "--data-dir", a_file / "data")
    assert_one_error_line(result, str(a_file), "not a folder")


@pytest.mark.parametrize(
    "command",
    [("incident", "list"), ("token", "create", "--role", "analyst"), ("intel", "stats")],
    ids=lambda c: " ".join(c[:2]),
)
def test_a_state_database_that_is_not_one_is_a_clean_error(
    run_cli, tmp_path: Path, command: tuple[str, ...]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "vigil.db").write_bytes(b"not a database at all " * 64)
    result = run_cli(*command, "--data-dir", data)
    assert_one_error_line(result, "not a database")


# --- rule sets with nothing usable ------------------------------------------------------------


@pytest.mark.parametrize("which", ["empty", "broken"])
def test_rules_check_of_a_set_with_no_usable_rule_fails(
    run_cli, empty_rules: Path, broken_rules: Path, which: str
) -> None:
    folder = empty_rules if which == "empty" else broken_rules
    result = run_cli("rules", "check", folder)
    assert_one_error_line(result, "no usable rule", str(folder))


def test_rules_check_json_of_broken_rules_still_reports_them_and_fails(
    run_cli, broken_rules: Path
) -> None:
    result = run_cli("rules", "check", broken_rules, "--json")
    assert_one_error_line(result, "no usable rule")
    assert '"unusable": 2' in result.stdout


@pytest.mark.parametrize("which", ["empty", "broken"])
def test_scan_with_no_usable_rule_fails(
    run_cli, log_file: Path, empty_rules: Path, broken_rules: Path, which: str
) -> None:
    folder = empty_rules if which == "empty" else broken_rules
    result = run_cli("scan", log_file, "--rules", folder)
    assert_one_error_line(result, "no usable rule", str(folder))
    assert "Read " not in result.output


def test_scan_with_no_usable_rule_but_intel_still_fails(
    run_cli, log_file: Path, broken_rules: Path, tmp_path: Path
) -> None:
    result = run_cli(
        "scan", log_file, "--rules", broken_rules, "--intel", "--data-dir", tmp_path / "d"
    )
    assert_one_error_line(result, "no usable rule")


def test_scan_with_broken_rules_and_the_starter_rules_runs(
    run_cli, log_file: Path, broken_rules: Path
) -> None:
    result = run_cli("scan", log_file, "--rules", broken_rules, "--starter-rules")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("target", ["empty", "file"])
def test_hunt_with_a_sigma_path_holding_no_usable_rule_fails(
    run_cli, empty_rules: Path, a_file: Path, tmp_path: Path, target: str
) -> None:
    path = empty_rules if target == "empty" else a_file
    result = run_cli("hunt", "--sigma", path, "--data-dir", tmp_path / "d")
    assert_one_error_line(result, "no usable rule", str(path))


def test_attack_layer_of_no_usable_rule_fails_and_writes_nothing(
    run_cli, empty_rules: Path, tmp_path: Path
) -> None:
    layer = tmp_path / "layer.json"
    result = run_cli("intel", "attack-layer", "--rules", empty_rules, "-o", layer)
    assert_one_error_line(result, "no usable rule")
    assert not layer.exists()


# --- other paths ------------------------------------------------------------------------------


def test_evidence_that_is_a_folder_is_refused(run_cli, tmp_path: Path) -> None:
    result = run_cli("incident", "evidence", "INC-1", tmp_path, "--data-dir", tmp_path / "d")
    assert_one_error_line(result, str(tmp_path), "is a folder")


def test_missing_evidence_is_named(run_cli, tmp_path: Path) -> None:
    missing = tmp_path / "missing.bin"
    result = run_cli("incident", "evidence", "INC-1", missing, "--data-dir", tmp_path / "d")
    assert_one_error_line(result, str(missing), "No such file")


def test_incident_list_of_an_unknown_status_is_refused(run_cli, tmp_path: Path) -> None:
    result = run_cli("incident", "list", "--status", "bogus", "--data-dir", tmp_path / "d")
    assert_one_error_line(result, "bogus", "triaged")


# --- vigil serve: refused at once, never a false "serving" line -------------------------------


def serve(tmp_path: Path, *args: str | Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    """`vigil serve ...` as a child process with a deadline: (exit code, standard error)."""
    child_env = {
        **os.environ,
        "VIGIL_INDICATORS": "false",
        "VIGIL_STARTER_RULES": "false",
        "VIGIL_CACHE_DIR": str(tmp_path / "cache"),
        "VIGIL_PIPELINE__WORKERS": "0",
        "VIGIL_CONFIG": str(tmp_path / "no-such-vigil.toml"),
        **(env or {}),
    }
    child_env.pop("VIGIL_DATA_DIR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "vigil.cli", "serve", *map(str, args)],
        cwd=tmp_path,
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, stderr = process.communicate()
        pytest.fail(f"vigil serve {args} was still running after 15 s:\n{stderr}")
    return process.returncode, stderr


def assert_refused(code: int, stderr: str, *mentions: str) -> None:
    assert code != 0, stderr
    assert "Traceback" not in stderr
    assert "serving" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    for text in mentions:
        assert text in errors[0], stderr


def test_serve_with_a_missing_rules_folder_names_it_at_once(tmp_path: Path) -> None:
    missing = tmp_path / "missing" / "folder"
    code, stderr = serve(tmp_path, "--rules", missing, "--data-dir", tmp_path / "d", "--port", "0")
    assert_refused(code, stderr, str(missing))


def test_serve_with_a_data_dir_that_is_a_file_is_not_a_folder(tmp_path: Path, a_file: Path) -> None:
    code, stderr = serve(tmp_path, "--data-dir", a_file, "--port", "0")
    assert_refused(code, stderr, str(a_file), "not a folder")


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_serve_on_a_port_out_of_range_fails_at_once(tmp_path: Path, port: str) -> None:
    code, stderr = serve(tmp_path, "--data-dir", tmp_path / "d", "--port", port)
    assert code != 0, stderr
    assert "Traceback" not in stderr and "serving" not in stderr
    assert "--port" in stderr
    assert not (tmp_path / "d").exists()


def test_serve_on_a_port_in_use_says_so(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, stderr = serve(tmp_path, "--data-dir", tmp_path / "d", "--port", str(port))
    assert_refused(code, stderr, f"127.0.0.1:{port}", "in use")


def test_serve_with_a_syslog_port_in_use_says_so(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, stderr = serve(
            tmp_path,
            "--data-dir",
            tmp_path / "d",
            "--port",
            "0",
            env={"VIGIL_LISTENERS__SYSLOG_TCP": str(port)},
        )
    assert_refused(code, stderr, f"127.0.0.1:{port}", "syslog", "in use")


def test_serve_with_no_usable_rule_fails(tmp_path: Path, empty_rules: Path) -> None:
    code, stderr = serve(
        tmp_path, "--rules", empty_rules, "--data-dir", tmp_path / "d", "--port", "0"
    )
    assert_refused(code, stderr, "no usable rule", str(empty_rules))


def test_serve_with_a_state_database_that_is_not_one_says_so(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    (data / "vigil.db").write_bytes(b"not a database at all " * 64)
    code, stderr = serve(tmp_path, "--data-dir", data, "--port", "0")
    assert_refused(code, stderr, "not a database")


def test_serve_with_a_data_folder_nobody_may_write_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"a folder nobody may write needs chattr on ext4 (root): {done.stderr}")
    try:
        code, stderr = serve(tmp_path, "--data-dir", folder, "--port", "0")
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=False)
    assert_refused(code, stderr, "state database", "not writable")
