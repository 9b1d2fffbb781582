"""The decision log: every decision, in order, on the durable `decisions` stream, and the log
anchored in the audit chain range by range (each range's count, first and last decision, and
the SHA-256 of its records; a range closes after 10,000 decisions or a second), so a
decision removed or changed in the log no longer matches the chain. Nothing
is dropped: when the writer falls behind, deciding waits (a bounded queue), and a caller that
must know its decision is kept (the HTTP API) waits for it.

    log = DecisionLog(stream, audit)
    log.start()
    seq = log.append(decision)       # at once
    log.wait(seq)                    # on the durable stream when this returns
    await log.kept(seq)              # the same for a coroutine, holding no thread
    log.recent(subject="alice")      # the latest decisions first, read back from the stream

A range is anchored in the audit chain after its decisions are on the stream (within
`ANCHOR_S`), so waiting for a decision does not wait for the chain, unless the chain cannot
be written: the writer then retries the anchor before it writes more (nothing is ever left
unanchored), and deciding waits with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from vigil.zerotrust.pdp import Decision

log = logging.getLogger("vigil.zerotrust")

BATCH = 2000
QUEUE = 100_000  # decisions waiting to be written; more and deciding waits
ANCHOR_COUNT = 10_000  # decisions, at most, under one audit entry
ANCHOR_S = 1.0  # and at most this old
RECENT_SCAN = 20_000  # decisions read back, at most, to find a page of the latest
READ_BACK = 1000  # decisions read from the stream at once, going back

Read = Callable[[int, int], Sequence[tuple[int, bytes]]]  # (start, most) → (offset, record)s


class DecisionLog:
    def __init__(
        self,
        publish: Callable[[Sequence[bytes]], Any],
        anchor: Callable[[dict[str, Any]], Any] | None = None,
        *,
        most: int = QUEUE,
        read: Read | None = None,
        bounds: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        self.publish = publish
        self.anchor = anchor
        # reading the stream back (`recent`): its records from a position, and the first
        # position it still keeps and the next it will write
        self.read = read
        self.bounds = bounds
        self._queue: queue.Queue[tuple[int, bytes]] = queue.Queue(most)
        self._seq = 0
        self._lock = threading.Lock()
        self._flushed = 0
        self._done = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = 0
        self.failures = 0
        self._range: list[Any] | None = None  # first, last, count, digest, since
        # coroutines waiting for a decision: (seq, tiebreak, loop, future), lowest seq first
        self._waiters: list[tuple[int, int, asyncio.AbstractEventLoop, asyncio.Future[bool]]] = []
        self._waiter_id = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="vigil-decision-log", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._flush_all()

    def append(self, decision: Decision, *, wait: bool = True) -> int:
        """Queue a decision, waiting while the queue is full; its sequence number. With
        `wait=False` (a coroutine must not block) a full queue raises `queue.Full` and the
        decision is not logged, so it must not be given."""
        data = decision.to_bytes()
        with self._lock:
            self._queue.put((self._seq + 1, data), block=wait)
            self._seq += 1
            return self._seq

    def wait(self, seq: int, timeout: float = 10.0) -> bool:
        """Until decision `seq` is on the stream and anchored; whether it is."""
        deadline = time.monotonic() + timeout
        with self._done:
            while self._flushed < seq:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._done.wait(left)
        return True

    async def kept(self, seq: int, timeout: float = 10.0) -> bool:
        """`wait` for a coroutine: resolved by the writer once `seq` is on the stream, so no
        thread is held while the decision is written."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        with self._done:
            if self._flushed >= seq:
                return True
            self._waiter_id += 1
            heapq.heappush(self._waiters, (seq, self._waiter_id, loop, future))
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False

    def recent(
        self,
        *,
        subject: str | None = None,
        outcome: str | None = None,
        limit: int = 50,
        offset: int = 0,
        scan: int = RECENT_SCAN,
    ) -> dict[str, Any]:
        """The latest decisions first (of `subject`, with `outcome`), read back from the
        stream: a page (`limit` after `offset` matches) of the last `scan` decisions at most.
        {"decisions": [...], "more": another match follows, "scanned": decisions read,
        "complete": the whole stream was read}."""
        if self.read is None or self.bounds is None:
            return {"decisions": [], "more": False, "scanned": 0, "complete": True}
        first, position = self.bounds()
        wanted = subject.lower() if subject else None
        # most records are passed over unread: on the bytes as `Decision.to_bytes` writes
        # them (lowered: the subject matches in any case, its ASCII letters at least)
        marks = []
        if outcome:
            marks.append((False, b'"outcome":' + orjson.dumps(outcome)))
        if wanted and wanted.isascii():
            marks.append((True, b'"request":{"subject":' + orjson.dumps(wanted)))
        found: list[dict[str, Any]] = []
        skipped = scanned = 0
        while position > first and scanned < scan and len(found) <= limit:
            start = max(first, position - min(READ_BACK, scan - scanned))
            records = [r for r in self.read(start, position - start) if r[0] < position]
            if not records:
                break
            for at, data in reversed(records):
                if len(found) > limit:  # one past the page: more follow
                    break
                scanned, position = scanned + 1, at
                if any(mark not in (data.lower() if lowered else data) for lowered, mark in marks):
                    continue
                decision = orjson.loads(data)
                if outcome and decision.get("outcome") != outcome:
                    continue
                asked = decision.get("request") or {}
                if wanted and str(asked.get("subject", "")).lower() != wanted:
                    continue
                if skipped < offset:
                    skipped += 1
                else:
                    found.append(decision)
            else:
                position = start  # the window read whole (what it lacks is gone)
        return {
            "decisions": found[:limit],
            "more": len(found) > limit,
            "scanned": scanned,
            "complete": position <= first,
        }

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._range is not None and time.monotonic() - self._range[4] >= ANCHOR_S:
                    self._anchor_held()
                continue
            self._write([first, *self._drain(BATCH - 1)])

    def _drain(self, most: int) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        while len(out) < most:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return out

    def _flush_all(self) -> None:
        while True:
            batch = self._drain(BATCH)
            if not batch:
                break
            self._write(batch)
        self._anchor_held()

    def _write(self, batch: list[tuple[int, bytes]]) -> None:
        records = [data for _, data in batch]
        while True:  # a failing stream is retried, never skipped: nothing is lost
            try:
                self.publish(records)
                break
            except Exception:
                self.failures += 1
                log.exception("decision log: writing %d decisions failed; again", len(batch))
                time.sleep(0.5)
        self.written += len(batch)
        ready = []
        with self._done:
            self._flushed = batch[-1][0]
            self._done.notify_all()
            while self._waiters and self._waiters[0][0] <= self._flushed:
                ready.append(heapq.heappop(self._waiters))
        for _, _, loop, future in ready:
            if future.done():  # its waiter gave up (timed out)
                continue
            # a closed event loop (RuntimeError): no one is waiting any more
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future)
        self._hold(batch)

    def _hold(self, batch: list[tuple[int, bytes]]) -> None:
        """Take a written batch into the range the next anchor covers; anchor the range once
        it is `ANCHOR_COUNT` decisions or `ANCHOR_S` seconds old (so anchoring costs the
        decisions nothing), and at the end."""
        if self._range is None:
            self._range = [batch[0][0], batch[0][0], 0, hashlib.sha256(), time.monotonic()]
        held = self._range
        for seq, data in batch:
            if held[2]:
                held[3].update(b"\n")
            held[3].update(data)
            held[1], held[2] = seq, held[2] + 1
        if held[2] >= ANCHOR_COUNT or time.monotonic() - held[4] >= ANCHOR_S:
            self._anchor_held()

    def _anchor_held(self) -> None:
        held, self._range = self._range, None
        if held is None or self.anchor is None:
            return
        entry = {"count": held[2], "first": held[0], "last": held[1], "sha256": held[3].hexdigest()}
        while True:
            try:
                self.anchor(entry)
                return
            except Exception:
                self.failures += 1
                log.exception("decision log: anchoring %d decisions failed; again", held[2])
                time.sleep(0.5)


def _resolve(future: asyncio.Future[bool]) -> None:
    if not future.done():  # a waiter that timed out is gone
        future.set_result(True)


__all__ = ["DecisionLog"]
