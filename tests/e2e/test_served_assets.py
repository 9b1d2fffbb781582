"""Telemetry through `vigil serve` builds the inventory: the detect stage, which has the
events parsed, publishes what they show (`relationships`), and the assets stage merges it
into the state database and the access graph. On the APT29 day-1 Zeek logs, the Stratus
CloudTrail files and the evtx-to-mitre-attack Windows logs: the attacker's hosts, the user
whose tickets they used, the WinRM flow of the lateral movement, the roles assumed, an
admin's network logon; a restarted stage has the same graph."""

from __future__ import annotations

from vigil.assets.stage import AssetStage
from vigil.assets.store import AssetStore
from vigil.config import Settings
from vigil.serve.service import Service


def test_serve_builds_hosts_users_and_relationships_from_telemetry(tmp_path, need_data):
    zeek = need_data("network", "otrf-apt29-zeek", "day1") / "zeek" / "individual_zeek_logs"
    paths = [
        zeek,
        need_data("cloud", "stratus-red-team"),
        need_data("windows", "evtx-to-mitre-attack"),
    ]
    settings = Settings.model_validate(
        {"data_dir": tmp_path, "indicators": False, "pipeline": {"workers": 0}}
    )
    service = Service(settings)
    service.start()
    try:
        assert service.feed(paths) > 0
        assert service.drain(120)
        stage = service.runners["assets"].stage
        assert isinstance(stage, AssetStage)
        graph = stage.graph
    finally:
        service.stop()
    store = AssetStore(service.engine)
    host = store.node("host:10.0.1.4")
    assert host is not None and host["sources"] == ["telemetry"]  # in no inventory
    flows = {(e["dst"], e["attrs"].get("port")) for e in host["edges_out"] if e["kind"] == "flow"}
    assert {("host:10.0.1.6", 5985), ("host:192.168.0.5", 443)} <= flows
    user = store.node("user:dmevals\\pbeesly")
    assert user is not None
    assert {e["dst"] for e in user["edges_out"] if e["kind"] == "logon"} == {
        "host:10.0.1.4", "host:10.0.1.6",
    }  # fmt: skip
    role = "role:arn:aws:iam::457448411975:role/stratus-red-team-ec2-get-password-data-role"
    assumed = store.node(role)
    assert assumed is not None
    assert [e["src"] for e in assumed["edges_in"] if e["kind"] == "can_assume"] == [
        "user:arn:aws:iam::457448411975:user/christophe"
    ]
    # the Windows logs: a network logon of the migration admin on the vulnerable file server
    admin = store.node("user:offsec\\admmig")
    assert admin is not None
    logons = {(e["dst"], e["attrs"].get("logon_type")) for e in admin["edges_out"]
              if e["kind"] == "logon"}  # fmt: skip
    assert ("host:fs03vuln.offsec.lan", 3) in logons
    # the graph in memory, and the one a restarted stage loads, give the lateral movement
    (path,) = graph.attack_paths(["host:10.0.1.4"], ["host:10.0.1.6"])
    assert path.nodes == ("host:10.0.1.4", "host:10.0.1.6")
    restored = AssetStage(service.engine)
    assert restored.restore() == len(graph)
    assert restored.graph.attack_paths(["host:10.0.1.4"], ["host:10.0.1.6"]) == [path]
