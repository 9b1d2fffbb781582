"""The entities real events name, from their ECS view and data/entities.yml: Windows logons
and account changes, Sysmon processes and hashes, CloudTrail and Okta principals, Zeek
connections, Sysmon for Linux. Expected values are read off the records (the native field
each comes from is in the comments)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.events import Event, entities_in, entities_of
from vigil.events.entities import MAX_VALUE, entity_values
from vigil.ingest import FileReport, discover, read_events

EVTX = ("windows", "evtx-to-mitre-attack")
OTRF = ("windows", "otrf-security-datasets")


def events_at(path: Path, *records: int) -> dict[int, Event]:
    wanted = {str(r) for r in records}
    found: dict[int, Event] = {}
    for source in discover([path]):
        for batch in read_events(source, FileReport(source.name)):
            for event in batch:
                if str(event.record) in wanted:
                    found[int(str(event.record))] = event
    assert len(found) == len(records), f"records {records} not all in {path}"
    return found


def windows_events_at(path: Path, *records: int) -> dict[int, Event]:
    """EVTX events read as the `windows` dataset: the EVTX reader gives them no dataset yet
    (see test_an_evtx_event_as_read_has_its_windows_entities)."""
    found = events_at(path, *records)
    for event in found.values():
        event.dataset = event.dataset or "windows"
    return found


def kinds(entities: tuple[tuple[str, str], ...], kind: str) -> list[str]:
    return [value for k, value in entities if k == kind]


@pytest.fixture
def data(need_data):
    return need_data


def test_failed_logons_name_the_target_user_and_the_source_address(data) -> None:
    folder = data(*EVTX, "TA0006-Credential Access", "T1110.xxx-Brut force")
    path = folder / "ID4625-OpenSSH brutforce with valid users.evtx.gz"
    found = entities_of(windows_events_at(path, 1865227)[1865227])
    # TargetUserName admmig@offsec.lan; SubjectUserName FS01$ is the machine: the host says it
    assert kinds(found, "user") == ["admmig@offsec.lan"]
    assert kinds(found, "host") == ["fs01.offsec.lan"]
    assert kinds(found, "process") == ["c:\\program files\\openssh-win64\\sshd.exe@fs01.offsec.lan"]

    folder = data(*EVTX, "TA0001-Initial access", "T1078-Valid accounts")
    path = folder / "ID4625-failed login with denied access due to account restriction.evtx.gz"
    found = entities_of(windows_events_at(path, 90907)[90907])
    # IpAddress 10.23.23.9; TargetUserName `-` and SubjectUserName FS03$ name nobody
    assert kinds(found, "ip") == ["10.23.23.9"]
    assert kinds(found, "user") == []
    # ProcessName: the logon process, on its host
    assert kinds(found, "process") == ["c:\\windows\\system32\\winlogon.exe@fs03.offsec.lan"]


def test_an_evtx_event_as_read_has_its_windows_entities(data) -> None:
    folder = data(*EVTX, "TA0001-Initial access", "T1078-Valid accounts")
    path = folder / "ID4625-failed login with denied access due to account restriction.evtx.gz"
    event = events_at(path, 90907)[90907]
    assert kinds(entities_of(event), "ip") == ["10.23.23.9"]


def test_account_changes_name_the_actor_even_when_the_target_hides_it(data) -> None:
    folder = data(*EVTX, "TA0003-Persistence", "T1136-Create account")
    # 4720 of a hidden user: TargetUserName 3teamssixf$ (ends in `$`, so names nobody) comes
    # first in `user.name`; SubjectUserName admmig, who created it, is still named
    event = windows_events_at(folder / "ID472, 4728 Hidden user creation.evtx.gz", 1934516)
    assert kinds(entities_of(event[1934516]), "user") == ["admmig"]

    folder = data(*EVTX, "TA0003-Persistence", "T1098.xxx-Account manipulation")
    path = folder / "ID4728-4756-Member added to sensitive domain groups.evtx.gz"
    event = windows_events_at(path, 16088263)[16088263]
    # 4728: SubjectUserName lambda-user added a member to TargetUserName `Domain Admins`
    assert event.ecs["user.target.name"] == "Domain Admins"
    assert "lambda-user" in kinds(entities_of(event), "user")


def test_sysmon_process_creation_names_its_guid_user_and_file_hashes(data) -> None:
    folder = data(*EVTX, "EVTX_full_APT_attack_steps")
    event = windows_events_at(folder / "ID11,13,17,18-PSexec as system execution.evtx.gz", 48593)
    found = entities_of(event[48593])
    # ProcessGuid A57649D1-DB54-61AB-775C-DC0100000000, User OFFSEC\admmig, Image PsExec64.exe
    assert kinds(found, "process") == ["a57649d1-db54-61ab-775c-dc0100000000"]
    assert kinds(found, "user") == ["admmig"]
    # Hashes SHA1=FB0A..,MD5=9321..,SHA256=AD6B..,IMPHASH=159D..: the file's digests, not the
    # import-table hash many unrelated binaries share
    assert sorted(kinds(found, "hash")) == [
        "9321c107d1f7e336cda550a2bf049108",
        "ad6b98c01ee849874e4b4502c3d7853196f6044240d3271e4ab3fc6e3c08e9a4",
        "fb0a150601470195c47b4e8d87fcb3f50292beb2",
    ]


def test_process_access_names_the_process_that_acts(data) -> None:
    folder = data(*EVTX, "TA0002-Execution", "T1047-Windows Management Instrumentation")
    event = windows_events_at(
        folder / "ID3-7-10-Suspicious DLL loaded (CME+Mimikatz).evtx.gz", 48105
    )
    # Sysmon 10: SourceProcessGUID and SourceImage (powershell.exe opening lsass.exe)
    assert kinds(entities_of(event[48105]), "process") == ["a57649d1-a03b-61a6-2f23-8d0000000000"]
    assert event[48105].ecs["process.name"] == "powershell.exe"


def test_dll_hashes_count_unless_the_dll_is_windows_own(data) -> None:
    folder = data(*OTRF, "credential_access", "host")
    # Sysmon 7: esentutl.exe loads C:\Windows\System32\vss_ps.dll, on every Windows host
    (event,) = events_at(folder / "cmd_sam_copy_esentutl.zip", 839).values()
    assert event.fields["ImageLoaded"] == "C:\\Windows\\System32\\vss_ps.dll"
    assert kinds(entities_of(event), "hash") == []
    assert kinds(entities_of(event), "process") == ["{39e4a257-15ef-5f8d-e704-000000000700}"]

    folder = data(*OTRF, "defense_evasion", "host")
    # Sysmon 7: C:\Windows\SysWOW64\rundll32.exe loads C:\ProgramData\calc.cpl
    (event,) = events_at(folder / "psh_control_panel_execution.zip", 407).values()
    assert event.fields["ImageLoaded"] == "C:\\ProgramData\\calc.cpl"
    assert "28221016ef84d1b2d71c6450ab9ddf30c633c23810a7c7d134a97b41a9045f0f" in kinds(
        entities_of(event), "hash"
    )


def test_firewall_connections_name_both_addresses_and_the_application(data) -> None:
    folder = data(*OTRF, "credential_access", "host")
    (event,) = events_at(folder / "empire_shell_rubeus_asktgt_ptt.zip", 354).values()
    found = entities_of(event)
    # 5156: SourceAddress 172.18.39.6 -> DestAddress 172.18.38.5, Application Rubeus.exe
    assert kinds(found, "ip") == ["172.18.39.6", "172.18.38.5"]
    assert kinds(found, "process") == [
        "\\device\\harddiskvolume2\\users\\sbeavers\\desktop\\rubeus.exe"
        "@workstation6.theshire.local"
    ]


def test_a_loopback_logon_links_no_address(data) -> None:
    folder = data(*EVTX, "TA0008-Lateral Movement", "T1550-Use Alternate Authentication Material")
    event = windows_events_at(folder / "ID4624-Mimikatz Pass the hash.evtx.gz", 67101)[67101]
    assert event.fields["IpAddress"] == "::1"
    assert kinds(entities_of(event), "ip") == []
    assert kinds(entities_of(event), "user") == ["admmig"]


def test_cloudtrail_names_the_principal_arn_and_source_address(data) -> None:
    path = data("cloud", "stratus-red-team", "aws.credential-access.ec2-get-password-data.json")
    (event,) = events_at(path, 1).values()
    found = entities_of(event)
    assert kinds(found, "principal") == [
        # userIdentity.arn, then userIdentity.principalId
        "arn:aws:sts::457448411975:assumed-role/stratus-red-team-ec2-get-password-data-role/"
        "aws-go-sdk-1722375070115152000",
        "aroamlq9f6khq07jka0wy:aws-go-sdk-1722375070115152000",
    ]
    assert kinds(found, "ip") == ["200.249.253.51"]  # sourceIPAddress
    # sessionContext.sessionIssuer.userName: the role
    assert kinds(found, "user") == ["stratus-red-team-ec2-get-password-data-role"]


def test_okta_names_the_actor_as_user_and_principal(data) -> None:
    (event,) = events_at(data("cloud", "panther-rule-tests"), 1765).values()
    assert event.dataset == "okta.system"
    # actor.alternateId, client.ipAddress, actor.id
    assert entities_of(event) == (
        ("user", "homer@springfield.gov"),
        ("ip", "1.1.1.1"),
        ("principal", "111111"),
    )


def test_zeek_conn_names_both_ends(data) -> None:
    path = data("network", "stratosphere", "005-zeek-scenario-malicious", "conn.log")
    (event,) = events_at(path, 9).values()
    # id.orig_h 192.168.1.116 -> id.resp_h 8.8.8.8
    assert entities_of(event) == (("ip", "192.168.1.116"), ("ip", "8.8.8.8"))


def test_sysmon_for_linux_names_host_user_addresses_and_process(data) -> None:
    path = data("linux", "otrf", "compound", "Log4Shell")
    (event,) = events_at(
        path / "syslog_sysmon_log4shell_cve2021_44228_jndi_reference.zip", 2
    ).values()
    assert entities_of(event) == (
        ("host", "ubuntu5"),
        ("user", "root"),
        ("ip", "192.168.2.5"),
        ("ip", "104.46.127.225"),
        ("process", "{94325212-f5aa-627b-082b-60e4b9550000}"),
    )


def test_third_party_alerts_read_an_ecs_view_of_their_own() -> None:
    # a Wazuh alert's agent, source and user, named as ECS names them
    view = {
        "host.name": "web-01",
        "host.ip": "::ffff:10.0.0.5",
        "source.ip": "127.0.0.1",
        "user.name": "CORP\\root",
    }
    assert entities_in(view) == (("host", "web-01"), ("user", "root"), ("ip", "10.0.0.5"))


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("user", "NT AUTHORITY\\NETWORK SERVICE", []),
        ("user", "WORKSTATION5$", []),
        ("user", "-", []),
        ("ip", "0.0.0.0", []),
        ("ip", "fe80::1%12", ["fe80::1"]),
        ("hash", "SHA256=AB" + "0" * 62 + ",IMPHASH=" + "1" * 32, ["ab" + "0" * 62]),
    ],
)
def test_values_that_name_nobody_or_nothing_are_dropped(
    kind: str, value: str, expected: list[str]
) -> None:
    assert entity_values(kind, value) == expected


def test_long_values_are_bounded_and_kept_apart() -> None:
    (one,) = entity_values("host", "x" * 500)
    (other,) = entity_values("host", "x" * 500 + "y")
    assert len(one) <= MAX_VALUE and one != other
