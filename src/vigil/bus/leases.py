"""Who processes which partition: leases in a NATS key-value bucket, so any number of
workers share the partitions of a stream, and the partitions of a worker that dies are
taken over once its leases expire.

    leases = PartitionLeases(bus, "detect", partitions=8, lease_s=6.0)
    owned = leases.step()      # call every lease_s / 3: renew, join, take a fair share
    extra = leases.surplus()   # beyond the share: stop these, then
    leases.give_back(extra)    # hand them over
    ...                        # process exactly the partitions owned and not given back
    leases.release()           # on a clean stop (after stopping): the others take them

The bucket `VIGIL-leases-<group>` keeps keys with a time to live of `lease_s`: a key not
renewed in that time disappears. `p<n>` names the worker owning partition n, `w-<id>` says
a worker is alive. Every `step` a worker renews what it holds (a renewal that finds the key
changed means the lease was lost: it stops that partition at once), counts the live
workers and takes free partitions up to its fair share (ceil(partitions / workers)); what
it holds beyond that share it stops and gives back, so a worker that joins gets its share
within a few steps, and no partition is processed by two workers at once.

A worker that stops renewing (killed, partitioned from NATS) keeps processing for at most
`lease_s` after its last renewal, in which time no other worker holds its partitions: a
partition is owned by at most one worker whose lease is current. A worker must therefore
stop a partition it could not renew within `lease_s` (`step` reports it gone)."""

from __future__ import annotations

import contextlib
import math
import os
import socket
import uuid
from typing import Any

from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import (
    BadRequestError,
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
)

from vigil.bus.jetstream import JetStreamBus

WRONG_LAST_SEQUENCE = 10071  # JetStream's error code: the key changed since it was read


def worker_id() -> str:
    """host-pid-random: unique, and says where the worker runs."""
    host = "".join(c if c.isalnum() or c == "-" else "-" for c in socket.gethostname())[:40]
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class PartitionLeases:
    def __init__(
        self,
        bus: JetStreamBus,
        group: str,
        *,
        partitions: int,
        lease_s: float = 6.0,
        me: str | None = None,
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self.bus = bus
        self.group = group
        self.partitions = partitions
        self.lease_s = lease_s
        self.me = me or worker_id()
        self.bucket = f"{bus.prefix.upper()}-leases-{group}"
        self.held: dict[int, int] = {}  # partition -> revision of our key
        self.share = partitions  # the fair share at the last step
        self._kv = bus.run(self._open())

    async def _open(self) -> Any:
        js = self.bus.js
        try:
            return await js.key_value(self.bucket)
        except BucketNotFoundError:
            config = KeyValueConfig(
                bucket=self.bucket, ttl=self.lease_s, history=1, storage=StorageType.FILE
            )
            return await js.create_key_value(config=config)

    def step(self) -> set[int]:
        """Renew, join, balance; the partitions this worker owns now."""
        return set(self.bus.run(self._step()))

    async def _step(self) -> list[int]:
        kv = self._kv
        me = self.me.encode()
        await kv.put(f"w-{self.me}", b"alive")
        for partition, revision in list(self.held.items()):
            try:
                self.held[partition] = await kv.update(f"p{partition}", me, last=revision)
            except (KeyWrongLastSequenceError, KeyNotFoundError):
                del self.held[partition]  # expired and maybe taken: stop it
        try:
            keys = await kv.keys()
        except NoKeysError:
            keys = []
        workers = max(1, sum(1 for key in keys if key.startswith("w-")))
        share = math.ceil(self.partitions / workers)
        taken = {int(key[1:]) for key in keys if key.startswith("p") and key[1:].isdigit()}
        for partition in range(self.partitions):
            if len(self.held) >= share:
                break
            if partition in taken or partition in self.held:
                continue
            try:
                self.held[partition] = await kv.create(f"p{partition}", me)
            except KeyWrongLastSequenceError:  # another worker was quicker
                continue
        self.share = share
        return sorted(self.held)

    def surplus(self) -> set[int]:
        """Partitions held beyond the fair share (the highest): stop them, then
        `give_back` them, so that no two workers ever process one at once."""
        extra = max(0, len(self.held) - self.share)
        return set(sorted(self.held)[len(self.held) - extra :]) if extra else set()

    def give_back(self, partitions: set[int]) -> None:
        """Partitions this worker has stopped, for the others to take."""
        self.bus.run(self._give_back_all(partitions))

    async def _give_back_all(self, partitions: set[int]) -> None:
        for partition in partitions:
            if partition in self.held:
                await self._give_back(partition)

    async def _give_back(self, partition: int) -> None:
        revision = self.held.pop(partition)
        try:
            await self._kv.delete(f"p{partition}", last=revision)
        except (KeyWrongLastSequenceError, KeyNotFoundError):
            pass  # gone already (run out, or another's now)
        except BadRequestError as exc:
            if exc.err_code != WRONG_LAST_SEQUENCE:  # as the server words it for a delete
                raise

    def release(self) -> None:
        """Give every partition back and leave (a clean stop)."""
        self.bus.run(self._release())

    async def _release(self) -> None:
        for partition in list(self.held):
            await self._give_back(partition)
        with contextlib.suppress(KeyNotFoundError):
            await self._kv.delete(f"w-{self.me}")

    def owners(self) -> dict[int, str]:
        """Who owns which partition now (for /health and tests)."""
        return self.bus.run(self._owners())

    async def _owners(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for partition in range(self.partitions):
            try:
                entry = await self._kv.get(f"p{partition}")
            except KeyNotFoundError:
                continue
            if entry.value:
                out[partition] = entry.value.decode()
        return out


__all__ = ["PartitionLeases", "worker_id"]
