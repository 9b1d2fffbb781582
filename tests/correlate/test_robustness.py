"""What must not break correlation: two feeders at once, a failed save, values from the
data that are too long, clocks from the future, alerts from long before, merges of cases
that analysts already work on, and new activity on a closed case."""

from __future__ import annotations

import gzip
import io
import threading

import pytest

from vigil.correlate import Correlator, IncidentStage
from vigil.correlate.thirdparty import parse_alerts
from vigil.errors import InputError, NotFound, TooLarge
from vigil.events.entities import MAX_VALUE, entities_in


def test_two_feeders_at_once_lose_and_double_nothing(store, alert) -> None:
    stage = IncidentStage(store)

    def feed(prefix: str) -> None:
        for n in range(0, 600, 20):
            stage.feed([alert(f"{prefix}{i}", 1000 + i, ("host", f"h{i % 7}"))
                        for i in range(n, n + 20)])  # fmt: skip

    threads = [threading.Thread(target=feed, args=(p,)) for p in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows = store.ranked(limit=1000)
    assert sum(r["alerts"] for r in rows) == 1200
    assert sum(len(store.get(r["id"])["alert_ids"]) for r in rows) == 1200


def test_a_failed_save_is_retried_without_counting_twice(store, monkeypatch, alert) -> None:
    stage = IncidentStage(store)
    stage.feed([alert("a1", 100, ("host", "h"), rule="r1")])
    batch = [alert("a2", 110, ("host", "h"), rule="r2"), alert("a3", 120, ("host", "h"))]
    real = store.save
    monkeypatch.setattr(store, "save", lambda *a, **k: (_ for _ in ()).throw(OSError("locked")))
    with pytest.raises(OSError):
        stage.feed(batch)
    monkeypatch.setattr(store, "save", real)
    stage.feed(batch)  # the batch comes again
    counted = {r["id"]: (r["alerts"], r["rules"]) for r in store.ranked()}
    assert sum(n for n, _ in counted.values()) == 3
    assert all(sum(rules.values()) == n for n, rules in counted.values())


def test_entity_values_from_the_data_are_bounded() -> None:
    long_name = "x" * 5000
    ((kind, value),) = entities_in({"user.name": long_name})
    assert kind == "user" and len(value) <= MAX_VALUE
    ((_, other),) = entities_in({"user.name": long_name + "y"})
    assert other != value  # the digest keeps them apart


def test_a_future_timestamp_does_not_close_every_incident(store, alert) -> None:
    stage = IncidentStage(store)
    (first,) = stage.feed([alert("x1", 1000, ("host", "h1"))])
    stage.feed([alert("evil", 4e9, ("host", "elsewhere"))])
    (second,) = stage.feed([alert("x2", 1010, ("host", "h1"))])
    assert second.id == first.id


def test_an_alert_from_long_before_an_incident_does_not_join_it(alert) -> None:
    correlator = Correlator()
    late = correlator.add(alert("a1", 100_000, ("host", "h")))
    early = correlator.add(alert("a0", 1_000, ("host", "h")))
    assert early is not late


def test_a_merge_keeps_the_higher_level_and_the_case(store, alert) -> None:
    stage = IncidentStage(store)
    (low,) = stage.feed([alert("a1", 100, ("host", "h1"), level="low")])
    (critical,) = stage.feed([alert("a2", 105, ("user", "u1"), level="critical")])
    store.set_status(critical.id, "triaged", "ana")
    store.assign(critical.id, "bo", "ana")
    (merged,) = stage.feed([alert("a3", 110, ("host", "h1"), ("user", "u1"), level="low")])
    assert merged.id == low.id and merged.level == "critical"
    row = store.get(merged.id)
    assert (row["status"], row["assignee"]) == ("triaged", "bo")
    assert row["triaged_at"] is not None
    assert any(e["kind"] == "merge" for e in row["timeline"])


def test_new_alerts_reopen_a_closed_case(store, alert) -> None:
    stage = IncidentStage(store)
    (incident,) = stage.feed([alert("a1", 100, ("host", "h"))])
    store.set_status(incident.id, "resolved", "ana")
    stage.feed([alert("a2", 200, ("host", "h"))])
    row = store.get(incident.id)
    assert row["status"] == "triaged"
    assert row["timeline"][-1]["text"] == "resolved → triaged (new alerts)"


def test_evidence_for_an_unknown_incident_keeps_no_file(store, tmp_path) -> None:
    with pytest.raises(NotFound, match="no incident"):
        store.add_evidence("INC-none", "ana", "x.bin", io.BytesIO(b"data"))
    assert not (tmp_path / "evidence").exists() or not any((tmp_path / "evidence").iterdir())


def test_an_upload_that_unpacks_too_far_is_refused() -> None:
    bomb = gzip.compress(b"\n" * 100_000)
    with pytest.raises(TooLarge, match="inflates to more than 1,000 bytes"):
        parse_alerts("bomb.json.gz", bomb, "suricata", max_unpacked=1000)
    # the limit counts every member
    members = gzip.compress(b"\n" * 600) + gzip.compress(b"\n" * 600)
    with pytest.raises(TooLarge, match="inflates to more than 1,000 bytes"):
        parse_alerts("members.json.gz", members, "suricata", max_unpacked=1000)
    with pytest.raises(InputError, match="not readable gzip"):
        parse_alerts("bad.gz", b"\x1f\x8b" + b"junk" * 10, "suricata")
    with pytest.raises(InputError, match="cut short"):
        parse_alerts("short.gz", gzip.compress(b"x" * 1000)[:20], "suricata")
