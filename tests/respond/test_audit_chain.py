"""The audit chain on SQLite and a real PostgreSQL: intact after appends from two threads at
once; one changed byte, one removed entry, one swapped pair and entries cut from its end are
each found and named; `vigil audit verify` exits 1 on a broken chain."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import update

from vigil.respond.audit import AuditLog
from vigil.store import state_engine
from vigil.store.tables import audit_table


@pytest.fixture(params=["sqlite", "postgresql"])
def log(request, tmp_path) -> AuditLog:
    if request.param == "sqlite":
        return AuditLog(state_engine(tmp_path))
    return AuditLog(state_engine(request.getfixturevalue("postgres_url")))


def _fill(log: AuditLog, count: int = 20) -> None:
    for n in range(count):
        log.append("alice", "playbook.approve", f"run:{n}", {"step": "isolate", "n": n})


def test_appends_from_two_threads_make_one_intact_chain(log) -> None:
    workers = [threading.Thread(target=_fill, args=(log, 50)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    verdict = log.verify()
    assert verdict.ok and verdict.entries == 100
    assert [e["seq"] for e in log.entries()] == list(range(1, 101))
    assert log.verify(head=verdict.head).ok


def test_a_changed_byte_is_found(log) -> None:
    _fill(log)
    with log.engine.begin() as conn:
        conn.execute(update(audit_table).where(audit_table.c.seq == 7).values(
            detail='{"n":6,"step":"isolatE"}'))  # fmt: skip
    verdict = log.verify()
    assert (verdict.ok, verdict.broken_at, verdict.reason) == (False, 7, "its content was changed")


def test_a_removed_entry_is_found(log) -> None:
    _fill(log)
    with log.engine.begin() as conn:
        conn.execute(audit_table.delete().where(audit_table.c.seq == 10))
    verdict = log.verify()
    assert (verdict.ok, verdict.broken_at) == (False, 10)
    assert "entry 10 is missing" in verdict.reason


def test_a_swapped_pair_is_found(log) -> None:
    _fill(log)
    rows = {e["seq"]: e for e in log.entries()}
    columns = ("at", "actor", "action", "subject", "detail", "prev", "hash")
    with log.engine.begin() as conn:
        for seq, other in ((5, 6), (6, 5)):
            values = {c: rows[other][c] for c in columns}
            conn.execute(update(audit_table).where(audit_table.c.seq == seq).values(**values))
    verdict = log.verify()
    assert (verdict.ok, verdict.broken_at) == (False, 5)


def test_entries_cut_from_the_end_are_found_against_a_recorded_head(log) -> None:
    _fill(log)
    head = log.verify().head
    with log.engine.begin() as conn:
        conn.execute(audit_table.delete().where(audit_table.c.seq >= 19))
    assert log.verify().ok  # a shorter chain still holds…
    verdict = log.verify(head=head)  # …but no longer reaches the head recorded
    assert not verdict.ok and "no longer reaches the head" in verdict.reason


def test_the_command_line_says_intact_or_broken(run_cli, tmp_path) -> None:
    log = AuditLog(state_engine(tmp_path))
    _fill(log, 5)
    done = run_cli("audit", "verify", "--data-dir", tmp_path)
    assert done.exit_code == 0 and "intact: 5 entries" in done.output
    with log.engine.begin() as conn:
        conn.execute(update(audit_table).where(audit_table.c.seq == 3).values(actor="mallory"))
    broken = run_cli("audit", "verify", "--data-dir", tmp_path)
    assert broken.exit_code == 1 and "broken at entry 3: its content was changed" in broken.output
    listed = run_cli("audit", "list", "--data-dir", tmp_path)
    assert listed.exit_code == 0 and "mallory" in listed.output
