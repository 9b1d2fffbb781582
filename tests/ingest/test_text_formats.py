"""Text formats read to the letter of their specifications: syslog (RFC 5424 and RFC 3164
examples), CEF (ArcSight's escaping rules), Zeek TSV (its header directives), Linux audit
(records joined, hex decoding), and what a bad line costs (one reject, with its text)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vigil.errors import InputError
from vigil.ingest import FileReport, discover, read_events
from vigil.ingest.auditd import parse_pairs, parse_record
from vigil.ingest.syslog import enrich, parse_cef, parse_line

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def read_file(path: Path, **report_options: object) -> tuple[FileReport, list]:
    [source] = discover([path])
    report = FileReport(source.name, **report_options)  # type: ignore[arg-type]
    events = [event for batch in read_events(source, report) for event in batch]
    return report, events


# --- syslog ----------------------------------------------------------------------------------


def test_rfc5424_example_1() -> None:
    # RFC 5424 section 6.5, example 1 (BOM omitted)
    fields, when = parse_line(
        "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
        "'su root' failed for lonvick on /dev/pts/8",
        NOW,
    )
    assert fields == {
        "facility": "auth",
        "severity": "crit",
        "hostname": "mymachine.example.com",
        "program": "su",
        "msgid": "ID47",
        "message": "'su root' failed for lonvick on /dev/pts/8",
    }
    assert when == datetime(2003, 10, 11, 22, 14, 15, 3000, tzinfo=UTC).timestamp()


def test_rfc5424_structured_data_with_a_bracket_in_a_value() -> None:
    # RFC 5424 section 6.5, example 3, with `]` escaped inside a parameter value
    fields, _ = parse_line(
        "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
        '[exampleSDID@32473 iut="3" eventSource="Appl\\]ication" eventID="1011"] '
        "An application event",
        NOW,
    )
    assert fields["facility"] == "local4" and fields["severity"] == "notice"
    assert fields["structured_data"].endswith('eventID="1011"]')
    assert fields["message"] == "An application event"


def test_rfc3164_example_and_the_missing_year() -> None:
    # RFC 3164 section 5.4, example 1
    fields, when = parse_line(
        "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8", NOW
    )
    assert fields["hostname"] == "mymachine" and fields["program"] == "su"
    assert fields["message"] == "'su root' failed for lonvick on /dev/pts/8"
    assert when == datetime(2026, 10, 11, 22, 14, 15, tzinfo=UTC).timestamp()
    # a December line read in early January belongs to the year before
    _, when = parse_line("Dec 31 23:59:59 host cron[1]: x", datetime(2027, 1, 2, tzinfo=UTC))
    assert when == datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


def test_cef_header_and_extension_escapes() -> None:
    # ArcSight CEF: `\\|` in the header, `\\=` and `\\n` in extension values; a value runs to
    # the next key
    out: dict[str, object] = {}
    assert parse_cef(
        "CEF:0|Security|threat\\|manager|1.0|100|worm successfully stopped|10|"
        "src=10.0.0.1 dst=2.1.2.2 spt=1232 msg=Detected a threat. No action needed a\\=b cs1=x",
        out,
    )
    assert out["DeviceProduct"] == "threat|manager"
    assert out["Name"] == "worm successfully stopped" and out["Severity"] == "10"
    assert out["src"] == "10.0.0.1" and out["spt"] == "1232"
    assert out["msg"] == "Detected a threat. No action needed a=b"
    assert out["cs1"] == "x"


def test_cef_inside_syslog() -> None:
    fields, _ = parse_line("<13>Sep 22 10:00:00 fw CEF:0|V|P|1|sig|Name|5|suser=bob", NOW)
    assert enrich(fields) == "cef"
    assert fields["hostname"] == "fw" and fields["suser"] == "bob"


# --- Zeek TSV --------------------------------------------------------------------------------

ZEEK = (
    "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tdns\n"
    "#fields\tts\tuid\tid.orig_h\tid.orig_p\tquery\tanswers\tTTLs\trejected\tAA\n"
    "#types\ttime\tstring\taddr\tport\tstring\tvector[string]\tvector[interval]\tbool\tbool\n"
    "1.5\tC1\t10.0.0.1\t53\texample.com\ta,b\t1.0,2.0\tF\tT\n"
    "2.5\tC2\t10.0.0.2\t53\t-\t(empty)\t-\tF\tF\n"
    "3.5\tC3\ttoo few columns\n"
    "#close\t2020-01-01-00-00-00\n"
)


def test_zeek_tsv_types_unset_and_empty_fields(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text(ZEEK)
    report, events = read_file(path)
    assert report.format == "zeek"
    first, second = (e.fields for e in events)
    assert first == {
        "ts": 1.5,
        "uid": "C1",
        "id.orig_h": "10.0.0.1",
        "id.orig_p": 53,
        "query": "example.com",
        "answers": ["a", "b"],
        "TTLs": [1.0, 2.0],
        "rejected": False,
        "AA": True,
    }
    assert "query" not in second and second["answers"] == []  # unset is absent, empty is []
    assert events[0].dataset == "zeek.dns" and events[0].time == 1.5
    assert [(p.record, p.reason) for p in report.rejects] == [
        (10, "3 columns where the header names 9")
    ]


# --- Linux audit -----------------------------------------------------------------------------


def test_audit_pairs_quoted_bare_and_nested() -> None:
    pairs = parse_pairs(
        'pid=1 comm="a b" msg=\'op=PAM:auth acct="root" exe="/usr/sbin/sshd" res=failed\' x=[1,2]'
    )
    assert pairs == {
        "pid": "1",
        "comm": "a b",
        "op": "PAM:auth",
        "acct": "root",
        "exe": "/usr/sbin/sshd",
        "res": "failed",
        "x": [1, 2],
    }


def test_audit_hex_encoded_arguments_are_decoded_quoted_ones_kept() -> None:
    # auditd writes an argument with a space as hex, bare; quoted values are plain text
    parsed = parse_record(
        'type=EXECVE msg=audit(1.5:7): argc=3 a0="dd" a1=2F746D702F6120622E747874 a2="ab"'
    )
    assert parsed is not None
    stamp, record_type, fields = parsed
    assert (stamp, record_type) == ("1.5:7", "EXECVE")
    assert fields["a0"] == "dd" and fields["a2"] == "ab"
    assert fields["a1"] == "/tmp/a b.txt"


def test_audit_records_of_one_event_are_joined_and_bad_lines_rejected(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_text(
        'type=SYSCALL msg=audit(10.0:1): syscall=59 exe="/usr/bin/id" comm="id"\n'
        'type=EXECVE msg=audit(10.0:1): argc=1 a0="id"\n'
        "this is not an audit record\n"
        'type=PATH msg=audit(10.0:1): item=0 name="/usr/bin/id"\n'
        "type=PROCTITLE msg=audit(10.0:1): proctitle=6964002D75\n"
        'type=SYSCALL msg=audit(11.0:2): syscall=2 exe="/bin/cat"\n'
    )
    report, events = read_file(path, keep_raw=True)
    assert [e.fields["type"] for e in events] == [
        ["SYSCALL", "EXECVE", "PATH", "PROCTITLE"],
        "SYSCALL",
    ]
    assert events[0].fields["proctitle"] == "id -u"
    assert events[0].time == 10.0 and events[0].record == 1
    assert report.records_rejected == 1
    assert report.set_aside == [
        {
            "file": str(path),
            "record": 3,
            "reason": "not an audit record (type=... msg=audit(...): ...)",
            "raw": "this is not an audit record",
        }
    ]


# --- forcing a format ------------------------------------------------------------------------


def test_a_forced_json_shape_reads_every_record_as_that_shape(tmp_path: Path) -> None:
    path = tmp_path / "trail.json"
    path.write_text(json.dumps({"eventName": "ConsoleLogin", "eventSource": "signin"}) + "\n")
    _, events = read_file(path)
    assert events[0].dataset == "json"  # no eventTime: not recognised as CloudTrail
    _, events = read_file(path, forced="cloudtrail")
    assert events[0].dataset == "aws.cloudtrail"


def test_an_unknown_forced_format_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("x\n")
    with pytest.raises(InputError, match="unknown log format 'nope'"):
        read_file(path, forced="nope")


def test_raw_syscall_numbers_get_the_name_rules_match() -> None:
    # RAW format: x86_64 (arch c000003e) syscall 319 is memfd_create
    parsed = parse_record("type=SYSCALL msg=audit(1.0:9): arch=c000003e syscall=319 success=yes")
    assert parsed is not None and parsed[2]["SYSCALL"] == "memfd_create"
    # ENRICHED format: the name is written after a GS byte and kept as written
    parsed = parse_record(
        "type=SYSCALL msg=audit(1.0:9): arch=c000003e syscall=59 key=x"
        "\x1dARCH=x86_64 SYSCALL=execve"
    )
    assert parsed is not None and parsed[2]["SYSCALL"] == "execve"
    assert parsed[2]["ARCH"] == "x86_64"
