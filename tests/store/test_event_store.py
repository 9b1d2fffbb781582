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


def test_writers_sharing_a_folder_each_commit_their_own_and_skip_each_others(
    tmp_path, zeek_events
) -> None:
    first, second = EventStore(tmp_path, name="w0"), EventStore(tmp_path, name="w1")
    first.write(zeek_events[0:100], range(0, 100), ingested=time.time())
    second.write(zeek_events[100:200], range(100, 200), ingested=time.time())
    first.write(zeek_events[200:300], range(200, 300), ingested=time.time())
    assert sorted(p.name for p in tmp_path.glob("_commits*")) == ["_commits-w0", "_commits-w1"]
    assert (tmp_path / "_commits-w0").read_text() == "0 99\n200 299\n"
    # after a restart the batches go to other writers: nothing is stored twice
    again = EventStore(tmp_path, name="w1")
    assert again.is_stored(250) and again.is_stored(150) and not again.is_stored(300)
    assert again.write(zeek_events[0:400], range(400), ingested=time.time()) == 100
    assert EventStore(tmp_path, writer=False).count() == 400
    with pytest.raises(ValueError, match="letters and digits"):
        EventStore(tmp_path, name="../w")


def test_a_writer_recovers_only_its_own_unfinished_files(tmp_path, zeek_events) -> None:
    EventStore(tmp_path, name="w0").write(zeek_events[:10], range(10), ingested=time.time())
    stray = next(tmp_path.rglob("part-w0-*.parquet"))
    leftover = stray.with_name("part-w1-00000000000000000050-00000000000000000060.parquet.tmp")
    leftover.write_bytes(b"being written by w1")
    EventStore(tmp_path, name="w0")  # not w0's: left alone
    assert leftover.exists()
    EventStore(tmp_path, name="w1")  # w1's and not committed: undone
    assert not leftover.exists()


def test_the_writer_thread_stores_by_age_and_reports_what_it_holds(tmp_path, zeek_events) -> None:
    store = EventStore(tmp_path)
    writer = events_module.EventWriter(store, max_events=1000, max_age=30.0)
    writer.put(zeek_events[10:20], range(10, 20))
    writer.put(zeek_events[:10], range(10))
    assert writer.held_from == 0
    writer.flush()
    assert writer.held_from is None and store.count() == 20
    writer.put(zeek_events[20:2000], range(20, 2000))  # more than max_events: written now
    deadline = time.monotonic() + 30
    while writer.held_from is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.count() == 2000
    aging = events_module.EventWriter(store, max_events=10_000, max_age=0.1)
    aging.put(zeek_events[2000:2010], range(2000, 2010))
    deadline = time.monotonic() + 30
    while aging.held_from is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.count() == 2010
    # held rows cost memory: past max_bytes they are written whatever their number and age
    budget = events_module.EventWriter(store, max_events=10_000, max_bytes=1000, max_age=300)
    budget.put(zeek_events[2010:2020], range(2010, 2020))
    deadline = time.monotonic() + 30
    while budget.held_from is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.count() == 2020
    writer.close()
    aging.close()
    budget.close()


def test_a_failed_write_is_raised_by_the_next_call_and_nothing_is_lost(
    tmp_path, zeek_events, monkeypatch
) -> None:
    store = EventStore(tmp_path)
    writer = events_module.EventWriter(store, max_age=30.0)
    with monkeypatch.context() as patch:
        patch.setattr(
            store, "write_rows", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full"))
        )
        writer.put(zeek_events[:10], range(10))
        with pytest.raises(events_module.EventStoreError, match="disk full"):
            writer.flush()
    # the failed events stay held (not to be acknowledged), and the failure stays raised
    assert store.count() == 0 and writer.held_from == 0
    with pytest.raises(events_module.EventStoreError):
        writer.check()
    writer.discard()  # the caller goes back and hands them over again
    assert writer.held_from is None
    writer.put(zeek_events[:10], range(10))
    writer.close()
    assert store.count() == 10
