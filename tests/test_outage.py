"""What counts as an outage (wait and retry, never set a record aside) and what does not."""

from __future__ import annotations

import errno

import psycopg
import pytest
import sqlalchemy
import sqlalchemy.exc

from vigil.bus.jetstream import BusUnavailable
from vigil.errors import StorageFull, outage


def test_a_database_that_refuses_connections_is_an_outage(postgres_url) -> None:
    dead = sqlalchemy.create_engine(
        "postgresql+psycopg://vigil@127.0.0.1:1/none", connect_args={"connect_timeout": 2}
    )
    with pytest.raises(sqlalchemy.exc.OperationalError) as raised, dead.connect():
        pass
    found = outage(raised.value)
    assert found is not None and "the database cannot be reached now" in str(found)
    # a query the server refuses for what it says is the records' fault: not an outage
    live = sqlalchemy.create_engine(postgres_url)
    with pytest.raises(sqlalchemy.exc.ProgrammingError) as wrong, live.connect() as connection:
        connection.execute(sqlalchemy.text("SELECT * FROM no_such_table"))
    assert outage(wrong.value) is None


def test_bus_storage_and_other_errors() -> None:
    bus = BusUnavailable("NATS at nats://127.0.0.1:4222 did not answer in time")
    try:
        raise RuntimeError("publishing progress") from bus
    except RuntimeError as wrapped:
        assert outage(wrapped) is bus
    assert isinstance(outage(OSError(errno.ENOSPC, "No space left on device")), StorageFull)
    assert outage(psycopg.OperationalError("server closed the connection")) is not None
    assert outage(ValueError("bad record")) is None and outage(KeyError("EventID")) is None
