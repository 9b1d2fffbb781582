"""The access graph's moves and queries: a logon opens the host to the user's credentials and
hands the host the user's session; a flow lets a host attack another; describing kinds
(runs, vulnerable_to) give no move; relationships seen again add nothing; the graph loaded
from the state database answers as the one built in memory."""

from __future__ import annotations

from vigil.assets import Inventory
from vigil.assets.graph import AccessGraph
from vigil.assets.store import AssetStore
from vigil.store import state_engine

RELATIONSHIPS = [
    ("user:alice", "host:ws1", "logon"),  # alice works on ws1
    ("user:admin", "host:ws1", "logon"),  # an admin logged on to ws1 once: a session there
    ("user:admin", "group:dbas", "member_of"),
    ("group:dbas", "host:db1", "admin_of"),
    ("host:ws1", "host:web1", "flow"),
    ("service:web1:tcp/443", "host:web1", "exposes"),  # stored host → service, read back
    ("host:db1", "software:postgresql@15.4", "runs"),
]


def _graph() -> AccessGraph:
    graph = AccessGraph()
    graph.add([(b, a, k) if k == "exposes" else (a, b, k) for a, b, k in RELATIONSHIPS])
    return graph


def test_a_phished_user_reaches_the_database_through_an_admins_session() -> None:
    graph = _graph()
    (path,) = graph.attack_paths(["user:alice"], ["host:db1"])
    assert path.nodes == ("user:alice", "host:ws1", "user:admin", "group:dbas", "host:db1")
    assert path.kinds == (("logon",), ("logon",), ("member_of",), ("admin_of",))
    assert graph.choke_points([path]) == [("group:dbas", 1), ("host:ws1", 1), ("user:admin", 1)]


def test_blast_radius_follows_moves_only() -> None:
    graph = _graph()
    reach = graph.blast_radius("user:alice")
    assert reach == {
        "host:ws1": 1, "user:admin": 2, "host:web1": 2, "group:dbas": 3, "host:db1": 4,
    }  # fmt: skip
    assert "software:postgresql@15.4" not in reach  # `runs` describes, it gives no move
    assert graph.blast_radius("user:alice", depth=2) == {
        "host:ws1": 1, "user:admin": 2, "host:web1": 2,
    }  # fmt: skip
    # an exposed service gives its host, not the other way round
    assert graph.blast_radius("service:web1:tcp/443") == {"host:web1": 1}
    assert graph.attack_paths(["host:db1"], ["user:alice"]) == []


def test_relationships_seen_again_add_nothing_and_the_store_gives_the_same_graph(tmp_path):
    graph = _graph()
    moves = len(graph)
    assert graph.add(RELATIONSHIPS[:3]) == 0 and len(graph) == moves
    inventory = Inventory("test")
    for a, b, kind in RELATIONSHIPS:
        src, dst = (b, a) if kind == "exposes" else (a, b)
        inventory.edge(kind, src, dst)
    engine = state_engine(tmp_path)
    AssetStore(engine).merge(inventory)
    loaded = AccessGraph.from_store(engine)
    assert len(loaded) == moves
    assert sorted(loaded.edges()) == sorted(graph.edges())
