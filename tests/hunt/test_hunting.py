"""Hunting over stored events: SQL answers like an independent count, only reads, and Sigma
retro-hunts find what `vigil scan` finds."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from vigil.hunt import HuntError, parse_since, sql
from vigil.hunt import sigma as retro_hunt
from vigil.ingest import FileReport, discover, read_events
from vigil.scan import scan_inputs
from vigil.store.events import EventStore


def stored(tmp_path, *paths):
    events = []
    for source in discover(list(paths)):
        for batch in read_events(source, FileReport(source.name)):
            events.extend(batch)
    EventStore(tmp_path).write(events, range(len(events)), ingested=time.time())
    return events


def test_group_by_answers_like_an_independent_count(need_data, tmp_path) -> None:
    events = stored(tmp_path, need_data("network", "stratosphere", "005-zeek-scenario-malicious"))
    expected = Counter(e.fields.get("query") for e in events if e.dataset == "zeek.dns")
    query = (
        "SELECT dns_question_name, count(*) FROM events "
        "WHERE dataset = 'zeek.dns' AND dns_question_name IS NOT NULL GROUP BY 1"
    )
    result = sql(tmp_path, query)
    assert dict(result.rows) == {k: v for k, v in expected.items() if k not in (None, "-")}
    assert result.columns == ["dns_question_name", "count_star()"]


@pytest.mark.parametrize(
    "statement",
    [
        "COPY (SELECT 1) TO '/tmp/out.csv'",
        "ATTACH '/tmp/other.db'",
        "INSTALL httpfs",
        "SELECT * FROM read_csv('/etc/passwd')",
        "DROP VIEW events",
        "SELECT 1; SELECT 2",
        "SELEC nonsense",
    ],
)
def test_hunts_only_read_the_events(tmp_path, statement) -> None:
    with pytest.raises(HuntError):
        sql(tmp_path, statement)


def test_an_empty_store_answers_without_error(tmp_path) -> None:
    assert sql(tmp_path, "SELECT count(*) FROM events").rows == [(0,)]


def test_retro_hunt_finds_what_scan_finds(need_data, sigma_rules, tmp_path) -> None:
    folder = need_data("windows", "evtx-to-mitre-attack")
    files = sorted(folder.rglob("*.evtx*"))[:40]
    stored(tmp_path, *files)
    scanned = Counter((d.rule_id, str(d.event.get("EventRecordID")))
                      for d in scan_inputs(files, sigma_rules.loaded).detections
                      if d.kind == "sigma")  # fmt: skip
    hunted = Counter((d.rule_id, str(d.event.get("EventRecordID")))
                     for d in retro_hunt(tmp_path, sigma_rules.loaded, since=None))  # fmt: skip
    assert scanned and hunted == scanned


def test_since_reads_spans_and_dates() -> None:
    assert parse_since("30d", now=1_000_000.0) == 1_000_000.0 - 30 * 86400
    assert parse_since("12h", now=100_000.0) == 100_000.0 - 12 * 3600
    assert parse_since("2026-11-01") == parse_since("2026-11-01T00:00:00+00:00")
    with pytest.raises(HuntError):
        parse_since("last tuesday")
