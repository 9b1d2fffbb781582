"""Fuzz targets for the log readers: whatever bytes come in, reading never raises, every bad
record is rejected with a reason, and the rest is read.

One Hypothesis target per reader (`evtx`, `json`, `zeek`, `auditd`, `syslog`), one for live
line events (`live.line_events`, `live.syslog_events`), one for the TCP framing of the syslog
listeners and one for `tail.FileTail` (its lines, and its state file). Each starts from small
seed samples of its format (below; for EVTX a small real file of the reference data, read in
place) and mutates them: bit flips, byte overwrites, insertions of hostile tokens (NUL, CR,
invalid UTF-8, Unicode digits, huge numbers, deep nesting, the format's own separators and
keywords), deletions, truncations, splices between seeds and very long lines. JSON records are
also mutated as values (any JSON put at any place of a real-looking record). Line readers run
with several chunk and line-length limits, so that chunk boundaries and overlong lines are hit.

The contract checked on every example: no exception escapes; nothing stops a text reader
early ("reading stopped"); read and rejected counts add up to the records given; every event
has the types `Event` promises (fields a dict of JSON-like values under `MAX_DEPTH` levels,
a finite time within datetime's range or None, ...).

`make test` runs each target for a bounded, reproducible number of examples (derandomized, no
example database; all targets together take well under a minute on two workers). To hunt for
crashers, run them longer on fresh random examples:

    VIGIL_FUZZ_EXAMPLES=20000 .venv/bin/pytest -q -n 2 tests/ingest/test_fuzz_readers.py

(`VIGIL_FUZZ_EXAMPLES` is the number of examples per target; with it set, examples are random
and a per-example deadline of ten seconds catches runaway parsing; `VIGIL_FUZZ_SAVE=folder`
keeps every failing input there, named as the corpus wants it.) A crasher found is saved,
as its minimal input, in `fuzz_corpus/<reader>/<short-name>`; `test_corpus_input_keeps_the_
contract` replays every file there through its reader from then on.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vigil.errors import InputError
from vigil.events import Event
from vigil.ingest import READERS, FileReport, Input, base, discover, jsonlog, read_events
from vigil.ingest.listen import _Framing
from vigil.ingest.live import line_events, syslog_events
from vigil.ingest.shapes import BY_NAME as JSON_SHAPES
from vigil.ingest.tail import FileTail, TailLine

# --- settings ----------------------------------------------------------------------------------

LONG_RUN = int(os.environ.get("VIGIL_FUZZ_EXAMPLES", "0"))
settings.register_profile(
    "vigil-fuzz",
    derandomize=not LONG_RUN,
    database=None,
    # only a runaway parse: a loaded machine takes seconds over some examples now and then
    deadline=timedelta(seconds=10) if LONG_RUN else None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)
FUZZ = settings.get_profile("vigil-fuzz")


def examples(ci: int) -> settings:
    """The profile with `ci` examples, or `VIGIL_FUZZ_EXAMPLES` of them when set."""
    return settings(FUZZ, max_examples=LONG_RUN or ci)


CORPUS = Path(__file__).parent / "fuzz_corpus"
SAVE = os.environ.get("VIGIL_FUZZ_SAVE")


@contextlib.contextmanager
def saved_on_failure(kind: str, data: bytes, suffix: str = "") -> Iterator[None]:
    """With `VIGIL_FUZZ_SAVE=folder`, every failing input is written there as
    `<kind>/<hash><suffix>`, named as the corpus wants it: the smallest is the one to keep.
    The input being read is kept as `<kind>/.running-<pid>` meanwhile: what a hang leaves."""
    if SAVE:
        running = Path(SAVE) / kind / f".running-{os.getpid()}"
        running.parent.mkdir(parents=True, exist_ok=True)
        running.write_bytes(data)
    try:
        yield
    except Exception:
        if SAVE:
            folder = Path(SAVE) / kind
            folder.mkdir(parents=True, exist_ok=True)
            name = hashlib.sha1(data).hexdigest()[:12] + suffix
            (folder / name).write_bytes(data)
        raise


EVTX_SEEDS = (
    "windows/evtx-rs-benign-and-corrupt/Security_short_selected.evtx.gz",
    "windows/evtx-rs-benign-and-corrupt/Application_no_crc32.evtx.gz",
    "windows/evtx-rs-benign-and-corrupt/MSExchange_Management_wec.evtx.gz",
)
EVTX_MAX_SEED = 200 * 1024

# --- the contract --------------------------------------------------------------------------

_FIRST, _LAST = -62135596800.0, 253402300799.0


def _json_like(value: Any, depth: int = 0) -> bool:
    if depth > base.MAX_DEPTH:
        return False
    if value is None or type(value) in (str, int, bool):
        return True
    if type(value) is float:
        return True  # JSON text may hold NaN and Infinity; a field keeps what the log said
    if type(value) is list:
        return all(_json_like(item, depth + 1) for item in value)
    if type(value) is dict:
        return all(type(k) is str and _json_like(v, depth + 1) for k, v in value.items())
    return False


def check_event(event: Event, source: str) -> None:
    """What `Event` promises about each of its attributes."""
    assert isinstance(event, Event)
    assert type(event.fields) is dict
    for key, value in event.fields.items():
        assert type(key) is str, key
        assert _json_like(value), (key, value)
    assert event.source == source
    assert event.record is None or type(event.record) in (int, str)
    time = event.time
    assert time is None or (type(time) is float and _FIRST <= time <= _LAST), time
    assert event.timestamp is None or type(event.timestamp) is str
    for name in ("product", "category", "dataset"):
        assert getattr(event, name) is None or type(getattr(event, name)) is str, name
    service = event.service
    assert (
        service is None
        or type(service) is str
        or (type(service) is tuple and all(type(s) is str for s in service))
    )
    assert type(event.format) is str and event.format
    assert event.raw is None or type(event.raw) in (bytes, str)
    assert event.host is None or type(event.host) is str
    check_ecs(event)


def check_ecs(event: Event) -> None:
    assert type(event.ecs) is dict


def rejected(report: FileReport) -> int:
    return report.records_rejected


def check_report(report: FileReport, events: Sequence[Event], *, stop_ok: bool = False) -> None:
    assert report.records_read == len(events)
    assert report.records_rejected >= len(report.rejects)
    assert len(report.rejects) <= report.MAX_KEPT and len(report.warnings) <= report.MAX_KEPT
    for problem in report.rejects + report.warnings:
        assert type(problem.reason) is str and problem.reason, problem
        assert problem.record is None or type(problem.record) in (int, str), problem
    if not stop_ok:
        stopped = [p.reason for p in report.rejects if p.reason.startswith("reading stopped")]
        assert not stopped, stopped
    for event in events:
        check_event(event, report.path)


def read_input(source: Input, forced: str | None = None) -> tuple[FileReport, list[Event]]:
    report = FileReport(source.name, forced=forced)
    events = [event for batch in read_events(source, report) for event in batch]
    return report, events


def read_bytes(data: bytes, name: str, forced: str | None = None) -> tuple[FileReport, list[Event]]:
    return read_input(Input(name, lambda: io.BytesIO(data)), forced)


def records_of(data: bytes) -> int:
    """The records a line reader is handed: non-blank lines, and overlong ones (rejected)."""
    return sum(
        1
        for line in data.split(b"\n")
        if len(line) > base.MAX_LINE or (line and not line.isspace())
    )


@contextlib.contextmanager
def limits(chunk: int, max_line: int) -> Iterator[None]:
    """Line readers with a smaller chunk and line limit: boundaries and overlong lines are hit
    by small inputs. Every reject is kept, for `rejected` to see them all."""
    with (
        mock.patch.object(base, "CHUNK", chunk),
        mock.patch.object(jsonlog, "CHUNK", chunk),
        mock.patch.object(base, "MAX_LINE", max_line),
        mock.patch.object(FileReport, "MAX_KEPT", 1 << 30),
    ):
        yield


LIMITS = st.sampled_from([(base.CHUNK, base.MAX_LINE), (4096, 1 << 20), (7, 4096), (64, 200)])

# --- mutations ---------------------------------------------------------------------------------

HOSTILE = [
    b"\x00",
    b"\r",
    b"\n",
    b"\r\n",
    b"\n\n",
    b"\t",
    b" ",
    b"\x0b",
    b"\x1d",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",  # a UTF-16 surrogate in UTF-8
    b"\xef\xbb\xbf",  # BOM
    b"\xff\xfe",
    "²".encode(),  # str.isdigit() but not int()
    "٣".encode(),  # an Arabic-Indic digit
    "\u2028".encode(),
    "\u0085".encode(),
    b"\\",
    b"\\x",
    b"\\u12",
    b'"',
    b"'",
    b"=",
    b"|",
    b"[",
    b"]",
    b"{",
    b"}",
    b"<",
    b">",
    b":",
    b",",
    b"-",
    b"#",
    b"&",
    b"NaN",
    b"Infinity",
    b"-0",
    b"1e999",
    b"-1e999",
    b"nan",
    b"inf",
    b"18446744073709551616",
    b"9" * 40,
    b"9" * 5000,
    b"[" * 3000,
    b"{" * 3000,
    b'{"a":' * 3000,
    b"[{" * 1500,
    b"<a>" * 2000,
    b"A" * 70000,
]
INTERESTING_BYTES = [0x00, 0x01, 0x0A, 0x0D, 0x20, 0x22, 0x5C, 0x7F, 0x80, 0xC0, 0xFE, 0xFF]
MAX_SIZE = 1 << 20


@st.composite
def mutated(
    draw: st.DrawFn, seeds: Sequence[bytes], tokens: Sequence[bytes], max_ops: int = 6
) -> bytes:
    """A seed with up to `max_ops` mutations."""
    data = bytearray(draw(st.sampled_from(seeds)))
    vocabulary = [*tokens, *HOSTILE]
    for _ in range(draw(st.integers(0, max_ops))):
        op = draw(
            st.sampled_from(
                ["insert", "insert", "flip", "byte", "delete", "truncate", "repeat", "splice"]
            )
        )
        pos = draw(st.integers(0, len(data)))
        if op == "insert":
            data[pos:pos] = draw(st.sampled_from(vocabulary) | st.binary(min_size=1, max_size=12))
        elif op == "flip" and data:
            data[min(pos, len(data) - 1)] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and data:
            value = draw(st.sampled_from(INTERESTING_BYTES) | st.integers(0, 255))
            data[min(pos, len(data) - 1)] = value
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 80))]
        elif op == "truncate":
            del data[pos:]
        elif op == "repeat":
            piece = bytes(data[pos : pos + draw(st.integers(1, 80))])
            times = draw(st.sampled_from([2, 3, 50, 2000, 20000]))
            if piece and len(data) + len(piece) * times <= MAX_SIZE:
                data[pos:pos] = piece * times
        elif op == "splice":
            other = draw(st.sampled_from(seeds))
            start = draw(st.integers(0, len(other)))
            data[pos:pos] = other[start : start + draw(st.integers(1, 400))]
    return bytes(data)


def lines_of(data: bytes) -> list[bytes]:
    return [line for line in data.split(b"\n") if line]


# --- EVTX --------------------------------------------------------------------------------------


class Seeds(list[bytes]):
    def __repr__(self) -> str:  # not 200 KB of bytes in a failure report
        return f"<{len(self)} EVTX seeds>"


@pytest.fixture(scope="module")
def evtx_seeds(need_data: Callable[..., Path]) -> list[bytes]:
    seeds = Seeds()
    for name in EVTX_SEEDS:
        data = gzip.decompress(need_data(name).read_bytes())
        # one header and its first chunk is enough: mutations are what matters
        seeds.append(data[: 4096 + 65536])
        assert len(seeds[-1]) <= EVTX_MAX_SEED
    return seeds


EVTX_REGIONS = [
    (0, 128),  # file header
    (4096, 4096 + 128),  # chunk header
    (4096 + 128, 4096 + 512),  # string and template tables (offsets)
    (4096 + 512, 4096 + 1024),  # the first records
    (4096 + 512, 4096 + 65536),  # any record
]
EVTX_VALUES = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFFFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF, 1 << 63, 512]


@st.composite
def evtx_bytes(draw: st.DrawFn, seeds: Sequence[bytes]) -> bytes:
    """An EVTX seed with overwrites where the parser looks: headers, tables, records."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 8))):
        low, high = draw(st.sampled_from(EVTX_REGIONS))
        high = min(high, len(data))
        if low >= high:
            continue
        pos = draw(st.integers(low, high - 1))
        op = draw(st.sampled_from(["flip", "byte", "int", "random", "copy", "zero"]))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            data[pos] = draw(st.sampled_from(INTERESTING_BYTES) | st.integers(0, 255))
        elif op == "int":
            size = draw(st.sampled_from([2, 4, 8]))
            value = draw(st.sampled_from(EVTX_VALUES) | st.integers(0, 1 << 16))
            packed = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
            data[pos : pos + size] = packed[: len(data) - pos]
        elif op == "random":
            noise = draw(st.binary(min_size=1, max_size=64))
            data[pos : pos + len(noise)] = noise[: len(data) - pos]
        elif op == "copy":
            other = draw(st.sampled_from(seeds))
            start = draw(st.integers(0, len(other) - 1))
            piece = other[start : start + draw(st.integers(1, 256))]
            data[pos : pos + len(piece)] = piece[: len(data) - pos]
        else:
            size = draw(st.integers(1, 512))
            data[pos : pos + size] = bytes(min(size, len(data) - pos))
    if draw(st.integers(0, 9)) == 0:
        del data[draw(st.integers(0, len(data))) :]
    if draw(st.integers(0, 19)) == 0:
        data += data[4096 : 4096 + 65536]  # a second chunk, same records
    return bytes(data)


def check_evtx(report: FileReport, events: list[Event]) -> None:
    # a file the parser cannot open at all is stopped, with the parser's reason
    check_report(report, events, stop_ok=True)
    for problem in report.rejects:
        if problem.reason.startswith("reading stopped"):
            assert not events


@examples(ci=300)
@given(data=st.data())
def test_fuzz_evtx(evtx_seeds: list[bytes], data: st.DataObject) -> None:
    evtx = data.draw(evtx_bytes(evtx_seeds))
    with saved_on_failure("evtx", gzip.compress(evtx, mtime=0), ".evtx.gz"):
        check_evtx(*read_bytes(evtx, "fuzz.evtx", forced="evtx"))


@examples(ci=60)
@given(data=st.data())
def test_fuzz_evtx_cut_short(evtx_seeds: list[bytes], data: st.DataObject) -> None:
    """An EVTX file cut anywhere past its first chunk's header (a log copied while written):
    every record of the chunk is read or rejected, none is lost without a word."""
    seed = data.draw(st.sampled_from(evtx_seeds))
    whole = read_bytes(seed, "whole.evtx", forced="evtx")[0].records_read
    cut = seed[: data.draw(st.integers(4096 + 40, len(seed)))]
    with saved_on_failure("evtx", gzip.compress(cut, mtime=0), ".evtx.gz"):
        report, events = read_bytes(cut, "cut.evtx", forced="evtx")
        check_evtx(report, events)
        assert report.records_read + report.records_rejected == whole


def test_evtx_cut_inside_its_chunk_rejects_every_record_it_loses(
    evtx_seeds: list[bytes],
) -> None:
    # Found by test_fuzz_evtx_cut_short: the parser skips a chunk the file ends inside, and
    # its records were lost without a reject (the input is made from the reference data
    # here rather than kept in the corpus).
    seed = evtx_seeds[1]
    whole = read_bytes(seed, "whole.evtx", forced="evtx")[0].records_read
    report, events = read_bytes(seed[: 4096 + 30000], "cut.evtx", forced="evtx")
    check_evtx(report, events)
    assert whole == 17 and report.records_rejected == whole and not events
    assert [(p.record, p.reason) for p in report.rejects] == [
        (
            "chunk 0 (offset 0x1000) records 426-442",
            "unreadable: the file ends inside this chunk (truncated?)",
        )
    ]
    assert any("cut short" in p.reason for p in report.warnings)


# --- JSON --------------------------------------------------------------------------------------

SYSMON_XML = (
    '<Event><System><Provider Name="Linux-Sysmon"/><EventID>1</EventID>'
    "<EventRecordID>7</EventRecordID><Channel>Linux-Sysmon/Operational</Channel>"
    "<Computer>host</Computer></System><EventData>"
    '<Data Name="Image">/usr/bin/curl</Data><Data Name="CommandLine">curl -s x</Data>'
    "</EventData></Event>"
)
AUOMS = (
    'type=AUOMS_EXECVE audit(1652292621.986:84138): arch=x86_64 syscall=execve a0=7f cwd="/" '
    'path_name=["/bin/sh"] proctitle=/bin/sh -c id redactors= containerid='
)
JSON_RECORDS: list[dict[str, Any]] = [
    {
        "Event": {
            "System": {
                "Provider": {"#attributes": {"Name": "Microsoft-Windows-Security-Auditing"}},
                "EventID": 4624,
                "EventRecordID": 12,
                "Channel": "Security",
                "Computer": "DC01",
                "TimeCreated": {"#attributes": {"SystemTime": "2024-01-01T00:00:00.0Z"}},
            },
            "EventData": {"TargetUserName": "bob", "LogonType": 3, "Data": {"#text": "x"}},
            "UserData": {"Log": {"#attributes": {"xmlns": "u"}, "Channel": "Security"}},
        }
    },
    {
        "@timestamp": "2024-01-01T00:00:00Z",
        "winlog": {
            "channel": "Security",
            "event_id": 4688,
            "event_data": {"NewProcessName": "C:\\w.exe"},
        },
        "host": {"name": "ws1"},
        "message": "A new process",
    },
    {
        "TimeGenerated": "2024-01-01T00:00:00Z",
        "Channel": "Security",
        "Provider": "Microsoft-Windows-Security-Auditing",
        "EventID": 4625,
        "EventData": '{"TargetUserName": "x", "Status": "0xc000006d"}',
    },
    {"EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational", "Hostname": "h"},
    {"TimeGenerated": "2024-01-01T00:00:00Z", "SyslogMessage": SYSMON_XML, "ProcessName": "x"},
    {"TimeGenerated": "2024-01-01T00:00:00Z", "SyslogMessage": AUOMS},
    {
        "ts": 1715000000.5,
        "uid": "C1",
        "id.orig_h": "10.0.0.1",
        "id.orig_p": 5,
        "_path": "dns",
        "query": "x",
    },
    {"ts": "2024-01-01T00:00:00Z", "uid": "C2", "id_orig_h": "10.0.0.1", "id_resp_h": "8.8.8.8"},
    {
        "timestamp": "2024-01-01T00:00:00.000000+0000",
        "flow_id": 1,
        "event_type": "alert",
        "src_ip": "1.2.3.4",
        "alert": {"signature": "ET x", "severity": 1},
    },
    {
        "eventTime": "2024-01-01T00:00:00Z",
        "eventSource": "iam.amazonaws.com",
        "eventName": "CreateUser",
        "userIdentity": {"type": "Root"},
    },
    {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "verb": "create",
        "objectRef": {"resource": "pods"},
    },
    {
        "protoPayload": {"@type": "type.googleapis.com/google.cloud.audit.AuditLog"},
        "logName": "projects/p/logs/cloudaudit.googleapis.com%2Factivity",
    },
    {
        "operationName": "Sign-in activity",
        "category": "SignInLogs",
        "time": "2024-01-01T00:00:00Z",
        "properties": {"userPrincipalName": "a@b", "status": {"errorCode": 50126}},
    },
    {
        "eventType": "user.session.start",
        "actor": {"id": "1"},
        "published": "2024-01-01T00:00:00Z",
    },
    {
        "id": {"applicationName": "login", "time": "2024-01-01T00:00:00Z"},
        "events": [{"name": "login_failure"}],
    },
    {"Operation": "FileAccessed", "CreationTime": "2024-01-01T00:00:00", "Workload": "SharePoint"},
    {"messageID": "<m@x>", "messageTime": "2024-01-01T00:00:00Z", "phishScore": 90},
    {
        "log": {"eventSource": "s3.amazonaws.com", "eventName": "x", "eventTime": "2024"},
        "log_types": ["AWS.CloudTrail"],
        "rule_id": "r",
    },
    {"message": "plain", "time": 1715000000123},
]
JSON_KEYS = sorted(
    {
        "Event",
        "System",
        "EventData",
        "UserData",
        "RenderingInfo",
        "#attributes",
        "#text",
        "winlog",
        "event_data",
        "host",
        "name",
        "Channel",
        "EventID",
        "EventRecordID",
        "Provider",
        "SourceName",
        "SyslogMessage",
        "ProcessName",
        "_path",
        "@stream",
        "@proc",
        "ts",
        "uid",
        "id_orig_h",
        "event_type",
        "src_ip",
        "flow_id",
        "eventSource",
        "eventName",
        "eventTime",
        "kind",
        "apiVersion",
        "protoPayload",
        "@type",
        "logName",
        "operationName",
        "category",
        "time",
        "properties",
        "status",
        "errorCode",
        "eventType",
        "actor",
        "published",
        "id",
        "applicationName",
        "events",
        "Operation",
        "CreationTime",
        "Workload",
        "messageID",
        "messageTime",
        "phishScore",
        "log",
        "log_types",
        "rule_id",
        "Records",
        "message",
        "timestamp",
        "@timestamp",
        "",
        ".",
        "a.b",
    }
)
# Placeholders spliced into JSON text as they are: values Python cannot dump or would nest
DEEP = "@@deep:{}@@"
HUGE = "@@huge@@"
JSON_STRINGS = [
    "",
    "²",
    "\x00",
    "\ud800",
    "9" * 30,
    "2024-01-01T00:00:00Z",
    "0" * 64 + "Z",
    "9999-12-31T23:59:59+00:00",
    "-999999-01-01",
    "{",
    '{"a": {"b": 1}}',
    SYSMON_XML,
    SYSMON_XML[:120],
    SYSMON_XML.replace("<EventID>1<", "<EventID>²<"),
    SYSMON_XML[:80].replace("<EventID>1<", "<EventID>²<"),
    "<Event><System><EventID>5</EventID>&lt unknown process&gt </System></Event>",
    "<!DOCTYPE x [<!ENTITY a 'b'>]><Event>&a;</Event>",
    AUOMS,
    "type=SYSCALL msg=audit(1.0:1): a=[" + '{"a":' * 2000 + "1" + "}" * 2000 + "]",
    "type=SYSCALL msg=audit(1.0:1): a=[" + '{"a":' * 70 + "1" + "}" * 70 + "]",
    "type=X msg=audit(nan:1): msg='a=1 b=\"c'",
    "CEF:0|a|b|1|2|n|5|src=1.2.3.4 msg=a\\=b",
    "AWS.CloudTrail",
    "AuditLog",
    "audit.k8s.io/v1",
    "Event",
]
json_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([1 << 63, 1 << 64, -(1 << 63) - 1, 10**40, HUGE])
    | st.floats()
    | st.sampled_from(JSON_STRINGS)
    | st.text(max_size=12)
    | st.sampled_from([40, 62, 63, 64, 65, 66, 200, 1100, 5000]).map(DEEP.format)
)
json_values = st.recursive(
    json_leaf,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(JSON_KEYS) | st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)


def _deep_text(depth: int) -> str:
    return (
        '{"d":' * (depth // 2)
        + "[" * (depth - depth // 2)
        + "1"
        + "]" * (depth - depth // 2)
        + "}" * (depth // 2)
    )


def _dump(value: Any) -> str:
    """JSON text (NaN and huge integers included) with deep values spliced in as text."""
    text = json.dumps(value, allow_nan=True, ensure_ascii=False)
    for depth in (40, 62, 63, 64, 65, 66, 200, 1100, 5000):
        text = text.replace(json.dumps(DEEP.format(depth)), _deep_text(depth))
    return text.replace(json.dumps(HUGE), "9" * 5000)


def _paths(value: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield prefix
    if type(value) is dict:
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))


@st.composite
def json_record(draw: st.DrawFn) -> Any:
    """A real-looking record with any JSON put in a few places (or a non-object)."""
    if draw(st.integers(0, 15)) == 0:
        return draw(json_values)
    record = json.loads(json.dumps(draw(st.sampled_from(JSON_RECORDS))))
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(list(_paths(record))))
        target = record
        for key in path:
            target = target[key]
        if type(target) is not dict:
            continue
        key = draw(st.sampled_from(sorted(target) + JSON_KEYS))
        if draw(st.booleans()):
            target[key] = draw(json_values)
        else:
            target.pop(key, None)
    return record


@st.composite
def json_file(draw: st.DrawFn) -> bytes:
    records = draw(st.lists(json_record(), min_size=1, max_size=6))
    layout = draw(st.sampled_from(["lines", "lines", "array", "records", "pretty", "concat"]))
    texts = [_dump(r) for r in records]
    if layout == "lines":
        text = "\n".join(texts) + draw(st.sampled_from(["", "\n", "\r\n"]))
    elif layout == "array":
        text = "[" + ",".join(texts) + "]"
    elif layout == "records":
        text = '{"Records": [' + ",".join(texts) + "]}"
    elif layout == "pretty":
        text = "\n".join(json.dumps(r, indent=2, allow_nan=True) for r in records)
    else:
        text = "".join(texts)
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 2)) == 0:
        data = draw(mutated([data], [b'": ', b'{"', b"},{", b"\\u0000", b"\\ud800"], 4))
    return data


def suffix(forced: str | None = None, limit: tuple[int, int] | None = None) -> str:
    """How a corpus file's name says what it is read with (see `replay`)."""
    out = f".forced-{forced}" if forced else ""
    if limit is not None and limit != (base.CHUNK, base.MAX_LINE):
        out += f".chunk{limit[0]}-line{limit[1]}"
    return out


def check_json(data: bytes, forced: str) -> None:
    report, events = read_bytes(data, "fuzz.json", forced=forced)
    check_report(report, events)
    if report.format == "jsonl":
        assert report.records_read + report.records_rejected == records_of(data)


# `--log-format` takes a reader's name over a JSON shape's (`evtx`)
SHAPES = [name for name in JSON_SHAPES if name not in READERS]


@examples(ci=400)
@given(data=json_file(), forced=st.sampled_from(["json", "json", *SHAPES]), limit=LIMITS)
def test_fuzz_json(data: bytes, forced: str, limit: tuple[int, int]) -> None:
    with saved_on_failure("json", data, suffix(forced, limit)), limits(*limit):
        check_json(data, forced)


# --- Zeek --------------------------------------------------------------------------------------

ZEEK_SEEDS = [
    b"#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tdns\n"
    b"#open\t2018-05-14-16-27-31\n"
    b"#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\trtt\tquery\tAA"
    b"\tanswers\tTTLs\n"
    b"#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tinterval\tstring\tbool"
    b"\tvector[string]\tvector[interval]\n"
    b"13.184015\tCaBhzn4douRRoJ519a\t192.168.1.116\t50814\t8.8.8.8\t53\tudp\t0.001219"
    b"\tdns.msftncsi.com\tF\t131.107.255.255\t17.000000\n"
    b"30.841637\tCQXAlY1etq1bO0Zypd\tfe80::28fb\t55065\tff02::1:3\t5355\tudp\t-\twpad\tT\t-\t-\n"
    b"31.2\tCQX\t10.0.0.1\t1\t10.0.0.2\t2\ttcp\t-\tx\tF\t(empty)\t1.0,2.0\n"
    b"#close\t2018-05-14-16-27-31\n",
    b"#separator \\x20\n#fields ts uid id.orig_h duration orig_bytes service\n"
    b"#types time string addr interval count set[string]\n"
    b"1715000000.25 C1 10.0.0.1 1.5 300 http,ssl\n1715000001 C2 10.0.0.2 - - -\n",
    b"#separator \\x09\n#path\tconn\n#fields\tts\tuid\tid.orig_h\n#types\ttime\tstring\taddr\n"
    b"1.0\tC1\t10.0.0.1\n#separator \\x7c\n#fields|ts|uid\n#types|time|string\n2.0|C2\n",
]
ZEEK_TOKENS = [
    b"#separator \\x",
    b"#separator \\xff",
    b"#separator \\u1234",
    b"#separator \\N{BULLET}",
    b"#separator \\",
    b"#separator \n",
    b"\n#separator ",
    b"\n#fields\t",
    b"\n#types\t",
    b"\n#path\t",
    b"\n#set_separator\t",
    b"\n#empty_field\t",
    b"\n#unset_field\t",
    b"set[",
    b"vector[",
    b"table[count]",
    b"time",
    b"count",
    b"double",
    b"bool",
    b"(empty)",
    b"-",
    b"T",
    b"F",
    b"1e308",
]


@examples(ci=500)
@given(data=mutated(ZEEK_SEEDS, ZEEK_TOKENS), limit=LIMITS, named=st.booleans())
def test_fuzz_zeek(data: bytes, limit: tuple[int, int], named: bool) -> None:
    name = "NASHUA_dns.log" if named else "fuzz.log"
    with saved_on_failure("zeek", data, suffix(None, limit)), limits(*limit):
        check_zeek(data, name)


def check_zeek(data: bytes, name: str) -> None:
    report, events = read_bytes(data, name, forced="zeek")
    check_report(report, events)
    data_lines = sum(
        1
        for line in data.split(b"\n")
        if len(line) > base.MAX_LINE or (line.strip() and line[:1] != b"#")
    )
    assert report.records_read + report.records_rejected <= data_lines


# --- auditd ------------------------------------------------------------------------------------

AUDITD_SEEDS = [
    b"type=SYSCALL msg=audit(1604994496.155:92733): arch=c000003e syscall=59 success=yes exit=0 "
    b"a0=558e251634a0 items=2 ppid=29002 pid=1631 auid=1000 uid=1000 tty=pts0 ses=104 "
    b'comm="arp" exe="/usr/sbin/arp" key=(null)\n'
    b'type=EXECVE msg=audit(1604994496.155:92733): argc=3 a0="arp" a1="-a" a2=2D76206122\n'
    b'type=CWD msg=audit(1604994496.155:92733): cwd="/home/wardog"\n'
    b'type=PATH msg=audit(1604994496.155:92733): item=0 name="/usr/sbin/arp" inode=13181 '
    b"dev=08:01 mode=0100755 nametype=NORMAL\n"
    b"type=PROCTITLE msg=audit(1604994496.155:92733): proctitle=617270002D61\n"
    b"type=EOE msg=audit(1604994496.155:92733): \n",
    b"node=web1 type=USER_LOGIN msg=audit(1604994497.000:11): pid=1 uid=0 auid=4294967295 "
    b'msg=\'op=login acct="root" exe="/usr/sbin/sshd" hostname=? addr=1.2.3.4 res=failed\'\n'
    b"type=SYSCALL msg=audit(1604994498.001:12): arch=c000003e syscall=59 success=yes"
    b'\x1dARCH=x86_64 SYSCALL=execve AUID="root"\n',
    b'type=AUOMS_EXECVE msg=audit(1652292621.986:84138): SchemaVersion="1" node=U5 '
    b'arch=x86_64 syscall=execve path_name=["/usr/local/sbin/bash"] path_mode=[""] '
    b"proctitle=/usr/bin/java -Dx=y -jar a b redactors= containerid=\n",
]
AUDITD_TOKENS = [
    b"type=",
    b"msg=audit(",
    b"):",
    b"audit(nan:1): ",
    b"audit(inf:1): ",
    b"audit(1e999:1): ",
    b"audit(-1e300:1): ",
    b"node=",
    b"\nnode=x type=EOE msg=audit(1.0:1): \n",
    b"type=EOE ",
    b"msg='",
    b"a0=",
    b" proctitle=",
    b" redactors=",
    b"AUOMS_",
    b" k=[",
    b'[{"a":' * 3000,
    b'[{"a":1}]',
    b"[NaN]",
    b"[1e999]",
    b"=[" + b"9" * 5000 + b"]",
    b" a1=41",
    b" a1=" + b"41" * 2000,
    b"\x1d",
]


@examples(ci=500)
@given(data=mutated(AUDITD_SEEDS, AUDITD_TOKENS), limit=LIMITS)
def test_fuzz_auditd(data: bytes, limit: tuple[int, int]) -> None:
    with saved_on_failure("auditd", data, suffix(None, limit)), limits(*limit):
        check_auditd(data)


def check_auditd(data: bytes) -> None:
    report, events = read_bytes(data, "audit.log", forced="auditd")
    check_report(report, events)
    lines = records_of(data)
    assert report.records_rejected <= lines
    assert report.records_read <= lines - report.records_rejected


# --- syslog ------------------------------------------------------------------------------------

SYSLOG_SEEDS = [
    b"Mar 27 13:06:56 ip-10-77-20-248 sshd[1291]: Server listening on 0.0.0.0 port 22.\n"
    b"Mar 27 13:06:57 ip-10-77-20-248 sshd[1299]: Failed password for root from 1.2.3.4 "
    b"port 4242 ssh2\n"
    b"Mar  7 01:02:03.123456 host sudo:  alice : TTY=pts/0 ; COMMAND=/bin/id\n",
    b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
    b"'su root' failed for lonvick on /dev/pts/8\n"
    b'<165>1 2003-10-11T22:14:15.003Z host evntslog - ID47 [exampleSDID@32473 iut="3" '
    b'eventSource="Appl\\]ication"][x@1 a="b"] \xef\xbb\xbfAn application event\n'
    b"<13>1 - - - - - -\n",
    b"<13>Oct 11 22:14:15 host CEF:0|Security|threatmanager|1.0|100|worm stopped|10|"
    b"src=10.0.0.1 dst=2.1.2.2 spt=1232 msg=a\\=b\\nc\n"
    b"CEF:0|Vendor\\|X|Product|1|sig|Name|5|suser=bob cs1Label=x cs1=a b c\n",
    b"<14>Oct 11 22:14:15 ubuntu sysmon: " + SYSMON_XML.encode() + b"\n"
    b"<14>Oct 11 22:14:15 ubuntu sysmon: " + SYSMON_XML[:150].encode() + b"\n",
    b"2024-01-01T00:00:00.123456+00:00 host kernel: [1.0] usb 1-1: new device\n"
    b"<86>Jan  1 00:00:00 host CRON[12]: (root) CMD (run-parts /etc/cron.hourly)\n",
]
SYSLOG_TOKENS = [
    b"<",
    b"<13>",
    b"<9999>",
    "<²>".encode(),
    "<1²>".encode(),
    b"<13>1 ",
    b"1 ",
    b" - ",
    b"[",
    b"]",
    b'\\"',
    b"CEF:",
    b"CEF:0|a|b|c|d|e|f|",
    b"|",
    b"\\|",
    b" k=",
    b"<Event",
    b"<EventID>",
    "<EventID>²</EventID>".encode(),
    b"</EventID>",
    b'<Data Name="',
    b"</Data>",
    b"&lt",
    b"&gt ",
    b"<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>",
    b"Feb 29 ",
    b"Dec 31 23:59:60 ",
    b"Jan  0 ",
    b" 99:99:99 ",
    b"9999-99-99T",
    b"2024-01-01T00:00:00Z ",
    b"sshd[",
    b"[" + b"1" * 40 + b"]: ",
]


@examples(ci=500)
@given(data=mutated(SYSLOG_SEEDS, SYSLOG_TOKENS), limit=LIMITS, auth=st.booleans())
def test_fuzz_syslog(data: bytes, limit: tuple[int, int], auth: bool) -> None:
    name = "/var/log/auth.log" if auth else "messages"
    with saved_on_failure("syslog", data, suffix(None, limit)), limits(*limit):
        check_syslog(data, name)


def check_syslog(data: bytes, name: str) -> None:
    report, events = read_bytes(data, name, forced="syslog")
    check_report(report, events)
    assert report.records_read + report.records_rejected == records_of(data)


# --- live line events --------------------------------------------------------------------------

LIVE_SEEDS = [
    *(line for seed in SYSLOG_SEEDS for line in lines_of(seed)),
    *(_dump(record).encode() for record in JSON_RECORDS),
]


def check_live(lines: Sequence[bytes], path: str) -> None:
    """Lines (no newline in them) as tailed lines and as syslog messages."""
    report = FileReport(path)
    events = line_events([(line, offset) for offset, line in enumerate(lines)], report)
    check_report(report, events)
    assert report.records_read + report.records_rejected == sum(1 for x in lines if x.strip())
    report = FileReport(path)
    messages = [(line, f"10.0.0.{n}:514", 1715000000.0) for n, line in enumerate(lines)]
    events = syslog_events(messages, report)
    check_report(report, events)
    assert report.records_read + report.records_rejected == len(lines)


@examples(ci=300)
@given(
    lines=st.lists(
        mutated(LIVE_SEEDS, [*SYSLOG_TOKENS, *AUDITD_TOKENS[:6]], 4) | json_file(),
        min_size=1,
        max_size=4,
    ),
    path=st.sampled_from(["/var/log/auth.log", "/var/log/app.jsonl", "tcp://0.0.0.0:514"]),
)
def test_fuzz_live_line_events(lines: list[bytes], path: str) -> None:
    data = b"\n".join(lines)
    with saved_on_failure("live", data):
        check_live(data.split(b"\n"), path)


# --- syslog listener framing -------------------------------------------------------------------


@examples(ci=300)
@given(
    stream=mutated(
        [b"12 <13>hello you5 hello", b"<13>a\n<14>b\r\n\x00c\n", b"3 abc"],
        [b" ", b"\n", b"\x00", b"\r", b"0 ", b"99999999999 ", b"12"],
    ),
    cuts=st.lists(st.integers(0, 200), max_size=6),
    limit=st.sampled_from([1, 5, 64, 65536]),
)
def test_fuzz_listener_framing(stream: bytes, cuts: list[int], limit: int) -> None:
    with saved_on_failure("framing", stream):
        check_framing(stream, cuts, limit)


def check_framing(stream: bytes, cuts: Sequence[int], limit: int) -> None:
    framing = _Framing(limit)
    messages: list[bytes] = []
    start = 0
    for cut in [*sorted(cuts), len(stream)]:
        out, problem = framing.feed(stream[start : max(start, cut)])
        messages += out
        start = max(start, cut)
        if problem is not None:
            assert type(problem) is str
            break
    else:
        out, problem = framing.finish()
        messages += out
    assert all(type(m) is bytes and 0 < len(m) <= limit for m in messages), messages
    assert sum(map(len, messages)) <= len(stream)


# --- tail --------------------------------------------------------------------------------------


@examples(ci=100)
@given(
    content=mutated(LIVE_SEEDS, [b"\n", b"\r\n", b"\x00", b"\n\n\n"], 6).map(lambda b: b[:3000]),
    cuts=st.lists(st.integers(0, 3000), max_size=3),
    max_line=st.sampled_from([3, 80, 1 << 20]),
    batch=st.sampled_from([1, 7, 1000]),
)
def test_fuzz_tail(content: bytes, cuts: list[int], max_line: int, batch: int) -> None:
    """A file written in pieces, read on by a new `FileTail` after each commit, is handed out
    in lines that are its bytes, in order; the lines are read as live events."""
    with saved_on_failure("tail", content, f".line{max_line}-batch{batch}"):
        check_tail(content, [*sorted(cuts), len(content)], max_line, batch)


def check_tail(content: bytes, cuts: Sequence[int], max_line: int, batch: int) -> None:
    got: list[TailLine] = []
    with tempfile.TemporaryDirectory() as folder:
        path, state = Path(folder) / "app.log", Path(folder) / "app.state"
        path.write_bytes(b"")
        written = 0
        for cut in cuts:
            if cut > written:
                with path.open("ab") as out:
                    out.write(content[written:cut])
                written = cut
            with FileTail(path, state, max_line=max_line) as tail:
                while lines := tail.read_batch(batch):
                    assert len(lines) <= batch
                    got += lines
                tail.commit()
    expected = 0
    for line in got:
        offset, data = line.offset, line.data
        assert b"\n" not in data and len(data) <= max_line
        assert content[offset : offset + len(data)] == data
        assert offset in (expected, expected + 1)  # right after the last line, or its newline
        if offset == expected + 1:
            assert content[expected : expected + 1] == b"\n"
        expected = offset + len(data)
    # everything up to the last newline was handed out
    assert expected >= content.rfind(b"\n")
    check_live([line.data for line in got], str(path))


TAIL_STATE = (
    b'{"device": 1, "extra": {"output_offset": 7}, "fingerprint": "'
    + b"0" * 64
    + b'", "fingerprint_size": 3, "inode": 1, "offset": 3, "path": "PATH", "version": 1}'
)


@examples(ci=150)
@given(state=mutated([TAIL_STATE, b"{}", b'{"version": 1, "path": "PATH"}'], [b"[" * 3000]))
def test_fuzz_tail_state(state: bytes) -> None:
    """A damaged state file is an `InputError` naming it, or is read: never another error."""
    with saved_on_failure("tail-state", state):
        check_tail_state(state)


def check_tail_state(state: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path, state_file = Path(folder) / "app.log", Path(folder) / "app.state"
        path.write_bytes(b"one\ntwo\n")
        state_file.write_bytes(state.replace(b"PATH", json.dumps(str(path))[1:-1].encode()))
        try:
            tail = FileTail(path, state_file)
        except InputError as exc:
            assert str(state_file) in str(exc)
            return
        with tail:
            for line in tail.read_batch():
                assert b"\n" not in line.data


# --- the corpus of crashers ----------------------------------------------------------------


def _corpus() -> list[Any]:
    params = []
    for path in sorted(CORPUS.glob("*/*")):
        if not path.is_file():
            continue
        name = f"{path.parent.name}/{path.name}"
        params.append(pytest.param(path, id=name))
    return params


_NAMED = re.compile(r"(?:\.forced-([a-z0-9-]+))?(?:\.chunk(\d+)-line(\d+))?$")
_TAIL = re.compile(r"\.line(\d+)-batch(\d+)$")


def replay(path: Path) -> None:
    """One corpus file through its reader, as the name says: `<name>[.forced-<format>]
    [.chunk<bytes>-line<bytes>]` for readers, `<name>.line<max_line>-batch<lines>` for tail."""
    kind, data = path.parent.name, path.read_bytes()
    if kind == "live":
        check_live(data.split(b"\n"), "/var/log/auth.log")
        return
    if kind == "tail-state":
        check_tail_state(data)
        return
    if kind == "framing":
        check_framing(data, [], 64)
        return
    if kind == "tail":
        found = _TAIL.search(path.name)
        assert found, path.name
        check_tail(data, [len(data)], int(found.group(1)), int(found.group(2)))
        return
    named = _NAMED.search(path.name)
    assert named is not None
    forced, chunk, line = named.groups()
    limit = (int(chunk), int(line)) if chunk else (base.CHUNK, base.MAX_LINE)
    with limits(*limit):
        if kind == "evtx":
            [source] = discover([path])  # gzip'd, as EVTX files are small that way
            check_evtx(*read_input(source, forced="evtx"))
        elif kind == "json":
            check_json(data, forced or "json")
        elif kind == "zeek":
            check_zeek(data, path.name)
        elif kind == "auditd":
            check_auditd(data)
        else:
            assert kind == "syslog", kind
            check_syslog(data, path.name)


@pytest.mark.parametrize("path", _corpus())
def test_corpus_input_keeps_the_contract(path: Path) -> None:
    replay(path)


def test_every_corpus_folder_is_a_reader() -> None:
    known = {*READERS, "live", "tail", "tail-state", "framing"}
    assert {p.name for p in CORPUS.iterdir() if p.is_dir()} <= known
