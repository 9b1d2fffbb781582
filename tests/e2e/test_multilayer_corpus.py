"""Every file of the multi-layer reference corpus (linux, network, cloud, and the Mordor
Windows JSON) is read with its format detected, and each file's record count equals an
independent count made here with the standard library alone, minus the rejects it reports."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from vigil.ingest import FileReport, discover, read_events

FOLDERS = [("linux",), ("network",), ("cloud",), ("windows", "otrf-security-datasets")]
# documentation, metadata, an Office file, and packet captures (Vigil reads Zeek's logs of them)
NOT_LOGS = {".txt", ".md", ".yaml", ".yml", ".config", ".xlsx", ".docx", ".pdf", ".cap", ".pcap"}


def is_log(name: str) -> bool:
    """Not documentation, metadata or an Office file; not a macOS resource fork in a zip."""
    return Path(name).suffix.lower() not in NOT_LOGS and "__MACOSX/" not in name


def _contents(path: Path) -> Iterator[tuple[str, bytes]]:
    """(name, decompressed content) of a file, or of each member of a zip."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                if not info.is_dir():
                    yield f"{path}/{info.filename}", archive.read(info)
        return
    yield str(path), data


def independent_count(data: bytes) -> int:
    """Records in a log, counted without Vigil: JSON items, Zeek data lines, audit events
    (distinct `audit(time:serial)`), or lines."""
    text = data.decode("utf-8", "replace").lstrip("\ufeff")
    lines = [line for line in text.splitlines() if line.strip()]
    if text.startswith("#separator"):
        return sum(1 for line in lines if not line.startswith("#"))
    if text.lstrip().startswith("type=") or text.lstrip().startswith("node="):
        return len({line.split("audit(", 1)[1].split(")", 1)[0] for line in lines})
    if text.lstrip()[:1] in ("{", "["):
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            return len(lines)  # JSON lines
        if isinstance(whole, dict) and isinstance(whole.get("Records"), list):
            return len(whole["Records"])
        return len(whole) if isinstance(whole, list) else 1
    return len(lines)


@pytest.fixture(scope="module")
def corpus(need_data) -> dict[str, tuple[FileReport, int]]:
    reports: dict[str, tuple[FileReport, int]] = {}
    for parts in FOLDERS:
        for source in discover([need_data(*parts)]):
            report = FileReport(source.name)
            count = sum(len(batch) for batch in read_events(source, report))
            reports[source.name] = (report, count)
    return reports


def test_every_log_file_is_read_and_counts_match_an_independent_count(corpus, need_data) -> None:
    expected: dict[str, int] = {}
    for parts in FOLDERS:
        for path in sorted(p for p in need_data(*parts).rglob("*") if p.is_file()):
            if not is_log(str(path)):
                continue
            for name, data in _contents(path):
                if is_log(name):
                    expected[name] = independent_count(data)
    assert len(expected) > 150
    mismatched = {}
    for name, count in expected.items():
        report, events = corpus[name]
        assert report.format not in ("unknown", "skipped", "unreadable"), name
        if events != count - report.records_rejected or events != report.records_read:
            mismatched[name] = (count, events, report.records_rejected)
    assert not mismatched


def test_files_that_are_not_logs_are_skipped_with_a_reason(corpus) -> None:
    skipped = {
        name for name, (report, _) in corpus.items() if report.format in ("unknown", "skipped")
    }
    assert skipped
    assert not [name for name in skipped if is_log(name)]
    for name in skipped:
        assert corpus[name][0].warnings, name


def test_formats_are_detected_from_content(corpus) -> None:
    def format_of(fragment: str) -> set[str]:
        return {r.format for name, (r, _) in corpus.items() if fragment in name}

    assert format_of("stratosphere/005-zeek-scenario-malicious/dns.log") == {"zeek"}
    assert format_of("otrf-apt29-zeek/day1/zeek/individual_zeek_logs/NASHUA_dns.log") == {"jsonl"}
    assert format_of("wrccdc2018-zeek/dns.json.gz") == {"jsonl"}
    assert format_of("elastic-examples/auth.log") == {"syslog"}
    assert format_of("sh_arp_cache.zip") == {"auditd"}
    assert format_of("stratus-red-team/aws.") == {"json"}
    assert format_of("suricata-eve-alerts/wrccdc-2018/alerts-only.json") == {"json"}


def test_known_broken_records_are_reported_not_fatal(corpus) -> None:
    # Azure Sentinel cut the Sysmon for Linux XML of record 8 at 2,012 characters. 16 others
    # hold `&lt unknown process&gt ` (no semicolons), as Sysmon for Linux writes: read as meant.
    [(_name, (report, count))] = [
        item for item in corpus.items() if "syslog_sysmon_log4shell" in item[0]
    ]
    truncated = [w for w in report.warnings if "cut short" in w.reason]
    assert [w.record for w in truncated] == [8]
    assert count == 93  # read, with the fields before the cut
    assert report.records_rejected == 0
