"""The inventory over the API, on a real service: a scan and an IAM export imported (a
hostile XML refused with its reason), assets listed (managed or not) and shown (ARN ids
with slashes), the access graph answering at once for what was just imported, an incident's
entities given their asset context, and the risk register."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from vigil.api.auth import TokenStore
from vigil.assets import Inventory
from vigil.config import Settings
from vigil.correlate import AlertIn
from vigil.events.records import Alert, Detection
from vigil.serve.service import Service
from vigil.web.server import build_app

CMDB = b"hostname,ip,owner,criticality,exposure\ndb1,10.0.0.9,finance,crown-jewel,no\n"


@pytest.fixture
def client(tmp_path):
    service = Service(Settings(data_dir=tmp_path, indicators=False, starter_rules=False))
    token = TokenStore(service.engine).create("analyst", "test")[0]
    with TestClient(build_app(service)) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        yield client, service


def test_import_list_show_paths_and_incident_context(client, need_data) -> None:
    http, service = client
    nmap = need_data("asset_vuln", "nmap-xml-libnmap")
    done = http.post(
        "/api/v1/assets/import?name=2_hosts.xml", content=(nmap / "2_hosts.xml").read_bytes()
    )
    assert done.status_code == 200, done.text
    assert done.json()["format"] == "nmap" and done.json()["nodes_new"] > 2
    hostile = http.post("/api/v1/assets/import?name=x.xml",
                        content=(nmap / "defused_et_local_includer.xml").read_bytes())  # fmt: skip
    assert hostile.status_code == 400 and "entity/DTD tricks are refused" in hostile.text
    iam = need_data("asset_vuln", "aws-iam-authorization-details") / "example.json"
    assert http.post("/api/v1/assets/import?name=example.json", content=iam.read_bytes()).is_success
    assert http.post("/api/v1/assets/import?name=cmdb.csv", content=CMDB).is_success

    hosts = http.get("/api/v1/assets", params={"kind": "host", "limit": 1000}).json()
    assert "host:db1" in {h["id"] for h in hosts} and all(h["managed"] for h in hosts)
    (user,) = http.get("/api/v1/assets", params={"search": "user/privesc1-"}).json()
    shown = http.get(f"/api/v1/assets/{user['id']}").json()  # an ARN: slashes in the id
    assert shown["name"] == "privesc1-CreateNewPolicyVersion-user" and shown["edges_out"]
    assert http.get("/api/v1/assets/host:nowhere").status_code == 404

    # telemetry: a host seen only there is unmanaged; a logon makes a path to the jewel
    seen = Inventory("telemetry")
    stranger = seen.node("host", "10.0.0.66")
    seen.edge("has_address", stranger, seen.node("address", "10.0.0.66"))  # as discovery does
    seen.edge("flow", stranger, seen.node("address", "10.0.0.9"), port=5432)
    service.streams["relationships"].publish([seen.to_bytes()])  # as the detect stage does
    assert service.runners["assets"].drain(10)
    unmanaged = http.get("/api/v1/assets", params={"managed": "false", "kind": "host"}).json()
    assert [n["id"] for n in unmanaged] == ["host:10.0.0.66"]
    service.import_assets(b"hostname,ip,exposure\ngw,10.0.0.66,yes\n", "gw.csv")
    paths = http.get("/api/v1/assets/paths").json()
    assert paths["to"] == ["host:db1"] and paths["paths"][0]["nodes"][-1] == "host:db1"
    reach = http.get("/api/v1/assets/blast-radius", params={"node": "host:gw"}).json()
    assert reach["moves"]["host:db1"] == 4  # gw → its address → 10.0.0.66 → db1's → db1

    (incident,) = service.incidents.feed(
        [AlertIn("a1", 1.0e9, "r", "r", "high", entities=(("host", "db1"),))]
    )
    detail = http.get(f"/api/v1/incidents/{incident.id}").json()
    assert detail["assets"]["host:db1"] == {
        "asset": "host:db1", "managed": True, "criticality": "critical", "crown_jewel": True,
        "owner": "finance", "internet_exposed": False,
    }  # fmt: skip
    detection = Detection("sigma", "r1", "Whoami", "high", "test", (), 1.0e9, None, "DB1",
                          "test", 1, {}, {}, "2026-12-03T00:00:00Z")  # fmt: skip
    service.alert_store.add([Alert("al-1", detection)])
    alert = http.get("/api/v1/alerts/al-1").json()
    assert alert["assets"]["host:db1"]["crown_jewel"] is True  # the host's name, any case
    risk = http.get("/api/v1/risk").json()
    assert risk["assets"][0]["score"] >= risk["assets"][-1]["score"] and risk["roadmap"]
    assert any(a.startswith("can make itself administrator") for r in risk["assets"]
               for a in r["reasons"])  # fmt: skip
    privesc = http.get("/api/v1/assets/privesc", params={"principal": "user/privesc1-"}).json()
    assert [f["method"] for f in privesc["findings"]] == ["CreateNewPolicyVersion"]
