"""The inventory's load step, on SQLite and on a real PostgreSQL: two sources naming the
same host merge into one node (attributes updated, both sources kept, first seen kept), an
edge met again is one edge, and the counts say what was new."""

from __future__ import annotations

import pytest

from vigil.assets import Inventory
from vigil.assets.store import AssetStore
from vigil.store import state_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        return state_engine(tmp_path)
    return state_engine(request.getfixturevalue("postgres_url"))


def test_two_sources_merge_into_one_node_and_one_edge(engine) -> None:
    store = AssetStore(engine)
    scan = Inventory("nmap:scan.xml")
    host = scan.node("host", "web01", os="Linux 5.4", state="up")
    service = scan.node("service", "web01:tcp/443", name="https", port=443)
    scan.edge("exposes", host, service)
    assert store.merge(scan, now=100.0) == {
        "nodes_new": 2, "nodes_updated": 0, "edges_new": 1, "edges_seen": 0,
    }  # fmt: skip

    cmdb = Inventory("csv:cmdb.csv")
    again = cmdb.node("host", "web01", owner="payments", os="Ubuntu 22.04")
    cmdb.edge("exposes", again, "service:web01:tcp/443")
    cmdb.edge("exposes", again, "service:web01:tcp/22", port=22)
    assert store.merge(cmdb, now=200.0) == {
        "nodes_new": 0, "nodes_updated": 1, "edges_new": 1, "edges_seen": 1,
    }  # fmt: skip

    found = store.node("host:web01")
    assert found is not None
    assert found["attrs"] == {"os": "Ubuntu 22.04", "state": "up", "owner": "payments"}
    assert found["sources"] == ["nmap:scan.xml", "csv:cmdb.csv"]
    assert (found["first_seen"], found["last_seen"]) == (100.0, 200.0)
    assert [(e["dst"], e["sources"]) for e in found["edges_out"]] == [
        ("service:web01:tcp/22", ["csv:cmdb.csv"]),
        ("service:web01:tcp/443", ["nmap:scan.xml", "csv:cmdb.csv"]),
    ]
    assert store.node("service:web01:tcp/443")["edges_in"][0]["src"] == "host:web01"
    assert store.counts() == {"nodes": {"host": 1, "service": 1}, "edges": {"exposes": 2}}
    assert [n["id"] for n in store.nodes(search="WEB01:TCP")] == ["service:web01:tcp/443"]
    assert store.node("host:nope") is None


def test_an_unknown_kind_is_refused_before_anything_is_stored() -> None:
    inventory = Inventory("x")
    with pytest.raises(ValueError, match="not a kind of asset"):
        inventory.node("printer", "p1")
    with pytest.raises(ValueError, match="not a kind of relationship"):
        inventory.edge("likes", "host:a", "host:b")
