"""Moving batches between stages: durable streams with consumer positions.

A stream takes records (`publish`, durable when it returns, so a sender may be acknowledged),
hands them out in order from a position (`fetch`), and remembers how far its consumer got
(`ack`). Embedded, a stream is a segment log on local disk (`LocalStream`); distributed, the
same interface maps onto a NATS JetStream stream and a durable pull consumer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from vigil.bus.segments import SegmentLog


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
    """A stream on a segment log in a local folder (the embedded deployment)."""

    def __init__(self, folder: Path, *, fsync: bool = True, segment_bytes: int = 64 << 20) -> None:
        self.log = SegmentLog(folder, fsync=fsync, segment_bytes=segment_bytes)

    def publish(self, records: Sequence[bytes]) -> tuple[int, int]:
        return self.log.append(records)

    def fetch(self, start: int, max_records: int, timeout: float) -> list[tuple[int, bytes]]:
        if self.log.end <= start and not self.log.wait(start, timeout):
            return []
        return self.log.read(start, max_records=max_records)

    def ack(self, upto: int) -> None:
        if upto > self.log.committed:
            self.log.commit(upto)
            self.log.retain()

    @property
    def acked(self) -> int:
        return self.log.committed

    @property
    def end(self) -> int:
        return self.log.end

    def close(self) -> None:
        self.log.close()


__all__ = ["LocalStream", "Stream"]
