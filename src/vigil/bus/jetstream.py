"""Streams on NATS JetStream: the distributed deployment's bus, with the interface of the
embedded segment log (`vigil.bus.Stream`).

    bus = JetStreamBus("nats://127.0.0.1:4222")
    events = bus.stream("events")
    first, last = events.publish([b"...", b"..."])   # stored by the server on return
    detect = events.consumer("detect")                # a durable pull consumer
    for offset, record in detect.fetch(detect.acked, 500, 1.0): ...
    detect.ack(last + 1)                               # after the output is committed

Offsets are JetStream stream sequences less one, so they start at 0 as the log's do. A
stream `events` is the JetStream stream `VIGIL-events` on subject `vigil.events` (the prefix
is configurable), and on `vigil.events.<n>` for partition n (`publish_partitioned`): one
stream, so offsets are one order across the partitions, and a partition's consumer
(`consumer(name, partition=n)`) reads its subject alone. Retention is by limits (age,
bytes), not by interest: a stage that subscribes later still finds what it needs, as in the
embedded log.

Publishing is asynchronous and batched: every record of a call is sent at once and the call
returns when the server has acknowledged them all (one round trip per batch, not per record).
A call's records get consecutive offsets (calls on one stream are serialised).

A named consumer is a JetStream durable pull consumer with cumulative acknowledgement
(`AckPolicy.ALL`): `ack(upto)` acknowledges the record before `upto`, and with it every
earlier one; the server keeps that position across restarts of either side. Reads in order
go through the consumer; a read elsewhere (a range read again, to isolate a bad record) is
served by direct gets and leaves the consumer where it is.

nats-py is asynchronous; a bus runs its own event loop in a thread, and these classes are
the synchronous face the stages use."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import nats
import nats.errors
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType
from nats.js.errors import NotFoundError, ServiceUnavailableError

from vigil.bus import check_consumer_name
from vigil.bus.segments import CommitError
from vigil.errors import Unavailable

T = TypeVar("T")
DEFAULT_CONSUMER = "default"
END_FRESH_S = 0.05
ACK_WAIT_S = 3600.0  # a fetched record is redelivered after this long unacknowledged
V1_ACK_TOKENS = 9  # $JS.ACK.<stream>.<consumer>.<delivered>.<seq>.<cseq>.<time>.<pending>
ARRIVAL_S = 0.05  # a partition with records waiting: the longest its fetch waits for them


class BusUnavailable(Unavailable):
    """NATS cannot be reached or did not answer in time."""


# What NATS raises while it cannot be reached (restarting, reconnecting, JetStream not yet
# ready): not a fault of what was asked, so it is raised as BusUnavailable, to wait and retry
_OUTAGE = (
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.NoRespondersError,
    nats.errors.NoServersError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    ServiceUnavailableError,
)


class JetStreamBus:
    """One connection to NATS (its own event loop, in a thread) for a process's streams."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "vigil",
        max_bytes: int = -1,
        max_age_s: float = 0.0,
        timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="vigil-nats", daemon=True
        )
        self._thread.start()
        try:
            self.nc = self.run(
                nats.connect(
                    url,
                    connect_timeout=timeout,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    allow_reconnect=True,
                )
            )
        except Exception as exc:
            self._stop_loop()
            raise BusUnavailable(f"cannot connect to NATS at {url}: {exc}") from None
        self.js = self.nc.jetstream(timeout=timeout)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the bus's loop and wait for its result."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout if timeout is not None else self.timeout * 3)
        except TimeoutError as exc:  # the wait here, or one inside the call (nats-py's)
            future.cancel()
            raise BusUnavailable(
                f"NATS at {self.url} did not answer in time ({type(exc).__name__}: {exc})"
            ) from exc
        except _OUTAGE as exc:
            raise BusUnavailable(
                f"NATS at {self.url} cannot be reached now ({type(exc).__name__}: {exc})"
            ) from exc

    def stream(self, name: str) -> JetStreamStream:
        """The stream `name`, made on the server if it does not exist."""
        return JetStreamStream(self, name)

    def close(self) -> None:
        if not self.loop.is_closed():
            # every publish was acknowledged before its call returned: nothing to drain
            with contextlib.suppress(Exception):  # closing anyway
                self.run(self.nc.close())
            self._stop_loop()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class JetStreamStream:
    """A stream on JetStream; `ack`/`acked` are those of its default consumer."""

    def __init__(self, bus: JetStreamBus, name: str) -> None:
        self.bus = bus
        self.name = name
        self.stream_name = f"{bus.prefix.upper()}-{name}"
        self.subject = f"{bus.prefix}.{name}"
        self._publishing = asyncio.Lock()
        bus.run(self._ensure())
        self._default: JetStreamConsumer | None = None
        self._end, self._end_at = 0, float("-inf")
        # consumer -> (asked at, (not handed out, not acknowledged))
        self._backlogs: dict[str, tuple[float, tuple[int, int]]] = {}

    async def _ensure(self) -> None:
        js = self.bus.js
        try:
            await js.stream_info(self.stream_name)
        except NotFoundError:
            await js.add_stream(
                name=self.stream_name,
                subjects=[self.subject, f"{self.subject}.*"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                max_bytes=self.bus.max_bytes,
                max_age=self.bus.max_age_s,
            )

    def publish(self, records: Sequence[bytes]) -> tuple[int, int]:
        if not records:
            raise ValueError("nothing to publish")
        first, last = self.bus.run(self._publish(records))
        self._seen(last + 1)
        return first, last

    def publish_partitioned(self, records: Sequence[tuple[int, bytes]]) -> tuple[int, int]:
        """Records each to its partition's subject ((partition, record) each), in one round
        trip; their offsets follow the order given."""
        if not records:
            raise ValueError("nothing to publish")
        first, last = self.bus.run(
            self._publish([r for _, r in records], [self.partition_subject(p) for p, _ in records])
        )
        self._seen(last + 1)
        return first, last

    def partition_subject(self, partition: int) -> str:
        return f"{self.subject}.{partition}"

    async def _publish(
        self, records: Sequence[bytes], subjects: Sequence[str] | None = None
    ) -> tuple[int, int]:
        js = self.bus.js
        async with self._publishing:  # a call's records get consecutive offsets
            futures = [
                await js.publish_async(
                    subjects[i] if subjects is not None else self.subject, bytes(record)
                )
                for i, record in enumerate(records)
            ]
            acks = await asyncio.gather(*futures)
        return acks[0].seq - 1, acks[-1].seq - 1

    def fetch(self, start: int, max_records: int, timeout: float) -> list[tuple[int, bytes]]:
        return self._consumer().fetch(start, max_records, timeout)

    def ack(self, upto: int) -> None:
        self._consumer().ack(upto)

    @property
    def acked(self) -> int:
        return self._consumer().acked

    @property
    def end(self) -> int:
        """The offset the next record will get (asked of the server at most every
        `END_FRESH_S`: stages ask on every batch; other processes publish too)."""
        now = time.monotonic()
        if now - self._end_at > END_FRESH_S:
            info = self.bus.run(self.bus.js.stream_info(self.stream_name))
            self._end = max(self._end, int(info.state.last_seq))
            self._end_at = now
        return self._end

    def _seen(self, end: int) -> None:
        """An end known without asking (a publish's acknowledgement, a fetched record)."""
        if end > self._end:
            self._end = end

    def backlog(self, consumer: str, *, partition: int | None = None) -> int:
        """Records not yet acknowledged by the named consumer, whichever process holds it
        (all of its subject's while it does not exist yet)."""
        waiting, unacknowledged = self._positions(consumer, partition)
        return waiting + unacknowledged

    def waiting(self, consumer: str, *, partition: int | None = None) -> int:
        """Records not yet handed to the named consumer."""
        return self._positions(consumer, partition)[0]

    def _positions(self, consumer: str, partition: int | None) -> tuple[int, int]:
        """(not handed out, handed out and not acknowledged): asked of the server at most
        every `END_FRESH_S` (intake asks on every request)."""
        now = time.monotonic()
        asked, known = self._backlogs.get(consumer, (float("-inf"), (0, 0)))
        if now - asked > END_FRESH_S:
            subject = self.subject if partition is None else self.partition_subject(partition)
            known = self.bus.run(self._ask_positions(consumer, subject))
            self._backlogs[consumer] = (now, known)
        return known

    async def _ask_positions(self, consumer: str, subject: str) -> tuple[int, int]:
        js = self.bus.js
        try:
            info = await js.consumer_info(self.stream_name, consumer)
        except NotFoundError:  # not made yet: every record of its subject waits
            state = (await js.stream_info(self.stream_name, subjects_filter=subject)).state
            return int((state.subjects or {}).get(subject, 0)), 0
        return int(info.num_pending or 0), int(info.num_ack_pending or 0)

    def consumer(self, name: str, *, partition: int | None = None) -> JetStreamConsumer:
        """The named durable consumer of this stream (made on first use, at the start); of
        one partition's records only, given `partition`."""
        return JetStreamConsumer(self, name, partition=partition)

    def get(
        self, start: int, max_records: int, subject: str | None = None
    ) -> list[tuple[int, bytes]]:
        """Records from `start` on (of `subject` only, if given), by direct reads (no
        consumer moves)."""
        return self.bus.run(self._get(start, max_records, subject))

    async def _get(
        self, start: int, max_records: int, subject: str | None
    ) -> list[tuple[int, bytes]]:
        js = self.bus.js
        info = await js.stream_info(self.stream_name)
        last = int(info.state.last_seq)
        out: list[tuple[int, bytes]] = []
        seq = start + 1
        while seq <= last and len(out) < max_records:
            try:
                if subject is None:
                    message = await js.get_msg(self.stream_name, seq)
                else:  # the next of the subject at or after seq
                    message = await js.get_msg(self.stream_name, seq, subject=subject, next=True)
            except NotFoundError:  # deleted by the limits, or none of the subject left
                if subject is not None:
                    break
                seq += 1
                continue
            at = int(message.seq or seq)
            out.append((at - 1, message.data or b""))
            seq = at + 1
        return out

    def last_of(self, subject: str) -> int:
        """The offset after the last record of `subject` (0: none)."""
        return int(self.bus.run(self._last_of(subject)))

    async def _last_of(self, subject: str) -> int:
        try:
            message = await self.bus.js.get_last_msg(self.stream_name, subject)
        except NotFoundError:
            return 0
        return int(message.seq or 0)

    def close(self) -> None:
        """The bus, shared by the process's streams, is closed by its owner."""

    def _consumer(self) -> JetStreamConsumer:
        if self._default is None:
            self._default = self.consumer(DEFAULT_CONSUMER)
        return self._default


class JetStreamConsumer:
    """A durable pull consumer of a stream (of one partition's subject, given `partition`),
    as a `vigil.bus.Stream`. A partition's offsets are the stream's: they have gaps (the
    other partitions' records), and its `end` is the offset after its last record."""

    def __init__(self, stream: JetStreamStream, name: str, *, partition: int | None = None) -> None:
        check_consumer_name(name)
        self.stream = stream
        self.name = name
        self.bus = stream.bus
        self.partition = partition
        self.subject = stream.subject if partition is None else stream.partition_subject(partition)
        self._unacked: dict[int, Any] = {}  # offset -> message, fetched and not acknowledged
        self._sub, self._acked = self.bus.run(self._open())
        self._next = self._acked  # the offset after the last record handed out
        self._caught_up = 0  # every record of the subject before this was handed out
        self._end, self._end_at = 0, float("-inf")

    async def _open(self) -> tuple[Any, int]:
        """Subscribe to the durable consumer; records an earlier subscriber was handed and
        did not acknowledge are handed out again first (the consumer is remade at its
        acknowledged position: its position is all a stage keeps)."""
        js, stream = self.bus.js, self.stream.stream_name
        floor = 0
        try:
            info = await js.consumer_info(stream, self.name)
        except NotFoundError:
            info = None
        if info is not None:
            floor = int(info.ack_floor.stream_seq)
            if int(info.delivered.stream_seq) > floor:
                await js.delete_consumer(stream, self.name)
        config = ConsumerConfig(
            durable_name=self.name,
            ack_policy=AckPolicy.ALL,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if floor else DeliverPolicy.ALL,
            opt_start_seq=floor + 1 if floor else None,
            ack_wait=ACK_WAIT_S,
            max_ack_pending=-1,
        )
        sub = await js.pull_subscribe(self.subject, durable=self.name, stream=stream, config=config)
        return sub, floor

    def publish(self, records: Sequence[bytes]) -> tuple[int, int]:
        return self.stream.publish(records)

    def fetch(self, start: int, max_records: int, timeout: float) -> list[tuple[int, bytes]]:
        if start != self._next:  # elsewhere: direct reads
            return self.stream.get(
                start, max_records, None if self.partition is None else self.subject
            )
        end_before = self.stream.end
        if self.partition is not None:
            # a partition's worker serves several in turn: one that has nothing waiting is
            # passed over at once (a fetch would wait out its timeout), one that has is
            # given the time for its records to arrive
            if not self._waiting():
                return []
            timeout = max(timeout, ARRIVAL_S)
        got = self.bus.run(self._fetch(max_records, timeout), timeout + self.bus.timeout * 3)
        out: list[tuple[int, bytes]] = []
        for message in got:
            offset = _stream_sequence(message) - 1
            if offset < self._next:  # delivered again (past its ack wait): already handed out
                continue
            self._unacked[offset] = message
            out.append((offset, message.data or b""))
            self._next = offset + 1
        if out:
            self.stream._seen(self._next)
            self._end = max(self._end, self._next)
        if not got or _pending_after(got[-1]) == 0:
            # nothing of the subject was left to deliver: none before the stream's end as it
            # was before this fetch is still to come
            self._caught_up = max(self._caught_up, end_before, self._next)
        return out

    def _waiting(self) -> bool:
        """Whether records of the partition wait (asked at most every `END_FRESH_S`)."""
        now = time.monotonic()
        if now - self._end_at <= END_FRESH_S:
            return self._end > self._next
        stream_end, last = self.bus.run(self._ends())
        self._end, self._end_at = max(self._end, last), now
        if last <= self._next:  # every record of the subject before stream_end was handed out
            self._caught_up = max(self._caught_up, stream_end, self._next)
            return False
        return True

    async def _ends(self) -> tuple[int, int]:
        """The stream's end, then the offset after the subject's last record."""
        info = await self.bus.js.stream_info(self.stream.stream_name)
        return int(info.state.last_seq), await self.stream._last_of(self.subject)

    def done_through(self, position: int) -> int:
        """Given every record handed out before `position` is done: the offset before which
        every record of the subject is (at least `position`; past it up to where the
        subject was caught up, when everything handed out is done)."""
        if position >= self._next:
            return max(position, self._caught_up)
        return position

    async def _fetch(self, max_records: int, timeout: float) -> list[Any]:
        try:
            return list(await self._sub.fetch(max_records, timeout=max(timeout, 0.001)))
        except (NatsTimeout, TimeoutError):  # nats-py raises either: nothing came
            return []

    def ack(self, upto: int) -> None:
        if upto <= self._acked:
            return
        if upto > self._next:
            raise CommitError(
                f"{self.stream.stream_name}: {self.name} acknowledges {upto}, "
                f"past what it was given ({self._next})"
            )
        held = [offset for offset in self._unacked if offset < upto]
        if not held:
            return
        message = self._unacked[max(held)]
        self.bus.run(message.ack_sync())  # cumulative: every earlier record with it
        for offset in held:
            del self._unacked[offset]
        self._acked = max(held) + 1

    @property
    def acked(self) -> int:
        return self._acked

    @property
    def end(self) -> int:
        """The stream's end; a partition's: the offset after its last record (asked of the
        server at most every `END_FRESH_S`)."""
        if self.partition is None:
            return self.stream.end
        now = time.monotonic()
        if now - self._end_at > END_FRESH_S:
            self._end = max(self._end, self.stream.last_of(self.subject))
            self._end_at = now
        return self._end

    def close(self) -> None:
        """The consumer stays on the server (durable); the bus is closed by its owner."""


def _ack_tokens(message: Any) -> tuple[list[str], int]:
    """A delivered message's reply subject in tokens, and how many tokens precede the stream
    sequence (`$JS.ACK.<stream>.<consumer>.<delivered>.<seq>...`, or with a domain and an
    account hash before the stream)."""
    tokens = message.reply.split(".")
    return tokens, (0 if len(tokens) == V1_ACK_TOKENS else 2)


def _stream_sequence(message: Any) -> int:
    """The message's stream sequence, read from its reply subject (nats-py's `metadata`
    also builds a timestamp and an object: an eighth of a detect worker's time)."""
    tokens, shift = _ack_tokens(message)
    return int(tokens[5 + shift])


def _pending_after(message: Any) -> int:
    """Records of the consumer's subject not yet delivered when this one was."""
    tokens, shift = _ack_tokens(message)
    return int(tokens[8 + shift])


__all__ = ["BusUnavailable", "JetStreamBus", "JetStreamConsumer", "JetStreamStream"]
