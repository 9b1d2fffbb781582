"""The audit chain: every action, approval, decision and configuration change, appended with
who did it and with what, each entry hashed together with the one before it. Changing an
entry's byte, removing an entry or swapping two breaks the chain, and `verify` says where.

    audit = AuditLog(engine)
    audit.append("alice", "playbook.approve", "run:42", {"step": "isolate"})
    verdict = audit.verify()          # Verdict(ok=True, entries=..., head="…")

An entry's hash is SHA-256 over the previous hash and the entry's canonical JSON (sequence,
time, actor, action, subject, detail). Sequence numbers run 1, 2, 3… with no gap; two
writers at once cannot both take the same one (the primary key), so the one that loses
reads the new head and tries again. Removing the newest entries leaves a shorter chain that
still holds: compare `verify().head` with a head recorded elsewhere (`--head`) to catch that.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from vigil.store import migrate
from vigil.store.tables import audit_table

GENESIS = "0" * 64
TRIES = 20
PAGE = 5000


def entry_hash(prev: str, seq: int, at: float, actor: str, action: str, subject: str,
               detail: str) -> str:  # fmt: skip
    body = orjson.dumps([seq, at, actor, action, subject, detail])
    return hashlib.sha256(prev.encode() + body).hexdigest()


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    entries: int  # entries read
    head: str  # the last entry's hash (GENESIS for none)
    broken_at: int | None = None  # the sequence number where the chain first breaks
    reason: str = ""


class AuditLog:
    def __init__(self, engine: Engine) -> None:
        migrate(engine)
        self.engine = engine

    def append(self, actor: str, action: str, subject: str,
               detail: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
        """Add an entry at the head of the chain; the entry as written."""
        return self.extend([(actor, action, subject, detail)])[0]

    def extend(self, entries: Sequence[tuple[str, str, str, dict[str, Any] | None]]
               ) -> list[dict[str, Any]]:  # fmt: skip
        """Add entries (actor, action, subject, detail) at the head, in order, in one
        transaction; the entries as written."""
        texts = [
            orjson.dumps(detail or {}, default=str, option=orjson.OPT_SORT_KEYS).decode()
            for _, _, _, detail in entries
        ]
        for _ in range(TRIES):
            try:
                with self.engine.begin() as conn:
                    last = conn.execute(
                        select(audit_table.c.seq, audit_table.c.hash)
                        .order_by(audit_table.c.seq.desc())
                        .limit(1)
                    ).first()
                    seq, prev = (last.seq, last.hash) if last else (0, GENESIS)
                    at = time.time()
                    rows = []
                    for (actor, action, subject, _), text in zip(entries, texts, strict=True):
                        seq += 1
                        digest = entry_hash(prev, seq, at, actor, action, subject, text)
                        rows.append({"seq": seq, "at": at, "actor": actor, "action": action,
                                     "subject": subject, "detail": text, "prev": prev,
                                     "hash": digest})  # fmt: skip
                        prev = digest
                    if rows:
                        conn.execute(audit_table.insert(), rows)
                return rows
            except IntegrityError:  # another writer took these sequence numbers: again
                continue
        raise RuntimeError(f"audit: could not append after {TRIES} tries (contention)")

    def last(self, action: str) -> dict[str, Any] | None:
        """The newest entry of one kind of action."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(audit_table)
                .where(audit_table.c.action == action)
                .order_by(audit_table.c.seq.desc())
                .limit(1)
            ).first()
        return dict(row._mapping) if row else None

    def entries(self, *, since: int = 0, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Entries in sequence order from `since` on."""
        left = limit
        at = since
        with self.engine.connect() as conn:
            while left is None or left > 0:
                page = PAGE if left is None else min(PAGE, left)
                rows = conn.execute(
                    select(audit_table)
                    .where(audit_table.c.seq > at)
                    .order_by(audit_table.c.seq)
                    .limit(page)
                ).all()
                if not rows:
                    return
                for row in rows:
                    yield dict(row._mapping)
                at = rows[-1].seq
                if left is not None:
                    left -= len(rows)

    def verify(self, *, head: str | None = None) -> Verdict:
        """Walk the chain: every entry's hash recomputed, every link and sequence number
        checked; with `head`, the chain must still end there (or run on past it)."""
        prev, expected, count = GENESIS, 1, 0
        seen_head = head is None or head == GENESIS
        for entry in self.entries():
            count += 1
            seq = entry["seq"]
            if seq != expected:
                return Verdict(False, count, prev, expected,
                               f"entry {expected} is missing (the next is {seq})")  # fmt: skip
            if entry["prev"] != prev:
                reason = "it does not follow the entry before it (moved or removed)"
                return Verdict(False, count, prev, seq, reason)
            recomputed = entry_hash(prev, seq, entry["at"], entry["actor"], entry["action"],
                                    entry["subject"], entry["detail"])  # fmt: skip
            if recomputed != entry["hash"]:
                return Verdict(False, count, prev, seq, "its content was changed")
            prev, expected = entry["hash"], seq + 1
            seen_head = seen_head or prev == head
        if not seen_head:
            return Verdict(False, count, prev, expected,
                           "the chain no longer reaches the head recorded: entries removed "
                           "from its end")  # fmt: skip
        return Verdict(True, count, prev)


__all__ = ["GENESIS", "AuditLog", "Verdict", "entry_hash"]
