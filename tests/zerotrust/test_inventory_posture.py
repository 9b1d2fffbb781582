"""The inventory decides too: a CMDB import tags a server `finance-app` and names a managed
workstation; the decision point, loaded from the inventory, allows finance users onto the
tagged server from the managed workstation only, and an asset tagged later is known on the
next load, which passes on only what changed."""

from __future__ import annotations

from typing import Any

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


def _result(name: str, host: str, rows: list[dict[str, str]]) -> str:
    """An osqueryd snapshot result line, as its filesystem logger writes it."""
    import json

    return json.dumps(
        {
            "snapshot": rows,
            "action": "snapshot",
            "name": name,
            "hostIdentifier": host,
            "calendarTime": "Fri Mar 15 10:00:00 2024 UTC",
            "unixTime": "1710496800",
            "epoch": "0",
            "counter": "0",
            "numerics": False,
        }
    )


OSQUERY = "\n".join(
    [
        _result(
            "pack_posture_bitlocker_info",
            "WIN-A",
            [
                {
                    "device_id": "\\\\?\\Volume{1}",
                    "drive_letter": "C:",
                    "persistent_volume_id": "",
                    "conversion_status": "1",
                    "protection_status": "1",
                },
                {
                    "device_id": "\\\\?\\Volume{2}",
                    "drive_letter": "D:",
                    "persistent_volume_id": "",
                    "conversion_status": "0",
                    "protection_status": "0",
                },
            ],
        ),
        _result(
            "windows_security_products",
            "WIN-A",
            [
                {
                    "type": "Firewall",
                    "name": "Windows Firewall",
                    "state": "On",
                    "signatures_up_to_date": "1",
                },
                {
                    "type": "Antivirus",
                    "name": "Windows Defender",
                    "state": "On",
                    "signatures_up_to_date": "1",
                },
            ],
        ),
        _result(
            "patches",
            "WIN-A",
            [
                {"csname": "WIN-A", "hotfix_id": "KB5035845", "installed_on": "3/12/2024"},
                {"csname": "WIN-A", "hotfix_id": "KB5034441", "installed_on": "1/9/2024"},
            ],
        ),
        _result(
            "bitlocker_info",
            "WIN-B",
            [
                {"drive_letter": "C:", "conversion_status": "0", "protection_status": "0"},
            ],
        ),
        _result(
            "windows_security_products",
            "WIN-B",
            [
                {"type": "Antivirus", "name": "Windows Defender", "state": "Off"},
            ],
        ),
        _result(
            "windows_update_history",
            "WIN-B",
            [
                {
                    "date": "1704067200",
                    "operation": "Installation",
                    "result_code": "Succeeded",
                    "title": "2024-01 Cumulative Update",
                },
                {
                    "date": "1709251200",
                    "operation": "Installation",
                    "result_code": "Failed",
                    "title": "2024-03 Cumulative Update",
                },
            ],
        ),
        _result(
            "disk_encryption",
            "lnx1",
            [
                {
                    "name": "/dev/sda1",
                    "uuid": "",
                    "encrypted": "0",
                    "type": "",
                    "encryption_status": "not encrypted",
                },
                {
                    "name": "/dev/dm-0",
                    "uuid": "2a5c",
                    "encrypted": "1",
                    "type": "LUKS2-aes-xts-plain64",
                    "encryption_status": "encrypted",
                },
            ],
        ),
    ]
)


MARCH_20 = 1710892800.0  # 2024-03-20, when the postures below are decided


def imported(tmp_path, data: bytes, name: str) -> tuple[AssetStore, Any, dict[str, Any]]:
    """An import into a fresh inventory: the store, the import, each host's posture."""
    store = AssetStore(state_engine(tmp_path))
    found = import_bytes(data, name)
    store.merge(found)
    hosts = store.nodes(kind="host")
    return store, found, {n["name"]: inventory.posture_of(n, now=MARCH_20) for n in hosts}


def test_posture_from_osquery_decides_access(tmp_path) -> None:
    """BitLocker on the system drive, Windows Security Center's antivirus and the last patch
    from osquery; a policy asking for all three allows only the host that has them."""
    store, _, postures = imported(tmp_path, OSQUERY.encode(), "osqueryd.results.log")
    assert postures == {
        "WIN-A": {"managed": True, "disk_encrypted": True, "edr": True, "patch_age_days": 8},
        "WIN-B": {"managed": True, "disk_encrypted": False, "edr": False, "patch_age_days": 79},
        "lnx1": {"managed": True, "disk_encrypted": True},
    }
    assert store.node("host:win-a")["attrs"]["edr_product"] == "Windows Defender"
    knowledge = Knowledge()
    for name, posture in postures.items():
        knowledge.set_device(name.lower(), posture)
    knowledge.set_resource("payroll", frozenset({"finance-app"}), None)
    pdp = DecisionPoint(
        parse(
            {
                "policies": [
                    {
                        "id": "strict",
                        "subjects": {"groups": ["finance"]},
                        "resources": {"tags": ["finance-app"]},
                        "when": {
                            "device": {
                                "disk_encrypted": True,
                                "edr": True,
                                "max_patch_age_days": 30,
                            }
                        },
                    }
                ]
            },
            "p",
        ),
        knowledge,
    )

    def outcome(device: str) -> tuple[str, tuple[str, ...]]:
        found = pdp.decide(AccessRequest("bob", "read", "payroll", ("finance",), device=device))
        return found.outcome, found.reasons

    assert outcome("win-a")[0] == "allow"
    refused, why = outcome("win-b")
    assert refused == "deny" and "device win-b: disk encrypted is not True" in " ".join(why)
    assert outcome("lnx1")[0] == "deny"  # no EDR or patch age known: not shown compliant


def test_posture_from_a_cmdb_export(tmp_path) -> None:
    store, report, postures = imported(
        tmp_path,
        b"hostname,ip,bitlocker,edr_agent,last_patched,patch_age\n"
        b"ws1,10.0.1.1,Enabled,CrowdStrike Falcon,2024-03-12,\n"
        b"ws2,10.0.1.2,no,none,,45\n"
        b"ws3,10.0.1.3,maybe,yes,last tuesday,soon\n"
        b"ws4,10.0.1.4,yes,Not running,2099-01-01,\n",
        "cmdb.csv",
    )
    assert postures == {
        "ws1": {"managed": True, "disk_encrypted": True, "edr": True, "patch_age_days": 8},
        "ws2": {"managed": True, "disk_encrypted": False, "edr": False, "patch_age_days": 45},
        "ws3": {"managed": True, "edr": True},
        "ws4": {"managed": True, "disk_encrypted": True, "edr": False},  # no date ahead
    }
    assert store.node("host:ws1")["attrs"]["edr_product"] == "CrowdStrike Falcon"
    warned = " ".join(w.reason for w in report.report.warnings)
    assert "'maybe' is not yes or no" in warned and "'last tuesday' is not a date" in warned
    assert "'soon' is not a number of days" in warned and "'2099-01-01' is not a date" in warned


def test_osquery_posture_is_the_latest_state_not_the_sum_of_results(tmp_path) -> None:
    """Results folded in time order, whatever the file's order: Defender turned off after it
    was on is off; an uninstallation, antivirus definitions and a date in the future are no
    patch."""
    import json

    def diff(name: str, when: int, added: list[dict[str, str]], removed: list[dict[str, str]]):
        return json.dumps(
            {
                "diffResults": {"added": added, "removed": removed},
                "name": name,
                "hostIdentifier": "WIN-C",
                "unixTime": str(when),
                "epoch": "0",
                "counter": "1",
                "numerics": False,
            }
        )

    on = {"type": "Antivirus", "name": "Windows Defender", "state": "On"}
    off = {**on, "state": "Off"}
    update = {"operation": "Installation", "result_code": "Succeeded"}
    log = "\n".join(
        [
            diff("windows_security_products", 1710500000, [off], [on]),  # later, read first
            diff("windows_security_products", 1710400000, [on], []),
            diff(
                "windows_update_history",
                1710500000,
                [
                    {
                        **update,
                        "update_id": "a",
                        "date": "1709856000",
                        "title": "2024-03 Cumulative",
                    },
                    {
                        **update,
                        "update_id": "b",
                        "date": "1710201600",
                        "operation": "Uninstallation",
                        "title": "2024-03 Cumulative",
                    },
                    {
                        **update,
                        "update_id": "c",
                        "date": "1710460800",
                        "title": "Security Intelligence Update for Microsoft Defender "
                        "Antivirus - KB2267602",
                    },
                    {
                        **update,
                        "update_id": "d",
                        "date": "1893456000",
                        "title": "2030-01 Cumulative",
                    },
                ],
                [],
            ),
        ]
    )
    _, _, postures = imported(tmp_path, log.encode(), "osqueryd.results.log")
    assert postures == {"WIN-C": {"managed": True, "edr": False, "patch_age_days": 12}}
