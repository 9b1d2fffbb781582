"""The Parquet event store: real events written and read back, each batch stored once even
when written again or interrupted, and partitions by day and dataset."""

from __future__ import annotations

import os
import time

import pytest

from vigil.ingest import FileReport, discover, read_events
from vigil.store import events as events_module
from vigil.store.events import EventStore


@pytest.fixture
def zeek_events(need_data):
    folder = need_data("network", "stratosphere", "005-zeek-scenario-malicious")
    out = []
    for source in discover([folder]):
        for batch in read_events(source, FileReport(source.name)):
            out.extend(batch)
    return out


def test_events_come_back_with_their_fields_times_and_datasets(tmp_path, zeek_events) -> None:
    store = EventStore(tmp_path)
    assert store.write(zeek_events, range(len(zeek_events)), ingested=time.time()) == 2976
    back = [e for batch in EventStore(tmp_path).events(None, None) for e in batch]
    assert len(back) == len(zeek_events) == store.count()
    by_offset = {e.record: e for e in back}
    for offset, original in enumerate(zeek_events):
        again = by_offset[offset]
        assert again.fields == original.fields
        assert again.dataset == original.dataset
        assert again.time == pytest.approx(original.time, abs=1e-6)
    datasets = {p.parent.name for p in store.files()}
    assert datasets == {"dataset=zeek.dns", "dataset=zeek.conn", "dataset=zeek.http"}


def test_a_batch_written_twice_is_stored_once(tmp_path, zeek_events) -> None:
    store = EventStore(tmp_path)
    store.write(zeek_events[:100], range(100), ingested=time.time())
    assert store.write(zeek_events[:150], range(150), ingested=time.time()) == 50
    assert EventStore(tmp_path).count() == 150


def test_a_batch_cut_short_before_its_commit_leaves_nothing(tmp_path, zeek_events, monkeypatch):
    store = EventStore(tmp_path)
    store.write(zeek_events[:10], range(10), ingested=time.time())
    written = []
    real_write = events_module.pq.write_table

    def crash_after_one(table, where, **kwargs):  # one partition's file written, then a crash
        if written:
            raise OSError("power cut")
        written.append(where)
        real_write(table, where, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(events_module.pq, "write_table", crash_after_one)
        with pytest.raises(OSError):
            store.write(zeek_events, range(len(zeek_events)), ingested=time.time())
    assert written and str(written[0]).endswith(".tmp")
    reopened = EventStore(tmp_path)
    assert not list(tmp_path.rglob("*.tmp"))
    assert reopened.count() == 10 and reopened.max_offset == 9
    assert reopened.write(zeek_events, range(len(zeek_events)), ingested=time.time()) == 2966
    assert EventStore(tmp_path).count() == len(zeek_events)


def test_a_committed_batch_whose_renames_were_cut_short_is_finished(tmp_path, zeek_events):
    store = EventStore(tmp_path)
    real_replace = os.replace
    calls = []

    def replace_once(source, target):
        calls.append(source)
        if len(calls) > 1:
            raise OSError("crash between renames")
        real_replace(source, target)

    os.replace = replace_once  # type: ignore[assignment]
    try:
        with pytest.raises(OSError):
            store.write(zeek_events, range(len(zeek_events)), ingested=time.time())
    finally:
        os.replace = real_replace  # type: ignore[assignment]
    assert EventStore(tmp_path).count() == len(zeek_events)
