"""Acceptance (issue 17, item 4): a compiled segment policy, loaded with `nft -f` in a real
network namespace, lets the allowed flow through and blocks the rest, shown with real TCP
connections; staged, it blocks nothing but counts what it would have dropped.

The lab (tests/netlab.py): the host 10.231.0.2 runs a TCP server on 8022; the peer holds a
workstation address (.1) and a management address (.3). Segments: the host and the management
address are /32s inside the workstations' /24, so the test also shows the longest prefix
winning in the kernel (the workstations set is carved around them)."""

from __future__ import annotations

import re
import subprocess

from netlab import HOST, MANAGEMENT, PORT, WORKSTATION, connects
from vigil.zerotrust.segments import FlowPolicy, Segments, compile_nftables

POLICY = f"""
segments:
  - name: lab
    cidrs: [10.231.0.0/24]
    intra: deny
  - name: server
    cidrs: [{HOST}/32]
  - name: management
    cidrs: [{MANAGEMENT}/32]
flows:
  - {{src: management, dst: server, protocol: tcp, ports: [{PORT}]}}
  - {{src: lab, dst: server, protocol: tcp, ports: [22, "9000-9100"]}}
  - {{src: lab, dst: server, protocol: icmp}}
"""


def apply(namespace: str, ruleset: str) -> None:
    done = subprocess.run(["ip", "netns", "exec", namespace, "nft", "-f", "-"],
                          input=ruleset.encode(), capture_output=True)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()


def final_counter(namespace: str) -> int:
    """Packets counted by the input chain's last rule (the drop, or the staged log)."""
    listing = subprocess.run(
        ["ip", "netns", "exec", namespace, "nft", "list", "chain", "inet", "vigil_segments",
         "input"],
        capture_output=True, check=True, text=True,
    ).stdout  # fmt: skip
    last = [line for line in listing.splitlines() if "log prefix" in line]
    assert len(last) == 1, listing
    found = re.search(r"counter packets (\d+)", last[0])
    assert found, last[0]
    return int(found.group(1))


def test_segment_policy_in_a_namespace_allows_only_the_allowed_flow(lab: tuple[str, str]) -> None:
    host, peer = lab
    policy = FlowPolicy.from_yaml(POLICY)
    segments = Segments(policy.segments)
    assert segments.resolve(WORKSTATION) == "lab"
    assert segments.resolve(MANAGEMENT) == "management"
    # before: both addresses reach the server
    assert connects(peer, WORKSTATION) and connects(peer, MANAGEMENT)

    apply(host, compile_nftables(policy, segments))
    assert connects(peer, MANAGEMENT), "management → server tcp/8022 is allowed"
    assert not connects(peer, WORKSTATION), "lab → server tcp/8022 names no allowed port"
    assert final_counter(host) > 0  # the refused SYNs were counted by the final drop

    # staged: nothing is dropped, what would have been is counted and logged
    apply(host, compile_nftables(policy, segments, staged=True))  # replaces the table
    assert final_counter(host) == 0
    assert connects(peer, WORKSTATION) and connects(peer, MANAGEMENT)
    assert final_counter(host) >= 1
