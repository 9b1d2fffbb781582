"""JSON logs: JSON lines, arrays, concatenated pretty-printed documents, gzip and zip wrapping.

Small synthetic inputs are written to tmp_path by each test; the reference checks use the
SigmaHQ regression samples (each .json beside the .evtx it was rendered from) and the OTRF
Mordor zips (JSON lines of Windows events, with a macOS resource fork and a pcap inside).
"""

from __future__ import annotations

import gzip
import io
import json
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import evtx
import pytest

from vigil.events import Event
from vigil.ingest import FileReport, discover, read_events


def read_path(path: Path) -> list[tuple[FileReport, list[Event]]]:
    """Every input under `path`, read: (report, events) per input."""
    out = []
    for source in discover([path]):
        report = FileReport(source.name)
        events = [event for batch in read_events(source, report) for event in batch]
        out.append((report, events))
    return out


def read_one(path: Path) -> tuple[FileReport, list[Event]]:
    [result] = read_path(path)
    return result


def json_lines(*objects: Any) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objects)


# --- JSON lines ------------------------------------------------------------------------------

GOOD = [b'{"EventID": 4624, "n": 1}', b'{"EventID": 4625, "n": 2}', b'{"EventID": 4634, "n": 3}']


@pytest.mark.parametrize(
    ("bad_line", "at"),
    [
        pytest.param(b'{"EventID": 4688, "n": oops}', 2, id="middle-line"),
        pytest.param(b'{"EventID": 4688, "n": 4', 4, id="truncated-last-line"),
        pytest.param(
            b'{"EventID": 4688, "n": oops}',
            1,
            id="first-line",
        ),
        pytest.param(
            b"<garbage>",
            2,
            id="second-line-not-an-object",
        ),
    ],
)
def test_malformed_json_line_is_rejected_with_its_number_and_the_rest_read(
    tmp_path: Path, bad_line: bytes, at: int
) -> None:
    lines = list(GOOD)
    lines.insert(at - 1, bad_line)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + (b"\n" if at <= len(GOOD) else b""))

    report, events = read_one(path)

    assert [e.record for e in events] == [n for n in range(1, len(lines) + 1) if n != at]
    assert [e.fields["n"] for e in events] == [1, 2, 3]
    assert report.records_read == 3
    assert report.records_rejected == 1
    [reject] = report.rejects
    assert reject.record == at
    assert "invalid JSON" in reject.reason


def test_blank_lines_are_skipped_and_line_numbers_kept(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"a": 1}\n\n{"a": 3}\r\n   \n{"a": 5}\n')

    report, events = read_one(path)

    assert [(e.record, e.fields["a"]) for e in events] == [(1, 1), (3, 3), (5, 5)]
    assert report.format == "jsonl"
    assert not report.rejects


def test_format_is_known_by_content_not_by_file_name(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    path.write_bytes(json_lines({"a": 1}, {"a": 2}))

    report, events = read_one(path)

    assert report.format == "jsonl"
    assert len(events) == 2


# --- JSON arrays and documents ----------------------------------------------------------------


def test_json_array_items_are_numbered_and_non_objects_rejected(tmp_path: Path) -> None:
    path = tmp_path / "alerts.json"
    path.write_text(json.dumps([{"a": 1}, {"a": 2}, 3, {"a": 4}], indent=2))

    report, events = read_one(path)

    assert [(e.record, e.fields["a"]) for e in events] == [(1, 1), (2, 2), (4, 4)]
    [reject] = report.rejects
    assert reject.record == 3
    assert "not an object" in reject.reason


def test_pretty_printed_documents_one_after_another_are_split(tmp_path: Path) -> None:
    docs = [{"Event": {"System": {"EventID": i, "Channel": "Security"}}} for i in (1, 2, 3)]
    path = tmp_path / "events.json"
    path.write_text("\n".join(json.dumps(d, indent=2) for d in docs) + "\n")

    report, events = read_one(path)

    assert [e.fields["EventID"] for e in events] == [1, 2, 3]
    assert [e.record for e in events] == [1, 2, 3]
    assert not report.rejects


def test_broken_document_is_rejected_with_where_and_earlier_documents_kept(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.json"
    path.write_text('{\n  "a": 1\n}\n{\n  "a":\n}\n')

    report, events = read_one(path)

    assert [e.fields["a"] for e in events] == [1]
    [reject] = report.rejects
    assert reject.record == 2
    assert "line 6" in reject.reason


def test_regression_json_samples_hold_as_many_events_as_their_evtx(
    need_data: Callable[..., Path], labels_of: Callable[[Path], list[dict[str, Any]]]
) -> None:
    folder = need_data("windows", "sigma-regression-data")
    wrong = {}
    multi = 0
    for label in labels_of(folder):
        evtx_path = folder / label["file"]
        json_path = evtx_path.with_name(evtx_path.name.removesuffix(".evtx.gz") + ".json")
        parser = evtx.PyEvtxParser(io.BytesIO(gzip.decompress(evtx_path.read_bytes())))
        expected = sum(1 for _ in parser.records_json())
        multi += expected > 1
        report, events = read_one(json_path)
        if len(events) != expected or report.rejects or report.warnings:
            wrong[label["file"]] = (expected, len(events), report.rejects, report.warnings)
    assert multi > 0, "no multi-record sample: the concatenated-document case went untested"
    assert not wrong


# --- compression and archives -----------------------------------------------------------------


def test_zipped_json_lines_are_read_under_the_archive_member_name(tmp_path: Path) -> None:
    path = tmp_path / "case.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("host1/sysmon.jsonl", json_lines({"a": 1}, {"a": 2}, {"a": 3}))

    report, events = read_one(path)

    assert report.path == f"{path}/host1/sysmon.jsonl"
    assert [e.source for e in events] == [report.path] * 3
    assert [e.record for e in events] == [1, 2, 3]


def test_gzipped_json_lines_with_a_stray_trailing_byte_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(gzip.compress(json_lines(*({"n": i} for i in range(50)))) + b"\n")

    report, events = read_one(path)

    assert [e.fields["n"] for e in events] == list(range(50))
    assert any("trailing" in w.reason for w in report.warnings)


def test_truncated_gzip_json_lines_are_read_up_to_the_break(tmp_path: Path) -> None:
    data = json_lines(*({"n": i} for i in range(5000)))
    packed = gzip.compress(data)
    cut = packed[: len(packed) // 2]
    complete = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(cut).count(b"\n")
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(cut)

    report, events = read_one(path)

    # every complete line is read; the cut-off partial line (if any) is a reject
    assert [e.fields["n"] for e in events] == list(range(complete))
    assert report.records_rejected <= 1
    assert any("truncated" in w.reason for w in report.warnings)


def _gzip_member_of_exact_size(data: bytes, size: int) -> tuple[bytes, int]:
    """A stored (level 0) gzip member of `data[:n]` exactly `size` bytes long, and n."""
    for n in range(size - 40, size):
        packer = zlib.compressobj(0, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        member = packer.compress(data[:n]) + packer.flush()
        if len(member) == size:
            return member, n
    raise AssertionError("no member of that size")


@pytest.mark.parametrize(
    "first_member_size",
    [
        5000,
        pytest.param(
            8192,
        ),
    ],
)
def test_every_member_of_a_multi_member_gzip_is_read(
    tmp_path: Path, first_member_size: int
) -> None:
    data = json_lines(*({"n": i} for i in range(20000)))
    first, n = _gzip_member_of_exact_size(data, first_member_size)
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(first + gzip.compress(data[n:]))

    report, events = read_one(path)

    assert [e.fields["n"] for e in events] == list(range(20000))
    assert not report.warnings


# --- OTRF Mordor zips -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mordor(need_data: Callable[..., Path]) -> tuple[Path, list[tuple[FileReport, list[Event]]]]:
    folder = need_data("windows", "otrf-security-datasets")
    return folder, read_path(folder)


def test_mordor_zips_yield_every_non_empty_json_line(mordor) -> None:
    folder, results = mordor
    expected = 0
    for path in sorted(folder.rglob("*.zip")):
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.endswith(".json") and not name.startswith("__MACOSX/"):
                    expected += sum(1 for line in archive.read(name).splitlines() if line.strip())

    zipped = [(r, e) for r, e in results if ".zip/" in r.path]
    assert sum(len(e) for _, e in zipped) == expected
    assert sum(r.records_read for r, _ in zipped) == expected
    assert sum(r.records_rejected for r, _ in zipped) == 0


def test_mordor_macos_resource_fork_is_skipped_with_a_reason(mordor) -> None:
    forks = [r for r, _ in mordor[1] if "/__MACOSX/" in r.path]
    assert forks, "the reference zips hold a __MACOSX resource fork"
    for report in forks:
        assert report.records_read == 0
        assert report.format == "skipped"
        assert any("resource fork" in w.reason for w in report.warnings)


def test_mordor_pcap_member_is_reported_as_not_a_log(mordor) -> None:
    captures = [r for r, _ in mordor[1] if r.path.endswith(".cap")]
    assert captures, "the reference zips hold a .cap capture"
    for report in captures:
        assert report.records_read == 0
        assert any("pcap" in w.reason and "not a log" in w.reason for w in report.warnings)


def test_mordor_events_are_windows_events_named_after_their_host(mordor) -> None:
    events = [e for r, es in mordor[1] if ".zip/" in r.path for e in es]
    assert events
    assert {e.product for e in events} == {"windows"}
    assert all(e.host == e.fields["Hostname"] for e in events if e.fields.get("Hostname"))
    named = [e for e in events if "SourceName" in e.fields]
    assert named
    assert all(e.fields["Provider_Name"] == e.fields["SourceName"] for e in named)
