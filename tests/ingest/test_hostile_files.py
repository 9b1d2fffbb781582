"""Damaged or hostile files: each problem is reported with where and why, the rest is read,
memory stays bounded, and nothing raises."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

from vigil.ingest import FileReport, Input, base, discover, evtx, read_events


def read_all(path: Path) -> list[tuple[FileReport, int]]:
    out = []
    for source in discover([path]):
        report = FileReport(source.name)
        count = sum(len(batch) for batch in read_events(source, report))
        out.append((report, count))
    return out


def reasons(report: FileReport) -> list[str]:
    return [p.reason for p in report.rejects + report.warnings]


def test_concatenated_documents_with_nan_or_huge_numbers_are_read_or_rejected(
    tmp_path: Path,
) -> None:
    path = tmp_path / "docs.json"
    # Two pretty-printed documents one after another (not JSON lines), the second with an
    # integer beyond 64 bits, then one with NaN, which is not JSON.
    path.write_text(
        '{\n "a": 1\n}\n{\n "big": 123456789012345678901234567890\n}\n{\n "x": NaN\n}\n'
    )
    [(report, count)] = read_all(path)
    assert count == 2
    assert report.records_rejected == 1
    assert any("NaN" in r for r in reasons(report)), reasons(report)


def test_a_record_nested_too_deeply_is_rejected_and_the_rest_read(tmp_path: Path) -> None:
    deep = '{"a": ' * 1000 + "1" + "}" * 1000  # deeper than flattening can recurse
    lines = ['{"n": 1}', '{"n": 2, "deep": ' + deep + "}", '{"n": 3}']
    path = tmp_path / "deep.jsonl"
    path.write_text("\n".join(lines) + "\n")
    [source] = discover([path])
    report = FileReport(source.name)
    events = [e for batch in read_events(source, report) for e in batch]
    assert [e.fields["n"] for e in events] == [1, 3]
    assert [(p.record, p.reason) for p in report.rejects] == [
        (2, "nested more than 64 levels deep")
    ]


def test_a_list_nested_past_the_depth_cap_is_rejected_with_its_reason(tmp_path: Path) -> None:
    # 254 nested lists: orjson reads it, but no writer downstream can serialise it again
    deep = "[" * 254 + "1" + "]" * 254
    lines = ['{"n": 1}', '{"n": 2, "x": ' + deep + "}", '{"n": 3, "ok": [[[1]]]}']
    path = tmp_path / "deep.jsonl"
    path.write_text("\n".join(lines) + "\n")
    [source] = discover([path])
    report = FileReport(source.name)
    events = [e for batch in read_events(source, report) for e in batch]
    assert [e.fields["n"] for e in events] == [1, 3]
    assert [(p.record, p.reason) for p in report.rejects] == [
        (2, "nested more than 64 levels deep")
    ]


def test_an_overlong_line_is_rejected_by_number_and_reading_goes_on(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(base, "MAX_LINE", 1 << 20)
    monkeypatch.setattr(base, "CHUNK", 1 << 16)
    long_line = b'{"pad": "' + b"x" * (3 << 20) + b'"}'
    path = tmp_path / "long.jsonl"
    path.write_bytes(b'{"n": 1}\n{"n": 2}\n' + long_line + b'\n{"n": 4}\n{"n": 5}\n')
    [(report, count)] = read_all(path)
    assert count == 4
    assert report.records_rejected == 1
    assert report.rejects[0].record == 3
    assert "longer than" in report.rejects[0].reason


def test_zip_with_many_members_reads_each_once(tmp_path: Path) -> None:
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for index in range(300):
            archive.writestr(f"part-{index:03}.jsonl", f'{{"n": {index}}}\n')
    results = read_all(path)
    assert len(results) == 300
    assert all(count == 1 and not report.rejects for report, count in results)


def test_zip_whose_directory_cannot_be_decoded_is_one_reported_input(tmp_path: Path) -> None:
    path = tmp_path / "names.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.jsonl", '{"n": 1}\n')
    data = bytearray(path.read_bytes())
    # Mark the central directory's name as UTF-8 and make it invalid UTF-8.
    central = data.rindex(b"PK\x01\x02")
    flags = struct.unpack_from("<H", data, central + 8)[0] | 0x800
    struct.pack_into("<H", data, central + 8, flags)
    data[central + 46] = 0xFF
    path.write_bytes(bytes(data))
    [(report, count)] = read_all(path)
    assert count == 0
    assert report.records_rejected == 1
    assert "cannot read" in report.rejects[0].reason


def _chunk_with_record_range(first: int, last: int) -> bytes:
    chunk = bytearray(evtx.CHUNK_SIZE)
    chunk[:8] = evtx.CHUNK_MAGIC
    struct.pack_into("<QQ", chunk, 24, first, last)
    struct.pack_into("<I", chunk, 48, 512)
    struct.pack_into("<I", chunk, 124, zlib.crc32(bytes(chunk[:120] + chunk[128:512])))
    return bytes(chunk)


def test_evtx_chunk_claiming_billions_of_records_is_reported_not_enumerated() -> None:
    header = bytearray(evtx.HEADER_SIZE)
    header[:8] = evtx.MAGIC
    struct.pack_into("<H", header, 42, 1)
    struct.pack_into("<I", header, 124, zlib.crc32(bytes(header[:120])))
    data = bytes(header) + _chunk_with_record_range(1, 1 << 60)
    layout = evtx.inspect(data)
    assert any("more than fit" in problem for _, problem in layout.problems), layout.problems
    source = Input("huge-range.evtx", lambda: io.BytesIO(data))
    report = FileReport(source.name)
    assert [e for batch in read_events(source, report) for e in batch] == []
    assert report.records_rejected < 10


def test_gaps_are_computed_from_ranges() -> None:
    assert evtx._gaps(1, 10, [1, 2, 5, 10]) == [(3, 4), (6, 9)]
    assert evtx._gaps(5, 7, []) == [(5, 7)]
    assert evtx._gaps(5, 7, [1, 5, 6, 7, 99]) == []
