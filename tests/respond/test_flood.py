"""An alert flood does not turn into a flood of actions: 10,000 threat-intelligence hits, one
per address of Maltrail's mass-scanner list, each asking the shipped block playbook to block
its address, while credential dumping is seen on a domain controller that the inventory
calls a crown jewel. The storm guard holds every run past the playbook's rate for approval,
the per-action rate limit holds the blocks past it, the domain controller is never isolated
without approval, and every run, hold and action is in the audit chain."""

from __future__ import annotations

import ipaddress
import time
from collections import Counter

from sqlalchemy import func, select

from vigil.assets.importers import import_bytes
from vigil.assets.store import AssetStore
from vigil.config import RespondSettings
from vigil.correlate.store import IncidentStore
from vigil.events.records import Alert, Detection
from vigil.respond.audit import AuditLog
from vigil.respond.engine import Responder
from vigil.store import state_engine
from vigil.store.tables import run_step_table, run_table

FLOOD = 10_000


def addresses(need_data) -> list[str]:
    listed = need_data("threat_intel", "maltrail-subset", "mass_scanner.txt")
    found = []
    for line in listed.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        try:
            if ipaddress.ip_address(text).is_global:
                found.append(text)
        except ValueError:
            continue
    return list(dict.fromkeys(found))[:FLOOD]


def indicator_hit(n: int, address: str) -> Alert:
    detection = Detection(
        "indicator",
        f"indicator:{n:016x}",
        f"Indicator ipv4 {address}",
        "medium",
        "stable",
        ("intel", "intel.mass-scanner"),
        time.time(),
        None,
        "gw1",
        "conn.log",
        n,
        {"id.orig_h": address},
        {"id.orig_h": address, "id.resp_h": "192.0.2.10"},
        "now",
        details={"indicator": {"type": "ipv4", "value": address}},
    )
    return Alert(f"hit-{n}", detection, (("host", "gw1"), ("ip", address)), raised=time.time())


def dumping_on(host: str) -> Alert:
    detection = Detection(
        "sigma",
        "536eb874-cabe-5002-95d2-c5188fc308b3",
        "Process Opens LSASS With Memory Read Access",
        "high",
        "test",
        ("attack.credential-access", "attack.t1003.001"),
        time.time(),
        None,
        host,
        "sysmon.evtx",
        1,
        {},
        {"TargetImage": "lsass.exe"},
        "now",
    )
    return Alert(f"dump-{host}", detection, (("host", host),), raised=time.time())


def test_a_flood_of_block_requests_is_held_and_a_crown_jewel_never_isolated(
    tmp_path, need_data
) -> None:
    listed = addresses(need_data)
    assert len(listed) == FLOOD
    engine = state_engine(tmp_path)
    assets = AssetStore(engine)
    assets.merge(import_bytes(b"hostname,ip,criticality\ndc1,192.0.2.5,crown-jewel\n", "cmdb.csv"))
    settings = RespondSettings.model_validate({"firewall": {"hosts": {"dc1": []}}})
    responder = Responder(engine, settings, IncidentStore(engine), assets=assets)
    started = responder.on_alerts([dumping_on("dc1")])
    started += responder.on_alerts([indicator_hit(n, a) for n, a in enumerate(listed)])
    assert len(started) == FLOOD + 1
    responder.start()
    try:
        assert responder.idle(120)
    finally:
        responder.stop()

    with engine.connect() as conn:
        runs = Counter(
            dict(
                conn.execute(
                    select(run_table.c.state, func.count()).group_by(run_table.c.state)
                ).all()
            )
        )
        steps = Counter(conn.execute(select(run_step_table.c.action, run_step_table.c.state)).all())
    amount = 100  # runs of one playbook a minute (guardrails runs)
    assert runs["held"] == FLOOD - (amount - 0), runs  # the storm: held before starting
    blocked = steps[("firewall.block", "done")]
    assert blocked == 30, steps  # the block rate (30 a minute), not one more
    assert steps[("firewall.block", "waiting")] == amount - 30
    assert steps[("firewall.isolate", "waiting")] == 1  # the crown jewel waits for a person
    assert ("firewall.isolate", "done") not in steps
    [held] = [p for p in responder.pending() if p["action"] == "firewall.isolate"]
    assert "dc1 is a crown jewel" in held["approval_reason"]
    assert all(
        "rate limit of firewall.block" in p["approval_reason"]
        for p in responder.pending()
        if p["action"] == "firewall.block"
    )

    log = AuditLog(engine)
    said = Counter(e["action"] for e in log.entries())
    assert said["run.created"] + said["run.held"] == FLOOD + 1
    assert said["run.held"] == runs["held"]
    assert said["approval.requested"] == amount - 30 + 1
    assert said["action.done"] == blocked
    assert log.verify().ok
