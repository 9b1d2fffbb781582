"""Acceptance (issue 17, item 5): learn a segment policy from the first half of the APT29 day 1
Zeek conn logs (OTRF Security-Datasets), check the second half, and say which violations are
the emulated attack. Every figure below was counted by hand from the data.

The data: `day1/zeek/individual_zeek_logs/{NASHUA,SCRANTON}_conn.log`, Zeek JSON lines from two
sensors, 613 records over 38 minutes (`combined_zeek.log.gz` holds the same 613). Hosts: the
domain controller NEWYORK 10.0.0.4, the workstations SCRANTON 10.0.1.4 and NASHUA 10.0.1.6 (and
their broadcast 10.0.1.255), and the attacker's servers 192.168.0.4 and 192.168.0.5.

Segments, from the /24s seen: `servers` 10.0.0.0/24 (the DC), `workstations` 10.0.1.0/24, and
`internet` 0.0.0.0/0 for the rest (longest prefix: the two /24s win over it). Learning
denies traffic inside a segment unless learned, so workstation-to-workstation traffic (the
lateral movement) is a violation unless it was normal before.

First half (ts < 1588206349.83, the midpoint of the span): 43 records. Learned, with the
defaults (kept when seen 3 times or from 2 sources): workstations → servers tcp 88, 135, 389,
445, 49667 and udp 53, 123, 389; workstations → workstations udp 138 (NetBIOS datagrams).
The attack's first flows fall in this half too (SCRANTON → 192.168.0.5 tcp/1234, step 1.A, the
Pupy port of the plan; tcp/443 twice, step 3.B) but are too rare to be learned.

Second half: 570 records, 482 violations (522 flows and 434 violations once the second
sensor's copies are removed). Ground truth: `labels.jsonl` labels the conn logs only at the
scenario level ("no per-flow labels") and names the emulation plan as ground truth; the plan
(apt29_emulation_plan.xlsx) has the attack talk to the attacker's servers (C2, exfiltration)
and move laterally from SCRANTON to NASHUA (8.A WinRM, 8.B/8.C upload and PsExec). By that
attribution 480 of the 482 are the attack:
  - NASHUA → 192.168.0.4 tcp/8443: 376 (8.C/9: the second Meterpreter's C2, port 8443)
  - SCRANTON → 192.168.0.4 tcp/445 and 139 (refused) then tcp/80: 16 (7.B exfiltration to
    the attacker's WebDAV share, 8.B payload download)
  - SCRANTON → NASHUA: 88 (tcp/5985 8, tcp/445 30, tcp/135 8, tcp/55121 36, tcp/80 6),
    the lateral movement, every one of them caught.
The other 2 are benign: NetBIOS name queries to 10.0.1.255 udp/137, seen first after the
learning window (a false positive the staged run shows before promotion).
"""

from __future__ import annotations

import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vigil.events.flows import Flow
from vigil.zerotrust.segments import (
    Rule,
    Segment,
    Segments,
    check,
    distinct,
    learn,
    read_flows,
    split_by_time,
    stage,
    to_alert,
)

SEGMENTS = [
    Segment("servers", ("10.0.0.0/24",)),
    Segment("workstations", ("10.0.1.0/24",)),
    Segment("internet", ("0.0.0.0/0",)),
]
SCRANTON, NASHUA, ATTACKER = "10.0.1.4", "10.0.1.6", "192.168.0."


def lateral(flow: Flow) -> bool:
    return flow.src == SCRANTON and flow.dst == NASHUA


def attack(flow: Flow) -> bool:
    """The emulation plan's attack traffic: to the attacker's servers, or SCRANTON → NASHUA."""
    return lateral(flow) or flow.dst.startswith(ATTACKER) or flow.src.startswith(ATTACKER)


def test_learned_policy_catches_the_apt29_lateral_movement(
    need_data: Callable[..., Path], labels_of: Callable[[Path], list[dict[str, Any]]]
) -> None:
    folder = need_data("network", "otrf-apt29-zeek")
    logs = sorted((folder / "day1" / "zeek" / "individual_zeek_logs").glob("*_conn.log"))
    assert [p.name for p in logs] == ["NASHUA_conn.log", "SCRANTON_conn.log"]
    flows = [flow for path in logs for flow in read_flows(path)]
    assert len(flows) == 613
    combined = list(read_flows(folder / "day1" / "zeek" / "combined_zeek.log.gz"))
    assert sorted(combined, key=repr) == sorted(flows, key=repr)

    # the ground truth: scenario-level labels, and the plan they point to
    labels = {row["file"]: row for row in labels_of(folder)}
    for path in logs:
        kind = labels[f"day1/zeek/individual_zeek_logs/{path.name}"]["label_type"]
        assert kind.startswith("scenario-level") and "no per-flow labels" in kind
    assert labels["apt29_emulation_plan.xlsx"]["label_type"] == "ground-truth emulation plan"
    with zipfile.ZipFile(folder / "apt29_emulation_plan.xlsx") as plan:
        text = plan.read("xl/sharedStrings.xml").decode()
    for needle in ("Lateral Movement", "10.0.1.4", "10.0.1.6", "192.168.0.4", "8443",
                   "Windows Remote Management", "PsExec"):  # fmt: skip
        assert needle in text

    segments = Segments(SEGMENTS)
    first, second = split_by_time(flows)
    assert (len(first), len(second)) == (43, 570)
    policy = learn(first, segments)
    assert policy.rules == (
        Rule("workstations", "servers", "tcp", ((88, 88), (135, 135), (389, 389), (445, 445),
                                                (49667, 49667))),
        Rule("workstations", "servers", "udp", ((53, 53), (123, 123), (389, 389))),
        Rule("workstations", "workstations", "udp", ((138, 138),)),
    )  # fmt: skip
    assert sum(1 for f in first if attack(f)) == 3  # the early C2, not learned

    violations = list(check(second, policy, segments))
    assert len(violations) == 482
    caught = [v for v in violations if attack(v.flow)]
    assert len(caught) == 480
    assert sum(1 for v in violations if lateral(v.flow)) == 88
    assert sum(1 for f in second if lateral(f)) == 88  # all of the lateral movement
    assert Counter(v.flow.port for v in violations if lateral(v.flow)) == {
        55121: 36, 445: 30, 5985: 8, 135: 8, 80: 6,
    }  # fmt: skip
    assert Counter(
        (v.flow.dst, v.flow.port) for v in violations if v.flow.dst.startswith(ATTACKER)
    ) == {
        ("192.168.0.4", 8443): 376, ("192.168.0.4", 445): 5, ("192.168.0.4", 139): 5,
        ("192.168.0.4", 80): 6,
    }  # fmt: skip
    benign = [v for v in violations if not attack(v.flow)]
    assert {(v.flow.dst, v.flow.protocol, v.flow.port) for v in benign} == {
        ("10.0.1.255", "udp", 137)
    }
    assert len(benign) == 2
    assert all(not attack(f) for f in second if not policy.denies(
        segments.resolve(f.src), segments.resolve(f.dst), f.protocol, f.port))  # fmt: skip

    winrm = next(v for v in violations if lateral(v.flow) and v.flow.port == 5985)
    assert winrm.reason == (
        "traffic inside workstations is denied (intra: deny) and no rule allows tcp/5985"
    )
    alert = to_alert(winrm).detection
    assert alert.tags == ("attack.lateral-movement", "attack.t1021")
    assert alert.event["uid"] == winrm.flow.uid

    # the same once the second sensor's copies of SCRANTON ↔ NASHUA flows are removed
    unique = distinct(second)
    report = stage(policy, segments, unique)
    assert (report.flows, report.blocked) == (522, 434)
    assert report.counts[("workstations", "workstations", "tcp", 5985)] == 4
    assert report.counts[("workstations", "workstations", "udp", 137)] == 2
    assert sum(n for k, n in report.counts.items() if k[1] == "workstations") == 46
