"""The inventory decides too: a CMDB import tags a server `finance-app` and names a managed
workstation; the decision point, loaded from the inventory, allows finance users onto the
tagged server from the managed workstation only, and an asset tagged later is known on the
next load, which passes on only what changed."""

from __future__ import annotations

from vigil.assets.importers import import_bytes
from vigil.assets.store import AssetStore
from vigil.store import state_engine
from vigil.zerotrust import inventory
from vigil.zerotrust.pdp import DecisionPoint, Knowledge
from vigil.zerotrust.policy import AccessRequest, parse

CMDB = b"hostname,ip,owner,tags\npay1,10.0.0.7,finance,finance-app\nws7,10.0.1.7,alice,\n"
POLICY = parse(
    {
        "policies": [
            {
                "id": "finance",
                "subjects": {"groups": ["finance"]},
                "resources": {"tags": ["finance-app"]},
                "when": {"device": {"managed": True}},
            }
        ]
    },
    "p",
)


def test_posture_and_tags_come_from_the_inventory(tmp_path) -> None:
    store = AssetStore(state_engine(tmp_path))
    store.merge(import_bytes(CMDB, "cmdb.csv"))
    knowledge = Knowledge()
    assert inventory.load(knowledge, store) >= 2
    pdp = DecisionPoint(POLICY, knowledge)
    ask = AccessRequest("alice", "read", "pay1", groups=("finance",), device="ws7")
    assert pdp.decide(ask).outcome == "allow"
    unknown = pdp.decide(
        AccessRequest("alice", "read", "pay1", groups=("finance",), device="laptop-x")
    )
    assert unknown.outcome == "deny" and "not in the inventory" in unknown.reasons[0]
    assert (
        pdp.decide(AccessRequest("alice", "read", "ws7", groups=("finance",), device="ws7")).outcome
        == "deny"
    )
    assert inventory.load(knowledge, store) == 0  # nothing changed: nothing passed on
    store.merge(import_bytes(b"hostname,ip,tags\nws7,10.0.1.7,finance-app\n", "more.csv"))
    assert inventory.load(knowledge, store) >= 1
    assert (
        pdp.decide(AccessRequest("alice", "read", "ws7", groups=("finance",), device="ws7")).outcome
        == "allow"
    )


def test_a_device_falling_out_of_compliance_is_announced(tmp_path) -> None:
    from vigil.assets.model import Inventory

    store = AssetStore(state_engine(tmp_path))
    first = Inventory("osquery")
    first.node("host", "ws7", name="ws7", edr=True, disk_encrypted=True)
    store.merge(first)
    knowledge = Knowledge()
    told: list[tuple[str, bool, bool]] = []
    inventory.load(knowledge, store, lambda *change: told.append(change))
    assert told == []  # first seen: nothing changed
    later = Inventory("osquery")
    later.node("host", "ws7", name="ws7", edr=False, disk_encrypted=True)  # EDR stopped
    store.merge(later)
    inventory.load(knowledge, store, lambda *change: told.append(change))
    assert told == [("ws7", True, False)]
    assert knowledge.devices["ws7"]["edr"] is False
