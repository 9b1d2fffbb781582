"""Micro-segmentation: address resolution, the policy file, the nftables ruleset (checked by the
real `nft -c`), conformance, learning and staging, and reading flows from Zeek and Sysmon."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from vigil.errors import Invalid
from vigil.events.flows import Flow
from vigil.events.records import Alert
from vigil.zerotrust.segments import (
    FlowPolicy,
    Rule,
    Segment,
    Segments,
    check,
    collapse_ports,
    compile_nftables,
    distinct,
    learn,
    read_flows,
    split_by_time,
    stage,
    to_alert,
)

POLICY = """
segments:
  - name: servers
    cidrs: [10.0.0.0/24]
  - name: database
    cidrs: [10.0.0.64/26]
    tags: [db]
  - name: users
    cidrs: [10.0.1.0/24, "fd00:1::/64"]
    intra: deny
  - name: internet
    cidrs: [0.0.0.0/0]
flows:
  - {src: users, dst: servers, protocol: tcp, ports: [443, 80, "8000-8080"]}
  - {src: servers, dst: database, protocol: tcp, ports: [5432]}
  - {src: users, dst: servers, protocol: icmp}
  - {src: users, dst: internet, protocol: udp, ports: [53]}
"""


def policy_and_segments() -> tuple[FlowPolicy, Segments]:
    policy = FlowPolicy.from_yaml(POLICY)
    return policy, Segments(policy.segments, {"db": ["10.0.0.200", "10.0.5.7"]})


def nft_check(ruleset: str) -> subprocess.CompletedProcess[bytes]:
    if shutil.which("nft") is None:
        pytest.skip("nft (nftables) is not installed")
    if os.geteuid() != 0:
        pytest.skip("nft -c needs root (CAP_NET_ADMIN) to check a ruleset")
    done = subprocess.run(["nft", "-c", "-f", "-"], input=ruleset.encode(), capture_output=True)
    if done.returncode != 0 and b"Operation not permitted" in done.stderr:
        pytest.skip(f"nft is not permitted here: {done.stderr.decode().strip()}")
    return done


def test_longest_prefix_wins_and_tags_count_as_hosts() -> None:
    _, segments = policy_and_segments()
    assert segments.resolve("10.0.0.5") == "servers"
    assert segments.resolve("10.0.0.70") == "database"  # /26 inside the /24
    assert segments.resolve("10.0.0.200") == "database"  # tag address inside servers' /24
    assert segments.resolve("10.0.5.7") == "database"  # tag address outside every CIDR
    assert segments.resolve("10.0.1.9") == "users"
    assert segments.resolve("fd00:1::5") == "users"
    assert segments.resolve("::ffff:10.0.1.9") == "users"
    assert segments.resolve("8.8.8.8") == "internet"
    assert segments.resolve("fd00:2::1") is None  # no IPv6 catch-all
    assert segments.resolve("not an address") is None


def test_a_network_in_two_segments_is_refused() -> None:
    with pytest.raises(Invalid, match="two segments: a and b"):
        Segments([Segment("a", ("10.0.0.0/24",)), Segment("b", ("10.0.0.0/24",))])
    with pytest.raises(Invalid, match="no CIDR"):
        Segment("a", ("10.0.0.300/24",))
    with pytest.raises(Invalid, match="a name is"):
        Segment("bad name")


def test_sets_are_carved_so_the_more_specific_segment_keeps_its_addresses() -> None:
    _, segments = policy_and_segments()
    servers = [str(n) for n in segments.disjoint("servers")]
    assert servers == [
        "10.0.0.0/26",
        "10.0.0.128/26",
        "10.0.0.192/29",
        "10.0.0.201/32",
        "10.0.0.202/31",
        "10.0.0.204/30",
        "10.0.0.208/28",
        "10.0.0.224/27",
    ]
    assert "10.0.0.64/26" not in servers and "10.0.0.200/32" not in servers
    assert [str(n) for n in segments.disjoint("database")] == [
        "10.0.0.64/26",
        "10.0.0.200/32",
        "10.0.5.7/32",
    ]
    total = sum(n.num_addresses for n in segments.disjoint("servers"))
    assert total == 256 - 64 - 1


def test_policy_yaml_round_trip() -> None:
    policy, _ = policy_and_segments()
    assert policy.rules[0] == Rule("users", "servers", "tcp", ((80, 80), (443, 443), (8000, 8080)))
    assert policy.deny_intra == frozenset({"users"})
    again = FlowPolicy.from_yaml(policy.to_yaml())
    assert again == policy
    assert "8000-8080" in policy.to_yaml()


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("flows: [{src: a, dst: b, protocol: tcp}]", "no segment named 'a'"),
        ("segments: [{name: a}]\nflows: [{src: a, dst: a, protocol: sctp}]", "flows.0.protocol"),
        ("segments: [{name: a}]\nflows: [{src: a, dst: a, protocol: tcp, ports: [70000]}]",
         "flows.0.ports"),
        ("segments: [{name: a}]\nflows: [{src: a, dst: a, protocol: icmp, ports: [1]}]",
         "icmp has no ports"),
        ("segments: [{name: a}, {name: a}]", "defined twice"),
        ("segments: [{name: a, colour: red}]", "segments.0.colour"),
        ("segments: [", "not YAML"),
    ],
)  # fmt: skip
def test_a_bad_policy_names_the_file_and_the_fault(text: str, fault: str) -> None:
    with pytest.raises(Invalid, match=r"seg\.yaml") as caught:
        FlowPolicy.from_yaml(text, "seg.yaml")
    assert fault in str(caught.value)


def test_collapse_ports_merges_neighbours_and_ranges() -> None:
    assert collapse_ports([443, 80, 81, 82, (8000, 8010), 8005, 8011]) == (
        (80, 82),
        (443, 443),
        (8000, 8011),
    )
    assert collapse_ports([]) == ()


def test_compiled_ruleset_is_accepted_by_nft() -> None:
    policy, segments = policy_and_segments()
    ruleset = compile_nftables(policy, segments)
    assert "table inet vigil_segments {" in ruleset
    assert "flags interval" in ruleset
    assert ruleset.count("ct state established,related accept") == 2
    assert "tcp dport { 80, 443, 8000-8080 } counter accept" in ruleset
    assert 'counter log prefix "vigil-seg drop: " drop' in ruleset
    # users is intra: deny, the others may talk inside themselves
    assert "ip saddr @seg_users_v4 ip daddr @seg_users_v4 counter accept" not in ruleset
    assert "ip saddr @seg_servers_v4 ip daddr @seg_servers_v4 counter accept" in ruleset
    done = nft_check(ruleset)
    assert done.returncode == 0, done.stderr.decode()


def test_staged_ruleset_logs_and_counts_instead_of_dropping() -> None:
    policy, segments = policy_and_segments()
    ruleset = compile_nftables(policy, segments, staged=True)
    assert 'counter log prefix "vigil-seg staged: " accept' in ruleset
    assert " drop" not in ruleset
    done = nft_check(ruleset)
    assert done.returncode == 0, done.stderr.decode()


def test_nft_rejects_a_broken_ruleset_so_the_check_means_something() -> None:
    policy, segments = policy_and_segments()
    broken = compile_nftables(policy, segments).replace("flags interval", "flags bogus", 1)
    assert nft_check(broken).returncode != 0


FLOWS = [
    Flow("10.0.1.5", "10.0.0.5", "tcp", 443, 1.0, "C1"),  # allowed
    Flow("10.0.1.5", "10.0.0.5", "tcp", 8080, 2.0, "C2"),  # allowed (range)
    Flow("10.0.1.5", "10.0.0.5", "tcp", 22, 3.0, "C3"),  # port not allowed
    Flow("10.0.1.5", "10.0.1.6", "tcp", 445, 4.0, "C4"),  # inside users: intra deny
    Flow("10.0.0.5", "10.0.0.6", "tcp", 22, 5.0, "C5"),  # inside servers: allowed
    Flow("10.0.0.5", "10.0.0.70", "tcp", 5432, 6.0, "C6"),  # allowed
    Flow("10.0.1.5", "10.0.0.70", "tcp", 5432, 7.0, "C7"),  # users → database: no rule
    Flow("10.0.1.5", "10.0.0.5", "icmp", None, 8.0, "C8"),  # allowed
    Flow("fd00:1::5", "fd00:9::1", "udp", 53, 9.0, "C9"),  # destination in no segment
    Flow("10.0.1.5", "1.1.1.1", "udp", 53, 10.0, "C10"),  # allowed
]


def test_conformance_names_the_flow_both_segments_and_why() -> None:
    policy, segments = policy_and_segments()
    found = {v.flow.uid: v for v in check(FLOWS, policy, segments)}
    assert sorted(found) == ["C3", "C4", "C7", "C9"]
    assert found["C3"].reason == "no rule allows users → servers tcp/22"
    assert (found["C4"].src_segment, found["C4"].dst_segment) == ("users", "users")
    assert "inside users is denied (intra: deny)" in found["C4"].reason
    assert found["C7"].reason == "no rule allows users → database tcp/5432"
    assert found["C9"].dst_segment is None
    assert found["C9"].reason == "no segment holds the destination"


def test_a_violation_becomes_a_lateral_movement_alert() -> None:
    policy, segments = policy_and_segments()
    violation = next(v for v in check(FLOWS, policy, segments) if v.flow.uid == "C4")
    alert = to_alert(violation)
    detection = alert.detection
    assert detection.tags == ("attack.lateral-movement", "attack.t1021")
    assert detection.techniques == ("T1021",)
    assert detection.rule_title == "Flow outside the segment policy: users → users tcp/445"
    assert detection.event["destination.ip"] == "10.0.1.6"
    assert detection.details["dst_segment"] == "users"
    assert detection.timestamp == "1970-01-01T00:00:04Z"
    assert alert.id == to_alert(violation).id  # the same flow, the same alert
    assert set(alert.entities) >= {("ip", "10.0.1.5"), ("ip", "10.0.1.6")}
    assert Alert.from_bytes(alert.to_bytes()) == alert  # a record of the `alerts` stream


def _many(src: str, dst: str, proto: str, port: int, times: int, sport: int = 50000) -> list[Flow]:
    return [Flow(src, dst, proto, port, float(i), None, sport + i) for i in range(times)]


def test_learning_keeps_frequent_or_widespread_flows_and_collapses_ports() -> None:
    segments = Segments([Segment("servers", ("10.0.0.0/24",)), Segment("users", ("10.0.1.0/24",))])
    window = (
        _many("10.0.1.5", "10.0.0.5", "tcp", 443, 3)  # often: kept
        + _many("10.0.1.5", "10.0.0.5", "tcp", 444, 3)  # often: kept, merges with 443
        + _many("10.0.1.5", "10.0.0.5", "tcp", 22, 1)  # once from one source: dropped
        + _many("10.0.1.5", "10.0.0.5", "udp", 53, 1)
        + _many("10.0.1.6", "10.0.0.5", "udp", 53, 1)  # two sources: kept
        + _many("10.0.1.5", "10.0.1.6", "tcp", 445, 2)  # inside users, too rare: dropped
        + _many("10.0.0.5", "10.0.1.5", "tcp", 50123, 5, sport=443)  # a reply logged backwards
        + _many("10.0.1.5", "192.0.2.1", "tcp", 80, 9)  # destination in no segment
    )
    policy = learn(window, segments)
    assert policy.rules == (
        Rule("users", "servers", "tcp", ((443, 444),)),
        Rule("users", "servers", "udp", ((53, 53),)),
    )
    assert policy.deny_intra == frozenset({"servers", "users"})
    looser = learn(window, segments, min_flows=2, intra="allow")
    assert Rule("users", "users", "tcp", ((445, 445),)) in looser.rules
    assert Rule("users", "servers", "tcp", ((22, 22),)) not in looser.rules
    assert looser.deny_intra == frozenset()
    assert FlowPolicy.from_yaml(policy.to_yaml()) == policy


def test_staging_reports_what_would_be_blocked_per_pair_and_port() -> None:
    segments = Segments([Segment("servers", ("10.0.0.0/24",)), Segment("users", ("10.0.1.0/24",))])
    policy = learn(_many("10.0.1.5", "10.0.0.5", "tcp", 443, 3), segments)
    later = (
        _many("10.0.1.5", "10.0.0.5", "tcp", 443, 4)
        + _many("10.0.1.5", "10.0.1.6", "tcp", 445, 5)
        + _many("10.0.1.7", "10.0.0.5", "tcp", 22, 2)
    )
    report = stage(policy, segments, later, examples=2)
    assert (report.flows, report.blocked) == (11, 7)
    assert report.counts == {
        ("users", "users", "tcp", 445): 5,
        ("users", "servers", "tcp", 22): 2,
    }
    summary = report.as_dict()
    assert summary["would_block"][0]["count"] == 5
    assert len(summary["would_block"][0]["examples"]) == 2


ZEEK_TSV = "\n".join(
    [
        "#separator \\x09",
        "#set_separator\t,",
        "#empty_field\t(empty)",
        "#unset_field\t-",
        "#path\tconn",
        "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice",
        "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring",
        "1588205199.8\tCa\t10.0.1.6\t54243\t10.0.0.4\t53\tudp\tdns",
        "1588205200.1\tCb\t10.0.1.6\t56880\t10.0.0.4\t445\ttcp\t-",
        "1588205201.0\tCc\t10.0.1.6\t8\t10.0.0.4\t0\ticmp\t-",
        "1588205202.0\tCd\t10.0.1.6\t1\t10.0.0.4\t2\tsctp\t-",
    ]
)


def test_zeek_tsv_and_json_conn_logs_give_the_same_flows(tmp_path: Path) -> None:
    tsv = tmp_path / "conn.log"
    tsv.write_text(ZEEK_TSV + "\n")
    docs = [
        {"ts": 1588205199.8, "uid": "Ca", "id_orig_h": "10.0.1.6", "id_orig_p": 54243,
         "id_resp_h": "10.0.0.4", "id_resp_p": 53, "proto": "udp", "@stream": "conn",
         "@proc": "zeek"},
        {"ts": 1588205200.1, "uid": "Cb", "id.orig_h": "10.0.1.6", "id.orig_p": 56880,
         "id.resp_h": "10.0.0.4", "id.resp_p": 445, "proto": "tcp", "_path": "conn"},
        {"ts": 1588205201.0, "uid": "Cc", "id.orig_h": "10.0.1.6", "id.orig_p": 8,
         "id.resp_h": "10.0.0.4", "id.resp_p": 0, "proto": "icmp"},
        {"ts": 1588205201.5, "uid": "Cx", "_path": "dns", "query": "x"},
    ]  # fmt: skip
    lines = tmp_path / "conn.json"
    lines.write_text("\n".join(json.dumps(d) for d in docs) + "\nnot json\n[1]\n")
    expected = [
        Flow("10.0.1.6", "10.0.0.4", "udp", 53, 1588205199.8, "Ca", 54243),
        Flow("10.0.1.6", "10.0.0.4", "tcp", 445, 1588205200.1, "Cb", 56880),
        Flow("10.0.1.6", "10.0.0.4", "icmp", None, 1588205201.0, "Cc", 8),
    ]
    assert list(read_flows(tsv)) == expected
    assert list(read_flows(lines)) == expected
    assert len(list(read_flows(tsv, limit=2))) == 2


def test_sysmon_network_connections_are_flows(tmp_path: Path) -> None:
    docs = [
        {"EventID": 3, "SourceIp": "10.0.1.4", "SourcePort": "60771",
         "DestinationIp": "10.0.1.6", "DestinationPort": "5985", "Protocol": "tcp",
         "UtcTime": "2020-04-30 00:33:26.123", "EventRecordID": 77},
        {"EventID": 1, "Image": "C:\\Windows\\cmd.exe"},
    ]  # fmt: skip
    path = tmp_path / "sysmon.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    (flow,) = read_flows(path)
    assert (flow.src, flow.dst, flow.protocol, flow.port, flow.uid) == (
        "10.0.1.4", "10.0.1.6", "tcp", 5985, "77",
    )  # fmt: skip
    assert flow.time == pytest.approx(1588206806.123)


def test_copies_from_a_second_sensor_are_counted_once() -> None:
    a = Flow("10.0.1.4", "10.0.1.6", "tcp", 445, 100.0, "N1", 60803)
    b = Flow("10.0.1.4", "10.0.1.6", "tcp", 445, 100.02, "S1", 60803)  # other sensor's copy
    c = Flow("10.0.1.4", "10.0.1.6", "tcp", 445, 130.0, "N2", 60803)  # a later attempt
    assert distinct([c, b, a]) == [a, c]
    first, second = split_by_time([a, b, c])
    assert (first, second) == ([a, b], [c])
