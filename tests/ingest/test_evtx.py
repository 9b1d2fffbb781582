"""EVTX reading against the evtx-rs sample set: benign logs and deliberately damaged ones.

Ground truth: labels.jsonl (which files are corrupt), SOURCE.txt (the kinds of damage: bad
chunk magic, bad string cache, zero-size event, no crc32), and pyevtx-rs itself for how many
records can be read (computed here independently of Vigil).
"""

from __future__ import annotations

import gzip
import io
import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import evtx
import pytest

from vigil.events import Event
from vigil.ingest import FileReport, Input, discover, read_events

FOLDER = ("windows", "evtx-rs-benign-and-corrupt")

# What is wrong, and where, as a reader must say it.
WHAT = re.compile(r"CRC32|signature|magic|data size|truncated", re.IGNORECASE)
WHERE = re.compile(r"chunk \d+|file header|offset|records? \d+", re.IGNORECASE)

CHUNK_MAGIC = b"ElfChnk\x00"
HEADER_SIZE = 4096
CHUNK_SIZE = 65536


def pyevtx_records(data: bytes) -> list[dict[str, Any]]:
    """Every record pyevtx-rs yields, going on after each error (its own catch-and-continue)."""
    records = evtx.PyEvtxParser(io.BytesIO(data)).records_json()
    found = []
    while True:
        try:
            record = next(records)
        except StopIteration:
            return found
        except RuntimeError:
            continue
        if record is not None:
            found.append(record)


def announced_record_count(data: bytes) -> int:
    """Records the chunk headers say they hold (first/last record number at offsets 24/32 of
    each `ElfChnk` chunk header, per the EVTX format description)."""
    total = 0
    for start in range(HEADER_SIZE, len(data) - CHUNK_SIZE + 1, CHUNK_SIZE):
        if data[start : start + 8] == CHUNK_MAGIC:
            first, last = struct.unpack_from("<QQ", data, start + 24)
            total += last - first + 1
    return total


def read(path: Path) -> tuple[FileReport, list[Event]]:
    [source] = discover([path])
    report = FileReport(source.name)
    events = [event for batch in read_events(source, report) for event in batch]
    return report, events


def problems(report: FileReport) -> list[str]:
    return [f"{p.record}: {p.reason}" for p in [*report.rejects, *report.warnings]]


@pytest.fixture(scope="module")
def samples(
    need_data: Callable[..., Path], labels_of: Callable[[Path], list[dict[str, Any]]]
) -> dict[str, tuple[dict[str, Any], FileReport, list[Event]]]:
    """Every labelled sample read once by Vigil: name -> (label, report, events)."""
    folder = need_data(*FOLDER)
    out = {}
    for label in labels_of(folder):
        report, events = read(folder / label["file"])
        out[label["file"]] = (label, report, events)
    return out


def test_every_corrupt_file_is_reported_with_what_is_wrong_and_where(samples) -> None:
    corrupt = {name: s for name, s in samples.items() if s[0]["corrupt"]}
    assert corrupt, "labels.jsonl names no corrupt file"
    unreported = [
        name
        for name, (_, report, _) in corrupt.items()
        if not any(
            WHAT.search(p.reason) and WHERE.search(str(p.record))
            for p in [*report.rejects, *report.warnings]
        )
    ]
    assert not unreported, f"corrupt files without a reason naming what and where: {unreported}"


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("Application_no_crc32.evtx.gz", r"CRC32 mismatch"),
        ("security_bad_string_cache.evtx.gz", r"chunk header CRC32 mismatch"),
        ("sample_with_a_bad_chunk_magic.evtx.gz", r"signature|magic"),
        ("sample-with-zero-data-size-event.evtx.gz", r"data size"),
    ],
)
def test_each_kind_of_damage_is_named(samples, name: str, damage: str) -> None:
    if name not in samples:
        pytest.skip(f"{name} not in labels.jsonl")
    _, report, _ = samples[name]
    assert any(re.search(damage, text) for text in problems(report)), problems(report)


def test_benign_files_have_no_rejects_and_no_warnings(samples) -> None:
    noisy = {
        name: problems(report)
        for name, (label, report, _) in samples.items()
        if not label["corrupt"] and (report.rejects or report.warnings)
    }
    assert not noisy


def test_every_record_pyevtx_rs_can_read_is_read(samples, need_data) -> None:
    folder = need_data(*FOLDER)
    wrong = {}
    for name, (_, report, events) in samples.items():
        expected = len(pyevtx_records(gzip.decompress((folder / name).read_bytes())))
        if (report.records_read, len(events)) != (expected, expected):
            wrong[name] = {"pyevtx-rs": expected, "vigil": report.records_read}
    assert not wrong


def test_evtx_records_become_windows_events_with_their_record_id(samples) -> None:
    _, report, events = samples["security.evtx.gz"]
    assert report.format == "evtx"
    assert {e.product for e in events} == {"windows"}
    assert [e.record for e in events] == [e.fields["EventRecordID"] for e in events]
    assert all(e.source == report.path for e in events)


def test_zero_data_size_event_reject_names_the_lost_record_range(samples, need_data) -> None:
    name = "sample-with-zero-data-size-event.evtx.gz"
    data = gzip.decompress((need_data(*FOLDER) / name).read_bytes())
    read_ids = {r["event_record_id"] for r in pyevtx_records(data)}
    lost = sorted(set(range(1, max(read_ids) + 1)) - read_ids)
    assert lost == list(range(lost[0], lost[-1] + 1)), "expected one contiguous lost range"
    span = f"records {lost[0]}-{lost[-1]}"

    _, report, _ = samples[name]
    naming = [p for p in report.rejects if span in str(p.record)]
    assert naming, f"no reject names {span}: {problems(report)}"
    assert "chunk 0" in str(naming[0].record)  # the damaged record sits in the first chunk
    assert "data size" in naming[0].reason


def test_records_rejected_counts_every_lost_record(samples, need_data) -> None:
    name = "sample-with-zero-data-size-event.evtx.gz"
    data = gzip.decompress((need_data(*FOLDER) / name).read_bytes())
    announced = announced_record_count(data)  # 450: chunks hold records 1-450
    _, report, _ = samples[name]
    assert report.records_read + report.records_rejected == announced


def test_truncated_gzip_is_read_up_to_the_break_and_reported(need_data, tmp_path: Path) -> None:
    whole = (need_data(*FOLDER) / "security.evtx.gz").read_bytes()
    cut = whole[: len(whole) * 2 // 5]
    path = tmp_path / "security.evtx.gz"
    path.write_bytes(cut)
    readable = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(cut)
    expected = len(pyevtx_records(readable))
    assert 0 < expected < len(pyevtx_records(gzip.decompress(whole)))

    report, events = read(path)

    assert len(events) == report.records_read == expected
    assert any("truncated" in w.reason for w in report.warnings), problems(report)


def test_plain_uncompressed_evtx_reads_like_the_gzipped_file(samples, need_data) -> None:
    name = "Security_short_selected.evtx.gz"
    data = gzip.decompress((need_data(*FOLDER) / name).read_bytes())
    source = Input("Security_short_selected.evtx", lambda: io.BytesIO(data))
    report = FileReport(source.name)

    events = [e for batch in read_events(source, report) for e in batch]

    _, gz_report, gz_events = samples[name]
    assert report.format == gz_report.format == "evtx"
    assert [e.fields for e in events] == [e.fields for e in gz_events]
    assert not report.rejects and not report.warnings


def test_file_shorter_than_the_evtx_header_is_reported_not_raised() -> None:
    source = Input("stub.evtx", lambda: io.BytesIO(b"ElfFile\x00" + bytes(100)))
    report = FileReport(source.name)

    events = [e for batch in read_events(source, report) for e in batch]

    assert events == []
    assert any("shorter than the EVTX header" in p for p in problems(report)), problems(report)
