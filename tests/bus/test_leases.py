"""Partition leases on a real nats-server: workers share the partitions fairly, never two
at once; a worker that joins gets its share; the partitions of one that dies (stops
renewing) are taken over once its leases expire; a clean stop hands them over at once."""

from __future__ import annotations

import time

import pytest

from vigil.bus.jetstream import JetStreamBus
from vigil.bus.leases import PartitionLeases

LEASE = 1.0


@pytest.fixture
def buses(nats_server):
    opened: list[JetStreamBus] = []

    def connect() -> JetStreamBus:
        bus = JetStreamBus(nats_server.url)
        opened.append(bus)
        return bus

    yield connect
    for bus in opened:
        bus.close()


def settle(workers: list[PartitionLeases], steps: int = 4) -> list[set[int]]:
    """Each worker steps in turn, stopping and giving back its surplus, as the detect role
    does; what each owns after."""
    for _ in range(steps):
        for worker in workers:
            worker.step()
            worker.give_back(worker.surplus())
    return [set(worker.held) for worker in workers]


def test_workers_share_the_partitions_and_a_new_one_gets_its_share(buses) -> None:
    first = PartitionLeases(buses(), "detect", partitions=8, lease_s=LEASE, me="a")
    assert first.step() == set(range(8))  # alone: all of them
    second = PartitionLeases(buses(), "detect", partitions=8, lease_s=LEASE, me="b")
    owned_a, owned_b = settle([first, second])
    assert len(owned_a) == len(owned_b) == 4
    assert owned_a.isdisjoint(owned_b) and owned_a | owned_b == set(range(8))
    assert first.owners() == {p: "a" for p in owned_a} | {p: "b" for p in owned_b}


def test_a_dead_workers_partitions_are_taken_over_after_its_leases_expire(buses) -> None:
    alive = PartitionLeases(buses(), "detect", partitions=4, lease_s=LEASE, me="alive")
    doomed = PartitionLeases(buses(), "detect", partitions=4, lease_s=LEASE, me="doomed")
    owned_alive, owned_doomed = settle([alive, doomed])
    assert len(owned_doomed) == 2
    # `doomed` stops renewing (killed): its partitions stay its own until the lease ends
    assert alive.step() == owned_alive
    deadline = time.monotonic() + 10 * LEASE
    while alive.step() != set(range(4)) and time.monotonic() < deadline:
        time.sleep(LEASE / 3)
    assert set(alive.held) == set(range(4))
    assert set(alive.owners().values()) == {"alive"}


def test_a_clean_stop_hands_the_partitions_over_at_once(buses) -> None:
    staying = PartitionLeases(buses(), "detect", partitions=4, lease_s=30.0, me="staying")
    leaving = PartitionLeases(buses(), "detect", partitions=4, lease_s=30.0, me="leaving")
    settle([staying, leaving])
    leaving.release()
    assert staying.step() == set(range(4))  # no wait for a lease to run out


def test_a_lost_lease_is_reported_gone(buses) -> None:
    worker = PartitionLeases(buses(), "detect", partitions=2, lease_s=LEASE, me="slow")
    assert worker.step() == {0, 1}
    time.sleep(LEASE * 2.5)  # missed its renewals: the keys expired
    thief = PartitionLeases(buses(), "detect", partitions=2, lease_s=LEASE, me="thief")
    assert thief.step() == {0, 1}
    # renewal fails, so `slow` drops them; it takes nothing held by a current lease
    assert worker.step() == set()
