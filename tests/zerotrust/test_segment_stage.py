"""Segment conformance as a stage: the detect stage publishes the connections events record
(`flows`), the segments stage checks them against the policy in force and makes each flow it
does not allow a lateral-movement alert, stored and published on `alerts`, which correlation
takes into an incident like any other.

The end-to-end test serves the APT29 day-1 Zeek conn logs (OTRF; see test_segments_apt29 for
the data and the hand counts) with the policy learned from their first half in force: every
flow the policy denies is alerted on (each distinct connection once, though both sensors
logged many of them), among them the lateral movement SCRANTON → NASHUA, and the incident
holding both workstations carries the lateral-movement tactic. Replayed, the logs make no
alert twice."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_segments_apt29 import NASHUA, SCRANTON, SEGMENTS  # the same data, the same segments

from vigil.config import Settings
from vigil.events.flows import Flow, flow_of, flows_of_record, flows_record
from vigil.events.records import Alert
from vigil.ingest import FileReport, discover, read_events
from vigil.serve.service import Service
from vigil.store import state_engine
from vigil.store.alerts import AlertStore
from vigil.store.stages import StageStateStore
from vigil.zerotrust import inventory
from vigil.zerotrust.segments import (
    Segments,
    check,
    distinct,
    learn,
    read_flows,
    split_by_time,
)
from vigil.zerotrust.stage import SegmentStage

POLICY = """
segments:
  - {name: users, cidrs: [10.0.1.0/24], intra: deny}
  - {name: servers, cidrs: [10.0.0.0/24]}
flows:
  - {src: users, dst: servers, protocol: tcp, ports: [443]}
"""


def five(flow: Flow) -> tuple[object, ...]:
    return (flow.src, flow.src_port, flow.dst, flow.port, flow.protocol)


def segmentation_alerts(service: Service) -> list[dict[str, Any]]:
    return AlertStore(service.engine).list(kind="segmentation", limit=100_000)


def test_served_flows_outside_the_policy_become_lateral_movement_incidents(
    tmp_path: Path, need_data: Callable[..., Path]
) -> None:
    folder = need_data("network", "otrf-apt29-zeek") / "day1" / "zeek" / "individual_zeek_logs"
    logs = sorted(folder.glob("*_conn.log"))
    flows = [flow for path in logs for flow in read_flows(path)]
    segments = Segments(SEGMENTS)
    policy = learn(split_by_time(flows)[0], segments)
    in_force = tmp_path / "segments.yml"
    in_force.write_text(policy.to_yaml())
    denied = {five(v.flow) for v in check(flows, policy, segments)}
    # 485 records denied; 437 once the second sensor's copies (within a second) are left out
    assert len(list(check(flows, policy, segments))) == 485
    assert len(list(check(distinct(flows), policy, segments))) == 437
    lateral = {five(f) for f in flows if (f.src, f.dst) == (SCRANTON, NASHUA)}
    assert len(lateral) == 30 and lateral <= denied  # 88 records, both sensors

    settings = Settings.model_validate(
        {
            "data_dir": tmp_path / "data",
            "indicators": False,
            "starter_rules": False,
            "pipeline": {"workers": 0},
            "zerotrust": {"segments": str(in_force), "violation_level": "high"},
        }
    )
    service = Service(settings)
    service.start()
    try:
        assert service.feed(logs) > 0
        assert service.drain(120)
        alerts = segmentation_alerts(service)
        stage = service.runners["segments"].stage
        assert isinstance(stage, SegmentStage)
        assert stage.figures()["problem"] is None and stage.violations == len(alerts)
        # a replay: the same flows make the same alerts, none new
        assert service.feed(logs) > 0
        assert service.drain(120)
        assert len(segmentation_alerts(service)) == len(alerts)
        incidents = service.incident_store.ranked(limit=1000)
    finally:
        service.stop()

    alerted = {
        tuple(a["event"][k] for k in ("source.ip", "source.port", "destination.ip",
                                      "destination.port", "network.transport"))
        for a in alerts
    }  # fmt: skip
    assert alerted == denied  # every distinct denied connection, and nothing else
    assert len(alerts) == 437  # each connection once, though both sensors logged most of them
    assert {a["level"] for a in alerts} == {"high"}
    assert all(a["tags"] == ["attack.lateral-movement", "attack.t1021"] for a in alerts)
    winrm = [a for a in alerts if a["event"]["destination.port"] == 5985]
    assert winrm and {a["rule_title"] for a in winrm} == {
        "Flow outside the segment policy: workstations → workstations tcp/5985"
    }
    # correlation took them up: the workstations' incident has the lateral movement
    (incident,) = incidents  # one: the flows share their addresses
    assert {f"ip:{SCRANTON}", f"ip:{NASHUA}", "ip:192.168.0.4"} <= set(incident["entities"])
    assert incident["tactics"] == ["lateral-movement"]


def test_a_promoted_policy_applies_from_the_next_batch_and_a_broken_one_is_refused(
    tmp_path: Path,
) -> None:
    in_force = tmp_path / "segments.yml"
    in_force.write_text(POLICY)
    kept: list[Alert] = []
    published: list[Alert] = []
    stage = SegmentStage(in_force, kept.extend, published.extend)
    stage.restore()
    ssh = Flow("10.0.1.5", "10.0.0.9", "tcp", 22, 100.0, "C1", 50000)
    stage.process([(0, flows_record([ssh]))])
    assert len(kept) == len(published) == 1
    assert published[0].raised and published[0].detection.details["reason"] == (
        "no rule allows users → servers tcp/22"
    )

    in_force.write_text(POLICY + "  - {src: users, dst: servers, protocol: tcp, ports: [22]}\n")
    later = Flow("10.0.1.5", "10.0.0.9", "tcp", 22, 200.0, "C2", 50001)
    stage.process([(1, flows_record([later]))])
    assert len(kept) == 1  # allowed now

    in_force.write_text("segments: [{name: users, cidrs: [not-a-network]}]\n")
    time.sleep(0.01)
    stage.process([(2, flows_record([Flow("10.0.1.5", "10.0.1.6", "tcp", 445, 300.0)]))])
    assert "not-a-network" in stage.figures()["problem"]
    assert len(kept) == 2  # the last good policy still decides (intra: deny)

    with pytest.raises(ValueError, match="not a flows record"):
        stage.process([(3, b'{"not": "flows"}')])  # the runner sets such a record aside


def test_flows_of_real_sysmon_and_zeek_events() -> None:
    """Sysmon network connections (EventID 3) from OTRF's PowerShell-remoting recording, and
    Zeek conn records read as events, give the same flows as the conn log read directly."""
    root = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if not root.is_dir():
        pytest.skip(f"no {root}: the shared data is needed")
    recording = root / "windows" / "otrf-security-datasets" / "lateral_movement" / "host"
    (source,) = discover(sorted(recording.glob("covenant_psremoting_command.zip")))
    events = [e for batch in read_events(source, FileReport("t")) for e in batch]
    flows = [f for f in map(flow_of, events) if f is not None]
    assert len(flows) == 55  # every Sysmon EventID 3 of the recording, nothing else
    assert any(f.port == 5985 and f.protocol == "tcp" for f in flows)  # the WinRM session
    assert all(f.host for f in flows)
    assert flows_of_record(flows_record(flows)) == flows

    conn = root / "network" / "otrf-apt29-zeek" / "day1" / "zeek" / "individual_zeek_logs"
    path = conn / "SCRANTON_conn.log"
    (zeek,) = discover([path])
    as_events = [f for b in read_events(zeek, FileReport("z")) for f in map(flow_of, b) if f]
    assert [(*five(f), f.time, f.uid) for f in as_events] == [
        (*five(f), f.time, f.uid) for f in read_flows(path)
    ]


def test_a_segment_given_by_tag_holds_the_inventorys_tagged_hosts(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {"data_dir": tmp_path / "data", "indicators": False, "starter_rules": False}
    )
    service = Service(settings)
    service.import_assets(
        b"hostname,ip,tags\npay-db,10.9.0.5,pci;prod\npay-app,10.9.1.7 10.9.1.8,pci\n"
        b"wiki,10.9.2.2,prod\n",
        "cmdb.csv",
    )
    tagged = inventory.tagged_addresses(service.asset_store)
    assert {tag: sorted(found) for tag, found in tagged.items()} == {
        "pci": ["10.9.0.5", "10.9.1.7", "10.9.1.8"],
        "prod": ["10.9.0.5", "10.9.2.2"],
    }
    in_force = tmp_path / "segments.yml"
    in_force.write_text(
        "segments:\n  - {name: cde, tags: [pci]}\n  - {name: corp, cidrs: [10.9.0.0/16]}\n"
        "flows:\n  - {src: corp, dst: cde, protocol: tcp, ports: [443]}\n"
    )
    kept: list[Alert] = []
    stage = SegmentStage(in_force, kept.extend, lambda _: None, tags=lambda: tagged)
    stage.restore()
    stage.process([(0, flows_record([
        Flow("10.9.2.2", "10.9.1.8", "tcp", 443, 1.0),  # corp → cde https: allowed
        Flow("10.9.2.2", "10.9.0.5", "tcp", 5432, 2.0),  # corp → cde postgres: not
        Flow("10.9.2.2", "10.9.3.3", "tcp", 5432, 3.0),  # inside corp: not ruled, allowed
    ]))])  # fmt: skip
    assert [a.detection.details["dst_segment"] for a in kept] == ["cde"]
    assert kept[0].detection.event["destination.ip"] == "10.9.0.5"


def test_a_staged_policy_counts_what_it_would_block_across_a_restart(tmp_path: Path) -> None:
    """Run beside the policy in force (none here), a proposed policy raises no alert: it
    counts what it would block by segment pair, protocol and port; the count is kept in the
    state database and taken up again after a restart; a new proposal starts a new count."""
    staged = tmp_path / "proposed.yml"
    staged.write_text(POLICY)
    state = StageStateStore(state_engine(tmp_path))
    kept: list[Alert] = []

    def running() -> SegmentStage:
        stage = SegmentStage(None, kept.extend, kept.extend, staged=staged, state=state)
        stage.restore()
        return stage

    first = running()
    first.process(
        [
            (
                0,
                flows_record(
                    [
                        Flow("10.0.1.5", "10.0.0.9", "tcp", 443, 1.0),  # allowed
                        Flow("10.0.1.5", "10.0.0.9", "tcp", 22, 2.0, "C1"),
                        Flow("10.0.1.7", "10.0.0.9", "tcp", 22, 3.0, "C2"),
                    ]
                ),
            )
        ]
    )
    again = running()  # a restart
    again.process([(1, flows_record([Flow("10.0.1.5", "10.0.1.6", "tcp", 445, 4.0, "C3")]))])
    shown = again.figures()["staged"]
    assert kept == []  # staged: nothing alerted on
    assert (shown["flows"], shown["blocked"]) == (4, 3)
    assert [
        (w["src_segment"], w["dst_segment"], w["port"], w["count"]) for w in shown["would_block"]
    ] == [("users", "servers", 22, 2), ("users", "users", 445, 1)]
    assert [e["uid"] for e in shown["would_block"][0]["examples"]] == ["C1", "C2"]
    assert shown["sha256"] == hashlib.sha256(staged.read_bytes()).hexdigest()

    staged.write_text(POLICY + "  - {src: users, dst: servers, protocol: tcp, ports: [22]}\n")
    again.process([(2, flows_record([Flow("10.0.1.5", "10.0.0.9", "tcp", 22, 9.0)]))])
    assert (again.figures()["staged"]["flows"], again.figures()["staged"]["blocked"]) == (1, 0)


def test_a_batch_that_failed_is_checked_again_whole(tmp_path: Path) -> None:
    """The alert store refuses once: the runner hands the batch again, and its flows are not
    taken for copies of themselves."""
    in_force = tmp_path / "segments.yml"
    in_force.write_text(POLICY)
    kept: list[Alert] = []
    refusals = [OSError("database is locked")]

    def keep(alerts: list[Alert]) -> None:
        if refusals:
            raise refusals.pop()
        kept.extend(alerts)

    stage = SegmentStage(in_force, keep, lambda _: None)
    stage.restore()
    batch = [(0, flows_record([Flow("10.0.1.5", "10.0.0.9", "tcp", 22, 100.0, "C1")]))]
    with pytest.raises(OSError):
        stage.process(batch)
    stage.process(batch)
    assert len(kept) == 1 and stage.figures()["violations"] == 1


def test_tags_in_conflict_leave_the_cidrs_in_force(tmp_path: Path) -> None:
    in_force = tmp_path / "segments.yml"
    in_force.write_text(
        "segments:\n  - {name: users, cidrs: [10.0.1.0/24], intra: deny}\n"
        "  - {name: cde, tags: [pci]}\n  - {name: prod, tags: [prod]}\n"
    )
    tagged = {"pci": ["10.9.0.5"], "prod": ["10.9.0.5"]}  # one host in two segments
    kept: list[Alert] = []
    stage = SegmentStage(in_force, kept.extend, lambda _: None, tags=lambda: tagged)
    stage.restore()
    assert "segments by tag left empty" in stage.figures()["problem"]
    stage.process([(0, flows_record([Flow("10.0.1.5", "10.0.1.6", "tcp", 445, 1.0)]))])
    assert len(kept) == 1  # the CIDR segments still decide
