"""The ECS view on real records of each format: host, user, source/destination ip and port,
process, hashes, domain. Expected values are read off the records themselves (shown in each
test's comment as the native field they come from)."""

from __future__ import annotations

from typing import Any

import pytest

from vigil.events import Event
from vigil.ingest import FileReport, discover, read_events


def event_at(path, record: int | str) -> Event:
    for source in discover([path]):
        report = FileReport(source.name)
        for batch in read_events(source, report):
            for event in batch:
                if str(event.record) == str(record):
                    return event
    raise AssertionError(f"no record {record} in {path}")


def has(view: dict[str, Any], **expected: Any) -> None:
    wanted = {name.replace("__", "."): value for name, value in expected.items()}
    assert {name: view.get(name) for name in wanted} == wanted


@pytest.fixture
def data(need_data):
    return need_data


def test_zeek_tsv_dns(data) -> None:
    # line 9: 192.168.1.116:50814 -> 8.8.8.8:53 udp, query dns.msftncsi.com, A
    event = event_at(data("network", "stratosphere", "005-zeek-scenario-malicious", "dns.log"), 9)
    has(
        event.ecs,
        source__ip="192.168.1.116",
        source__port=50814,
        destination__ip="8.8.8.8",
        destination__port=53,
        network__transport="udp",
        dns__question__name="dns.msftncsi.com",
        dns__question__type="A",
        event__dataset="zeek.dns",
    )


def test_zeek_json_with_underscored_ids_and_file_hashes(data) -> None:
    folder = data("network", "otrf-apt29-zeek", "day1", "zeek", "individual_zeek_logs")
    dns = event_at(folder / "NASHUA_dns.log", 1)
    # id_orig_h / id_resp_h, written with underscores, become Zeek's dotted names
    assert dns.fields["id.orig_h"] == "10.0.1.6" and "id_orig_h" not in dns.fields
    has(
        dns.ecs,
        source__ip="10.0.1.6",
        source__port=54243,
        destination__ip="10.0.0.4",
        dns__question__name="newyork.dmevals.local",
    )
    files = event_at(folder / "NASHUA_files.log", 1)
    has(
        files.ecs,
        file__hash__md5="cc85d7649546d3c0b1607f761b73fec2",
        file__hash__sha1="1a1a10b819f321b91b47d7dd73668406a15992db",
        source__ip="10.0.0.4",
        destination__ip="10.0.1.6",
    )


def test_suricata_eve_alert(data) -> None:
    event = event_at(data("network", "suricata-eve-alerts", "wrccdc-2018", "alerts-only.json"), 1)
    has(
        event.ecs,
        source__ip="0.0.0.0",
        destination__ip="10.47.8.150",
        destination__port=22,
        rule__name="ET SCAN Potential SSH Scan",
        event__kind="alert",
    )
    assert event.ecs["@timestamp"] == "2018-03-24T20:37:19.037299Z"  # -0600 in the record


def test_auditd_event_joined_from_its_records(data) -> None:
    path = data("linux", "otrf", "atomic", "linux", "defense_evasion", "host")
    event = event_at(path / "sh_binary_padding_dd.zip", 1)
    assert event.fields["type"] == ["SYSCALL", "EXECVE", "CWD", "PATH", "PATH", "PROCTITLE"]
    assert event.fields["a1"] == ["558e251641a0", "if=/dev/zero"]  # SYSCALL's, then EXECVE's
    has(
        event.ecs,
        process__executable="/bin/dd",
        process__name="dd",
        process__pid=2168,
        process__parent__pid=29002,
        # PROCTITLE is hex of "dd\0if=/dev/zero\0bs=1\0count=1"
        process__command_line="dd if=/dev/zero bs=1 count=1",
        user__id="1000",
    )


def test_auth_log_ssh_login(data) -> None:
    event = event_at(data("linux", "elastic-examples", "auth.log"), 6)
    assert event.fields["message"].startswith("Accepted publickey for ubuntu from 85.245.107.41")
    has(
        event.ecs,
        host__name="ip-10-77-20-248",
        process__name="sshd",
        user__name="ubuntu",
        source__ip="85.245.107.41",
        source__port=54259,
        event__outcome="success",
    )


def test_sysmon_for_linux_in_sentinel_syslog(data) -> None:
    path = data("linux", "otrf", "compound", "Log4Shell")
    event = event_at(path / "syslog_sysmon_log4shell_cve2021_44228_jndi_reference.zip", 2)
    assert event.dataset == "linux.sysmon"
    has(
        event.ecs,
        host__name="UBUNTU5",
        process__executable="/opt/microsoft/mdatp/sbin/wdavdaemon",
        source__ip="192.168.2.5",
        destination__ip="104.46.127.225",
        destination__port=443,
    )


def test_windows_sysmon_in_sentinel_with_hashes(data) -> None:
    path = data("linux", "otrf", "compound", "Log4Shell")
    events = []
    for source in discover([path / "sysmon_log4shell_cve2021_44228_java_serialized_object.zip"]):
        for batch in read_events(source, FileReport(source.name)):
            events.extend(batch)
    created = [e for e in events if e.fields.get("EventID") == 1]
    assert created
    view = created[0].ecs
    assert view["process.name"] == "powershell.exe"
    assert view["user.domain"] == "NT AUTHORITY"
    hashes = created[0].fields["Hashes"]
    assert f"SHA256={view['file.hash.sha256'].upper()}" in hashes.upper()
    assert f"MD5={view['file.hash.md5'].upper()}" in hashes.upper()


def test_cloudtrail(data) -> None:
    event = event_at(
        data("cloud", "stratus-red-team", "aws.persistence.iam-create-admin-user.json"), 1
    )
    has(
        event.ecs,
        event__action="AttachUserPolicy",
        event__provider="iam.amazonaws.com",
        user__name="christophe",
        cloud__account__id="229654561268",
        cloud__provider="aws",
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (440, {"user.name": "system:anonymous", "source.ip": "8.8.8.8",
               "orchestrator.resource.type": "pods", "event.dataset": "kubernetes.audit"}),
        (567, {"event.action": "Microsoft.Insights/alertRules/delete", "source.ip": "1.1.1.1",
               "event.dataset": "azure.activitylogs"}),
        (737, {"user.name": "aragorn@lotr.com", "source.ip": "2.2.2.2",
               "event.dataset": "azure.signinlogs"}),
        (1081, {"user.name": "user1@company.io", "event.action": "v1.compute.subnetworks.patch",
                "event.dataset": "gcp.audit"}),
        (1377, {"user.email": "example@example.io", "source.ip": "12.12.12.12",
                "event.action": "DELETE_ROLE", "event.dataset": "google_workspace.admin"}),
        (1698, {"user.name": "my.user@yourorg.onmicrosoft.com", "source.ip": "1.2.3.4",
                "event.dataset": "m365.audit"}),
        (1765, {"user.name": "homer@springfield.gov", "source.ip": "1.1.1.1",
                "event.action": "user.session.impersonation.grant",
                "event.dataset": "okta.system"}),
        (1943, {"email.from.address": "ceo@comp4ny.com", "source.ip": "192.0.2.150",
                "email.to.address": ["finance@company.com"], "event.dataset": "proofpoint"}),
    ],
)  # fmt: skip
def test_cloud_identity_and_email_records(data, line: int, expected: dict[str, Any]) -> None:
    # Panther's rule-test fixtures: the `log` of line N is the real record
    event = event_at(data("cloud", "panther-rule-tests"), line)
    assert {name: event.ecs.get(name) for name in expected} == expected
