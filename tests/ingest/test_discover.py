"""Finding inputs: files, folders (recursed, sorted), zip members; and recognising formats."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from pathlib import Path

import pytest

from vigil.errors import InputError
from vigil.ingest import FileReport, Input, detect_format, discover, read_events


def names(root: Path, inputs: list[Input]) -> list[str]:
    return [str(Path(i.name).relative_to(root)) for i in inputs]


def read(source: Input) -> tuple[FileReport, int]:
    report = FileReport(source.name)
    count = sum(len(batch) for batch in read_events(source, report))
    return report, count


def jsonl(n: int) -> bytes:
    return b"".join(json.dumps({"n": i}).encode() + b"\n" for i in range(n))


def test_folders_are_recursed_in_sorted_order(tmp_path: Path) -> None:
    for rel in ("z.json", "b/c.json", "a.json", "b/a.json", "b/deeper/x.json"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(jsonl(1))

    inputs = discover([tmp_path])

    assert names(tmp_path, inputs) == [
        "a.json",
        "b/a.json",
        "b/c.json",
        "b/deeper/x.json",
        "z.json",
    ]


def test_files_and_folders_given_together_are_all_found_in_the_order_given(
    tmp_path: Path,
) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "one.json").write_bytes(jsonl(1))
    (tmp_path / "single.json").write_bytes(jsonl(1))

    inputs = discover([tmp_path / "single.json", tmp_path / "logs"])

    assert names(tmp_path, inputs) == ["single.json", "logs/one.json"]


def test_zip_members_become_inputs_named_after_the_archive(tmp_path: Path) -> None:
    path = tmp_path / "case.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("dir/", b"")
        archive.writestr("dir/security.jsonl", jsonl(2))
        archive.writestr("sysmon.jsonl", jsonl(3))

    inputs = discover([path])

    assert [i.name for i in inputs] == [f"{path}/dir/security.jsonl", f"{path}/sysmon.jsonl"]
    assert [read(i)[1] for i in inputs] == [2, 3]


def test_missing_path_is_an_input_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-case"
    with pytest.raises(InputError, match="no-such-case"):
        discover([missing])


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"ElfFile\x00" + bytes(120), "evtx"),
        (b'{"EventID": 1}\n', "json"),
        (b"\xef\xbb\xbf  [\n  {}\n]", "json"),
        (b"\n\r\n\t {\n", "json"),
        (b"Jun 14 15:16:01 combo sshd(pam_unix)[19939]: check pass;", "syslog"),
        (b"<34>1 2003-10-11T22:14:15.003Z host su - ID47 - failed", "syslog"),
        (b"CEF:0|Vendor|Product|1.0|100|Name|5|src=10.0.0.1", "syslog"),
        (b"#separator \\x09\n#set_separator\t,\n", "zeek"),
        (b"type=SYSCALL msg=audit(1604996384.965:93777): arch=c000003e", "auditd"),
        (b"node=host1 type=EXECVE msg=audit(1604996384.965:93777): argc=1", "auditd"),
        (b"hello\n", None),
        (b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00", None),
        (b"", None),
    ],
)
def test_format_is_recognised_from_content(head: bytes, expected: str | None) -> None:
    assert detect_format(head) == expected


def test_file_that_is_not_a_log_is_skipped_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")

    report, count = read(*discover([path]))

    assert count == 0
    assert report.format == "unknown"
    assert [w.reason for w in report.warnings] == [
        "format not recognised (not EVTX, JSON, Zeek, audit or syslog); skipped"
    ]


def test_pcap_is_named_as_a_capture_not_a_log(tmp_path: Path) -> None:
    path = tmp_path / "traffic.cap"
    path.write_bytes(b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + bytes(16))

    report, count = read(*discover([path]))

    assert count == 0
    assert any("pcap capture" in w.reason for w in report.warnings)


def test_gzip_is_known_by_its_magic_not_its_name(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"  # no .gz suffix
    path.write_bytes(gzip.compress(jsonl(4)))

    report, count = read(*discover([path]))

    assert (report.format, count) == ("jsonl", 4)


def test_gzipped_member_of_a_zip_is_decompressed_and_read(tmp_path: Path) -> None:
    path = tmp_path / "case.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("host1/events.jsonl.gz", gzip.compress(jsonl(5)))

    report, count = read(*discover([path]))

    assert (report.format, count) == ("jsonl", 5)


def test_password_protected_zip_member_is_reported_not_raised(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("events.jsonl", jsonl(2))
    data = bytearray(buffer.getvalue())
    # Set the "encrypted" flag (bit 0 of the general purpose flags) in the local header and
    # in the central directory, as a password-protected archive has it.
    data[6] |= 1
    data[data.find(b"PK\x01\x02") + 8] |= 1
    path = tmp_path / "protected.zip"
    path.write_bytes(bytes(data))
    [source] = discover([path])

    report, count = read(source)

    assert count == 0
    assert any("encrypt" in p.reason for p in [*report.rejects, *report.warnings])


def test_damaged_zip_is_still_one_reported_input(tmp_path: Path) -> None:
    path = tmp_path / "broken.zip"
    path.write_bytes(b"PK\x03\x04" + bytes(40))

    inputs = discover([path])

    assert [i.name for i in inputs] == [str(path)]
    report, count = read(inputs[0])
    assert count == 0
    assert report.warnings
