"""The inventory's load step, on SQLite and on a real PostgreSQL: two sources naming the
same host merge into one node (attributes updated, both sources kept, first seen kept), an
edge met again is one edge, and the counts say what was new."""

from __future__ import annotations

import pytest

from vigil.assets import Inventory
from vigil.assets.graph import AccessGraph
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


def test_merging_keeps_a_real_name_and_the_first_sighting_and_addresses_stand_for_hosts(
    tmp_path,
) -> None:
    store = AssetStore(state_engine(tmp_path))
    cmdb = Inventory("csv:cmdb.csv")
    dc = cmdb.node("host", "dc1", name="Domain Controller", criticality="critical")
    cmdb.edge("has_address", dc, cmdb.node("address", "10.0.0.4"))
    store.merge(cmdb)
    seen = Inventory("telemetry")
    seen.node("host", "dc1", first_event=1000.0, last_event=1000.0)
    store.merge(seen)
    later = Inventory("telemetry")
    later.node("host", "dc1", first_event=2000.0, last_event=2000.0)
    store.merge(later)
    found = store.node("host:dc1")
    assert found["name"] == "Domain Controller"  # telemetry gave no name: the CMDB's stays
    assert (found["attrs"]["first_event"], found["attrs"]["last_event"]) == (1000.0, 2000.0)
    # an alert or incident naming the address gets the host's context
    context = store.context(["ip:10.0.0.4"])
    assert context["ip:10.0.0.4"]["asset"] == "host:dc1"
    assert context["ip:10.0.0.4"]["criticality"] == "critical"


def test_a_batch_of_several_sources_keeps_each_one(tmp_path) -> None:
    """An import and telemetry in one batch of the assets stage: the telemetry host stays
    unmanaged, the imported one is not called telemetry."""
    from vigil.assets.stage import AssetStage

    engine = state_engine(tmp_path)
    stage = AssetStage(engine)
    cmdb, seen = Inventory("csv:cmdb.csv"), Inventory("telemetry")
    cmdb.node("host", "web1")
    seen.node("host", "10.0.0.66")
    stage.process([(0, cmdb.to_bytes()), (1, seen.to_bytes())])
    store = AssetStore(engine)
    assert store.node("host:10.0.0.66")["managed"] is False
    assert store.node("host:web1")["sources"] == ["csv:cmdb.csv"]
    assert [n["id"] for n in store.nodes(managed=False)] == ["host:10.0.0.66"]


def test_a_source_imported_again_retires_what_it_no_longer_says(tmp_path, need_data) -> None:
    """The IAM export again after privesc1's policy was detached: its has_policy edge goes
    (another source naming an edge keeps it), its escalation path goes with it, and the
    access graph of the assets stage loses the move."""
    import json

    from vigil.assets import aws_iam
    from vigil.assets.privesc import find_escalations
    from vigil.assets.stage import AssetStage

    path = need_data("asset_vuln", "aws-iam-authorization-details") / "example.json"
    document = json.loads(path.read_text())
    engine = state_engine(tmp_path)
    stage = AssetStage(engine)
    first = aws_iam.read(path.read_bytes(), "example.json")
    first.source = "aws-iam:example.json"
    stage.process([(0, first.to_bytes())])
    store = AssetStore(engine)
    (user,) = store.nodes(kind="user", search="user/privesc1-")
    held = [e for e in store.node(user["id"])["edges_out"] if e["kind"] == "has_policy"]
    assert held
    kinds = ("user", "group", "role", "policy")
    assert find_escalations(store.inventory(kinds)).of(user["id"][5:])
    also = Inventory("csv:other.csv")  # another source names one of those edges too
    also.edge("has_policy", user["id"], held[0]["dst"], **held[0]["attrs"])
    store.merge(also)

    for entry in document["UserDetailList"]:
        if entry["UserName"] == user["name"]:
            entry["AttachedManagedPolicies"], entry["UserPolicyList"] = [], []
    second = aws_iam.read(json.dumps(document).encode(), "example.json")
    second.source = "aws-iam:example.json"
    counts = stage.process([(1, second.to_bytes())])
    assert counts["edges_gone"] == len(held) - 1
    left = [e for e in store.node(user["id"])["edges_out"] if e["kind"] == "has_policy"]
    assert [(e["dst"], e["sources"]) for e in left] == [(held[0]["dst"], ["csv:other.csv"])]
    assert counts["edges_new"] == 0  # nothing else changed
    assert find_escalations(store.inventory(kinds)).of(user["id"][5:])  # the CSV still says
    again = stage.process([(2, Inventory("csv:other.csv").to_bytes())])  # it, until it doesn't
    assert again["edges_gone"] == 1
    assert not [e for e in store.node(user["id"])["edges_out"] if e["kind"] == "has_policy"]
    assert not find_escalations(store.inventory(kinds)).of(user["id"][5:])
    # with only the other source's edge left, the graph keeps no move for has_policy anyway
    assert stage.graph.blast_radius(user["id"]) == AccessGraph.from_store(engine).blast_radius(
        user["id"]
    )


def test_the_graph_forgets_a_move_no_source_names(tmp_path) -> None:
    graph = AccessGraph()
    graph.add([("user:a", "host:h", "logon"), ("host:h", "host:db", "flow"),
               ("host:h", "host:db", "admin_of")])  # fmt: skip
    assert graph.remove([("host:h", "host:db", "flow")]) == 0  # admin_of still gives it
    assert graph.kinds("host:h", "host:db") == ("admin_of",)
    assert graph.remove([("host:h", "host:db", "admin_of")]) == 1
    assert graph.blast_radius("user:a") == {"host:h": 1}
    assert graph.attack_paths(["user:a"], ["host:db"]) == []
