"""Attack paths and risk on a graph built from real telemetry (the APT29 day-1 Zeek logs,
through `vigil serve`) plus a CMDB export marking the crown jewel: the second workstation
NASHUA (10.0.1.6), named in the CMDB by its name. The path from the first compromised
workstation (10.0.1.4) goes over WinRM and reaches the CMDB's host through its address; the
user whose Kerberos tickets were used reaches it too; an incident on the crown jewel
outranks the same incident on an ordinary host."""

from __future__ import annotations

import pytest

from vigil.assets.context import AssetContext
from vigil.assets.graph import AccessGraph
from vigil.assets.importers import import_bytes
from vigil.assets.store import AssetStore
from vigil.config import Settings
from vigil.correlate import Correlator
from vigil.correlate.model import AlertIn
from vigil.serve.service import Service

CMDB = b"""hostname,ip,owner,criticality,exposure,segment
nashua,10.0.1.6,finance,crown-jewel,no,servers
scranton,10.0.1.4,it,low,yes,workstations
"""


def test_paths_blast_radius_and_ranking_on_real_telemetry(tmp_path, need_data) -> None:
    zeek = need_data("network", "otrf-apt29-zeek", "day1") / "zeek" / "individual_zeek_logs"
    settings = Settings.model_validate(
        {"data_dir": tmp_path, "indicators": False, "pipeline": {"workers": 0}}
    )
    service = Service(settings)
    service.start()
    try:
        service.feed([zeek])
        assert service.drain(120)
    finally:
        service.stop()
    store = AssetStore(service.engine)
    store.merge(import_bytes(CMDB, "cmdb.csv"))
    assert store.ids_where("crown_jewel") == ["host:nashua"]
    assert store.ids_where("internet_exposed") == ["host:scranton"]
    graph = AccessGraph.from_store(service.engine)

    (path,) = graph.attack_paths(store.ids_where("internet_exposed"), ["host:nashua"])
    assert path.nodes == (
        "host:scranton", "address:10.0.1.4", "host:10.0.1.4", "host:10.0.1.6",
        "address:10.0.1.6", "host:nashua",
    )  # fmt: skip
    assert ("flow",) in path.kinds  # the WinRM (and SMB, RPC, HTTP) flows of the movement
    reach = graph.blast_radius("user:dmevals\\pbeesly")
    assert reach["host:10.0.1.4"] == 1 and reach["host:10.0.1.6"] == 1
    assert reach["host:nashua"] == 3  # its tickets on NASHUA, then the CMDB's name for it
    assert "host:10.0.0.4" in reach  # and the domain controller it talks to
    assert graph.choke_points([path])[0][1] == 1

    def incident_on(host: str) -> float:
        correlator = Correlator(context=AssetContext(service.engine).points)
        for n, rule in enumerate(("winrm lateral movement", "credential dumping")):
            correlator.add(
                AlertIn(f"{host}-{n}", 1588206808.0 + n, rule, rule, "high",
                        entities=(("host", host), ("user", "dmevals\\pbeesly")))
            )  # fmt: skip
        (incident,) = correlator.incidents.values()
        return incident.risk

    # crown jewel: 3 points; the exposed workstation 0.5; the same alerts otherwise
    assert incident_on("nashua") == pytest.approx(incident_on("scranton") + 2.5)
    assert incident_on("nashua") > incident_on("scranton")
