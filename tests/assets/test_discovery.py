"""Passive discovery on real telemetry: the APT29 day-1 Zeek logs, the evtx-to-mitre-attack
Windows logs and the Stratus Red Team CloudTrail detonations give hosts, users and the
relationships between them. Flows and role assumptions are checked against an independent
reading of the raw files; logons against values read by hand."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from vigil.assets.discovery import discover
from vigil.events import Event
from vigil.ingest import FileReport, read_events
from vigil.ingest import discover as find


def _events(*paths: Path) -> list[Event]:
    events: list[Event] = []
    for source in find(list(paths)):
        for batch in read_events(source, FileReport(source.name)):
            events.extend(batch)
    return events


def _lines(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_zeek_conn_flows_are_the_logs_own_and_kerberos_shows_the_user(need_data) -> None:
    logs = need_data("network", "otrf-apt29-zeek", "day1") / "zeek" / "individual_zeek_logs"
    conn = [logs / "NASHUA_conn.log", logs / "SCRANTON_conn.log"]
    inventory = discover(_events(*conn))
    flows = {
        (e.src, e.dst, dict(e.attrs)["port"], dict(e.attrs)["proto"])
        for e in inventory.edges
        if e.kind == "flow"
    }
    expected = {
        (f"host:{r['id_orig_h']}", f"host:{r['id_resp_h']}", r["id_resp_p"], r["proto"])
        for path in conn
        for r in _lines(path)
        if not r["id_resp_h"].endswith(".255") and not r["id_resp_h"].startswith(("224.", "ff"))
    }
    assert flows == expected and len(flows) > 10
    # the attacker's WinRM to the second workstation, and the command-and-control channel
    assert ("host:10.0.1.4", "host:10.0.1.6", 5985, "tcp") in flows
    assert ("host:10.0.1.4", "host:192.168.0.5", 443, "tcp") in flows
    kerberos = discover(_events(logs / "NASHUA_kerberos.log", logs / "SCRANTON_kerberos.log"))
    logons = {(e.src, e.dst) for e in kerberos.edges if e.kind == "logon"}
    assert logons == {
        ("user:dmevals\\pbeesly", "host:10.0.1.4"), ("user:dmevals\\pbeesly", "host:10.0.1.6"),
    }  # fmt: skip
    assert inventory.nodes["host:10.0.1.4"].attrs["first_event"] > 1.5e9


def test_windows_logons_name_the_user_the_host_and_the_logon_type(need_data) -> None:
    inventory = discover(_events(need_data("windows", "evtx-to-mitre-attack")))
    logons = {(e.src, e.dst, dict(e.attrs).get("logon_type")) for e in inventory.edges
              if e.kind == "logon"}  # fmt: skip
    assert ("user:offsec\\admmig", "host:fs03vuln.offsec.lan", 3) in logons
    assert ("user:offsec\\hack1", "host:rootdc1.offsec.lan", 3) in logons
    users = {n.id for n in inventory.nodes.values() if n.kind == "user"}
    assert "user:offsec\\administrator" in users
    # the system's own accounts and machine accounts are not people
    assert not {u for u in users if u.endswith(("\\system", "$", "\\anonymous logon"))}
    assert "host:10.23.23.9" in inventory.nodes  # ::ffff:10.23.23.9 in a 4624 is IPv4


def test_cloudtrail_assume_role_gives_who_can_assume_which_role(need_data) -> None:
    folder = need_data("cloud", "stratus-red-team")
    inventory = discover(_events(folder))
    assumed = {(e.src, e.dst) for e in inventory.edges if e.kind == "can_assume"}
    expected = set()
    for path in sorted(folder.glob("*.json")):
        document = json.loads(path.read_text())
        records = document["Records"] if isinstance(document, dict) else document
        for record in records:
            arn = record.get("userIdentity", {}).get("arn", "")
            role = (record.get("requestParameters") or {}).get("roleArn")
            refused = "errorCode" in record  # a refused attempt shows no access
            if record.get("eventName") == "AssumeRole" and role and ":user/" in arn and not refused:
                expected.add((f"user:{arn}", f"role:{role}"))
    assert assumed == expected and len(expected) >= 4
    used = {dict(e.attrs)["action"] for e in inventory.edges if e.kind == "has_permission"}
    assert "GetSecretValue" in used
    # every GetPasswordData of the detonation was refused (UnauthorizedOperation)
    assert "GetPasswordData" not in used


def test_hostile_fields_never_stop_discovery_nor_the_record() -> None:
    """Logon types that are not small ASCII numbers, lists where text is expected, integers
    past 64 bits: the event shows what it can, the inventory still serialises."""
    odd = ["²", [3], 99999999999999999999999, "99999999999999999999999", {"a": 1}]
    events = [
        Event({"EventID": 4624, "Computer": "ws1", "TargetUserName": "bob",
               "TargetDomainName": "corp", "LogonType": value}, "x", dataset="windows")
        for value in odd
    ] + [Event({"eventName": ["AssumeRole"], "userIdentity.arn": ["x"]}, "x",
               dataset="aws.cloudtrail")]  # fmt: skip
    inventory = discover(events)
    logons = [e for e in inventory.edges if e.kind == "logon"]
    assert {(e.src, e.dst) for e in logons} == {("user:corp\\bob", "host:ws1")}
    assert all(dict(e.attrs).get("logon_type") is None for e in logons)
    again = type(inventory).from_bytes(inventory.to_bytes())
    assert set(again.edges) == set(inventory.edges)


def test_a_local_account_belongs_to_its_host_and_an_api_is_not_a_service_principal() -> None:
    events = [
        Event(
            {
                "hostname": host,
                "message": f"Accepted publickey for root from 10.0.0.{n} port 22 ssh2",
                "program": "sshd",
            },
            "auth.log",
            dataset="linux.auth",
        )
        for n, host in ((1, "web1"), (2, "db1"))
    ]
    call = {"eventName": "DescribeInstances", "eventSource": "ec2.amazonaws.com",
            "userIdentity.arn": "arn:aws:iam::1:user/al"}  # fmt: skip
    events.append(Event(call, "ct", dataset="aws.cloudtrail"))
    inventory = discover(events)
    users = sorted(n.id for n in inventory.nodes.values() if n.kind == "user")
    assert users == ["user:arn:aws:iam::1:user/al", "user:db1\\root", "user:web1\\root"]
    assert "cloud_resource:api:ec2.amazonaws.com" in inventory.nodes
    assert "cloud_resource:service:ec2.amazonaws.com" not in inventory.nodes
