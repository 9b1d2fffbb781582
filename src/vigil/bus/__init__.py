"""Moving batches between stages: durable streams with consumer positions.

A stream takes records (`publish`, durable when it returns, so a sender may be acknowledged),
hands them out in order from a position (`fetch`), and remembers how far its consumer got
(`ack`). A stream read by several stages gives each a named, durable consumer
(`consumer(name)`: its own position, kept across restarts; records are deleted only once
every consumer is past them). Embedded, a stream is a segment log on local disk
(`LocalStream`); distributed, the same interface maps onto a NATS JetStream stream and its
durable pull consumers.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from vigil.bus.segments import CommitError, SegmentLog, load_position, save_position

CONSUMERS = "consumers"  # the folder, in a stream's, of its named consumers' positions


class Stream(Protocol):
    def publish(self, records: Sequence[bytes]) -> tuple[int, int]:
        """Append records; durable on return. (first, last) positions."""
        ...

    def fetch(self, start: int, max_records: int, timeout: float) -> list[tuple[int, bytes]]:
        """Records from `start` on, waiting up to `timeout` s for the first one."""
        ...

    def ack(self, upto: int) -> None:
        """Every record before `upto` is done with."""
        ...

    @property
    def acked(self) -> int: ...

    @property
    def end(self) -> int: ...

    def close(self) -> None: ...


class LocalStream:
    """A stream on a segment log in a local folder (the embedded deployment).

    Read by one consumer, `ack` and `acked` are the log's committed position. Read by
    several, each has a `consumer(name)`; its position is a file of its own
    (`consumers/<name>`, replaced atomically), and the log's committed position is the
    lowest of them, so retention keeps what the slowest still needs. A consumer starts
    where the stream's committed position is when it first subscribes."""

    def __init__(self, folder: Path, *, fsync: bool = True, segment_bytes: int = 64 << 20) -> None:
        self.log = SegmentLog(folder, fsync=fsync, segment_bytes=segment_bytes)
        self._folder = Path(folder) / CONSUMERS
        self._lock = threading.Lock()
        self._positions: dict[str, int] = {}
        if self._folder.is_dir():
            for path in self._folder.iterdir():
                if _valid_name(path.name):
                    self._positions[path.name] = load_position(path)
                elif path.name.endswith(".tmp"):
                    path.unlink(missing_ok=True)  # a save that crashed before its rename

    def publish(self, records: Sequence[bytes]) -> tuple[int, int]:
        return self.log.append(records)

    def fetch(self, start: int, max_records: int, timeout: float) -> list[tuple[int, bytes]]:
        if self.log.end <= start and not self.log.wait(start, timeout):
            return []
        return self.log.read(start, max_records=max_records)

    def ack(self, upto: int) -> None:
        if self._positions:
            raise CommitError(
                f"{self.log.folder}: this stream has named consumers "
                f"({', '.join(sorted(self._positions))}): acknowledge through them"
            )
        self._advance(upto)

    @property
    def acked(self) -> int:
        return self.log.committed

    @property
    def end(self) -> int:
        return self.log.end

    def consumer(self, name: str) -> Consumer:
        """The named, durable consumer `name` of this stream (made on first use)."""
        check_consumer_name(name)
        with self._lock:
            if name not in self._positions:
                self._save(name, self.log.committed)
        return Consumer(self, name)

    def position(self, name: str) -> int:
        return self._positions[name]

    def commit(self, name: str, upto: int) -> None:
        """Consumer `name` is done with every record before `upto`."""
        with self._lock:
            if upto <= self._positions[name]:
                return
            if upto > self.log.end:
                raise CommitError(f"{self.log.folder}: {name} acknowledges {upto}, past the end")
            self._save(name, upto)
            floor = min(self._positions.values())
        self._advance(floor)

    def close(self) -> None:
        self.log.close()

    def _advance(self, upto: int) -> None:
        if upto > self.log.committed:
            self.log.commit(upto)
            self.log.retain()

    def _save(self, name: str, position: int) -> None:
        self._folder.mkdir(exist_ok=True)
        save_position(self._folder, name, position, fsync=self.log.fsync)
        self._positions[name] = position


class Consumer:
    """A stream as one of its named consumers sees it: the stream's records, and this
    consumer's own position (`ack`, `acked`)."""

    def __init__(self, stream: LocalStream, name: str) -> None:
        self.stream = stream
        self.name = name

    def publish(self, records: Sequence[bytes]) -> tuple[int, int]:
        return self.stream.publish(records)

    def fetch(self, start: int, max_records: int, timeout: float) -> list[tuple[int, bytes]]:
        return self.stream.fetch(start, max_records, timeout)

    def ack(self, upto: int) -> None:
        self.stream.commit(self.name, upto)

    @property
    def acked(self) -> int:
        return self.stream.position(self.name)

    @property
    def end(self) -> int:
        return self.stream.end

    def close(self) -> None:
        """The stream is closed by its owner, not by one of its consumers."""


def check_consumer_name(name: str) -> None:
    """ValueError unless `name` can name a consumer (a file name, a JetStream durable)."""
    if not _valid_name(name):
        raise ValueError(f"a consumer's name is letters, digits, '-' and '_': {name!r}")


def _valid_name(name: str) -> bool:
    return 0 < len(name) <= 64 and all(c.isalnum() or c in "-_" for c in name)


__all__ = ["Consumer", "LocalStream", "Stream", "check_consumer_name"]
