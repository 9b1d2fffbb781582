"""Partitioning the `events` stream by host: real Windows events go by the computer that
logged them, CloudTrail and Zeek records (which name no host) by their source; every event
of one host lands in one partition; hostile records cost a bounded scan."""

from __future__ import annotations

import time
from collections import defaultdict

import orjson

from vigil.ingest import FileReport, discover, read_events
from vigil.serve.partitions import partition_key, partition_of


def _lines(folder) -> list[tuple[bytes, object]]:
    out = []
    for source in discover([folder]):
        for batch in read_events(source, FileReport(source.name)):
            out.extend((orjson.dumps(event.fields, default=str), event) for event in batch)
    return out


def test_windows_events_go_by_their_computer_and_one_host_to_one_partition(need_data) -> None:
    lines = _lines(need_data("windows", "evtx-to-mitre-attack"))
    partitions: dict[str, set[int]] = defaultdict(set)
    lines = [(line, event) for line, event in lines if event.format == "evtx"]  # not labels
    assert len(lines) > 10_000
    for line, event in lines:
        host = event.fields.get("Computer")
        assert host, "every EVTX record names its computer"
        assert partition_key(line, "agent-1") == host.lower().encode()
        partitions[host.lower()].add(partition_of(line, "agent-1", 8))
    assert all(len(found) == 1 for found in partitions.values())
    assert len(partitions) > 10
    assert len({p for found in partitions.values() for p in found}) >= 6  # spread out


def test_records_naming_no_host_go_by_their_source(need_data) -> None:
    for parts in (
        ("cloud", "stratus-red-team"),
        ("network", "stratosphere", "005-zeek-scenario-malicious"),
    ):
        for line, _ in _lines(need_data(*parts))[:200]:
            assert partition_key(line, "file:x.json") == b"file:x.json"


def test_ecs_host_names_and_hostile_records() -> None:
    ecs = (
        b'{"@timestamp": "2026-12-03T10:00:00Z",'
        b' "host": {"os": {"family": "linux"}, "name": "WEB-01"}}'
    )
    assert partition_key(ecs, "s") == b"web-01"
    too_long = b'{"Computer": "' + b"x" * 300 + b'"}'
    assert partition_key(too_long, "s") == b"s"
    assert partition_of(b"{}", "s", 1) == 0
    hostile = b'{"host": {' + b'"a": "b", ' * 200_000 + b'"name": "late"}}'
    started = time.perf_counter()
    assert partition_key(hostile, "s") == b"s"  # past the bytes looked at: by source
    assert time.perf_counter() - started < 0.5
