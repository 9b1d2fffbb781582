"""Vigil's endpoint rules for Windows logs find what the attack recordings of
evtx-to-mitre-attack hold, and stay quiet on real benign Windows logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.detect.sigma import load_rules, starter_rules
from vigil.scan import scan_inputs

# (recording under windows/evtx-to-mitre-attack, without .gz; the rule that must fire on it)
EXPECTED = [
    (
        "TA0003-Persistence/T1098.xxx-Account manipulation/"
        "ID4738-User set with reversible psw encryption.evtx",
        "Account Security Flags Weakened",
    ),
    (
        "TA0003-Persistence/T1098.xxx-Account manipulation/"
        "ID4742,5136-Enable Trust this computer for delegation "
        "(to any service, Kerberos only).evtx",
        "Account Security Flags Weakened",
    ),
    (
        "TA0003-Persistence/T1098.xxx-Account manipulation/"
        "ID4742-SPN set on computer account (DCshadow).evtx",
        "Service Principal Name Set on a Computer Account by a User",
    ),
    (
        "TA0003-Persistence/T1546-Event Triggered Execution/"
        "ID5136-AdminSDholder permissions changed.evtx",
        "Permissions of AdminSDHolder Changed",
    ),
    (
        "TA0003-Persistence/T1546-Event Triggered Execution/"
        "ID5136-AdminSDholder backdoor obfuscation (via localizationDisplayId).evtx",
        "Extended Right Definition Modified in the Configuration Partition",
    ),
    (
        "TA0005-Defense Evasion/T1222.001-File and Directory Permissions Modification/"
        "ID5136-Permissions changed on a GPO.evtx",
        "Permissions Changed on the Domain Root or a Group Policy Object",
    ),
    (
        "TA0005-Defense Evasion/T1222.001-File and Directory Permissions Modification/"
        "ID5136-Permission change on OU by computer.evtx",
        "Directory Object Permissions Changed by a Computer Account",
    ),
    (
        "TA0006-Credential Access/T1003-Credential dumping/"
        "ID4756-Exchange critical group change (DCsync).evtx",
        "Member Added to an Exchange Group That Can Grant DCSync",
    ),
    (
        "TA0003-Persistence/T1098.xxx-Account manipulation/ID4732-DNSadmin new member added.evtx",
        "Member Added to a Group With Hidden Administrative Power",
    ),
    (
        "TA0003-Persistence/T1136-Create account/ID4722-Guest account activated.evtx",
        "Built-in Guest Account Enabled",
    ),
    (
        "TA0003-Persistence/T1136-Create account/"
        "ID4741-Computer account created with privileges.evtx",
        "Computer Account Created Under a User's Machine Account Quota",
    ),
    (
        "TA0004-Privilege Escalation/T1068-Exploitation for Privilege Escalation/"
        "ID4673-Privilege SeMachineAccountPrivilege called.evtx",
        "Computer Account Created Under a User's Machine Account Quota",
    ),
    (
        "TA0004-Privilege Escalation/T1134-Access Token Manipulation/"
        "ID4704-4705-User righ assigned to account.evtx",
        "Sensitive User Right Assigned to an Account",
    ),
    (
        "TA0005-Defense Evasion/T1562.002-Disable Windows Event Logging/"
        "ID4908-Special group table changed.evtx",
        "Special Groups Logon Audit Table Changed",
    ),
    (
        "TA0005-Defense Evasion/T1078.002-Valid accounts-Domain accounts/"
        "ID4964-Login of a member of a special group.evtx",
        "Logon by a Member of a Monitored Special Group",
    ),
    (
        "TA0005-Defense Evasion/T1207-Rogue domain controller/"
        "ID5137-Fake domain controller registration (DCshadow).evtx",
        "Domain Controller Server Object Created in Sites",
    ),
    (
        "TA0005-Defense Evasion/T1207-Rogue domain controller/"
        "ID4662-Sensitive attributes accessed (DCshadow).evtx",
        "Add Replica Right Used by a User Account",
    ),
    (
        "TA0006-Credential Access/T1003-Credential dumping/"
        "ID4663-Task Manager used to dump LSASS process.evtx",
        "Process Opens LSASS for Memory Read (Object Access Audit)",
    ),
    (
        "TA0004-Privilege Escalation/T1546-Image File Execution Options Injection/"
        "ID4656-Failed sethc replacement by CMD.evtx",
        "Write Access Requested to an Accessibility Program",
    ),
    (
        "TA0002-Execution/T1569.002-Service execution/ID5145-remote service creation over SMB.evtx",
        "Service Control Manager Pipe Opened for Writing Over SMB",
    ),
    (
        "TA0002-Execution/T1053.005-Scheduled Task/"
        "ID5145-Remote schedule task creation (ATexec).evtx",
        "Task Scheduler Pipe Opened for Writing Over SMB",
    ),
    (
        "TA0007-Discovery/T1018-Remote System Discovery/"
        "ID5145-DNS hosts files access via network share.evtx",
        "Hosts File Read Over an Administrative Share",
    ),
    (
        "TA0008-Lateral Movement/T1021.002-SMB Windows Admin Shares/"
        "ID5142- New file share created.evtx",
        "Hidden File Share Created",
    ),
    (
        "TA0005-Defense Evasion/T1222.001-File and Directory Permissions Modification/"
        "ID5143-File share permissions changed.evtx",
        "File Share Permissions Opened to Everyone for Writing",
    ),
    (
        "TA0006-Credential Access/T1110.xxx-Brut force/"
        "ID4771-Kerberos brutforce with valid user.evtx",
        "Kerberos Password Guessing or Account Enumeration From One Address",
    ),
    (
        "TA0006-Credential Access/T1110.xxx-Brut force/"
        "ID4768-4771-Kerberos brutforce with non existing users.evtx",
        "Kerberos Password Guessing or Account Enumeration From One Address",
    ),
    (
        "TA0006-Credential Access/T1110.xxx-Brut force/"
        "ID 4776,4625-AccountRestore local bruteforce.evtx",
        "Burst of Failed Logons on One Machine",
    ),
    (
        "TA0006-Credential Access/T1110.xxx-Brut force/ID4-OpenSSH brutforce with valid users.evtx",
        "Burst of Failed SSH Passwords on a Windows Server",
    ),
    (
        "TA0003-Persistence/T1505.001-SQL Stored Procedures/"
        "ID15457-SQL Server CMDshell enabled.evtx",
        "SQL Server Option That Runs Operating System Code Changed",
    ),
    (
        "TA0003-Persistence/T1505.001-SQL Stored Procedures/"
        "ID11715-SQL Server started in single mode for psw recovery.evtx",
        "SQL Server Started in Single-User Mode",
    ),
    (
        "TA0003-Persistence/T1505.001-SQL Stored Procedures/"
        "ID4688-SQL Server started in single mode for psw recovery.evtx",
        "SQL Server Service Started in Single-User Mode From the Command Line",
    ),
    (
        "TA0003-Persistence/T1098.xxx-Account manipulation/"
        "ID33205-SQL Server member added to database role.evtx",
        "SQL Server Login Added to a Role",
    ),
    (
        "TA0003-Persistence/T1136-Create account/"
        "ID33205-SQL Server Disabled SA user activated.evtx",
        "SQL Server Login or User Created or Enabled",
    ),
    (
        "TA0005-Defense Evasion/T1562.002-Disable Windows Event Logging/"
        "ID33205-SQL Server Database audit specification disabled.evtx",
        "SQL Server Audit Specification Disabled or Dropped",
    ),
    (
        "TA0006-Credential Access/T1110.xxx-Brut force/"
        "ID33205-SQL Server failed login with SA wrong password.evtx",
        "Burst of Failed SQL Server Logins",
    ),
]
NEW_TITLES = sorted({title for _, title in EXPECTED})


@pytest.fixture(scope="module")
def pack():
    return load_rules([starter_rules()], use_cache=False)


@pytest.fixture(scope="module")
def found(pack, need_data) -> dict[str, set[str]]:
    """Each named recording → the titles of the pack's detections on it (one scan of them all)."""
    folder = need_data("windows", "evtx-to-mitre-attack")
    paths: dict[Path, str] = {}
    for recording in {r for r, _ in EXPECTED}:
        matches = [
            p for p in folder.rglob("*.evtx*") if str(p).removesuffix(".gz").endswith(recording)
        ]
        assert len(matches) == 1, recording
        paths[matches[0].resolve()] = recording
    titles: dict[str, set[str]] = {r: set() for r in paths.values()}
    for d in scan_inputs(sorted(paths), pack).detections:
        titles[paths[Path(d.source_file).resolve()]].add(d.rule_title)
    return titles


def test_every_new_rule_is_in_the_pack(pack) -> None:
    titles = {rule.title for rule in pack.plan.rules} | {c.title for c in pack.plan.correlations}
    assert set(NEW_TITLES) <= titles


@pytest.mark.parametrize(("recording", "title"), EXPECTED)
def test_the_rule_finds_its_attack_recording(found, recording, title) -> None:
    assert title in found[recording]


def test_the_endpoint_rules_are_quiet_on_benign_windows_logs(pack, need_data) -> None:
    """Real benign Security, System, Application and Sysmon logs (setup of local accounts with
    non-expiring passwords, a local password policy change, a few failed logons among them)."""
    benign = need_data("windows", "evtx-rs-benign-and-corrupt")
    fired = {d.rule_title for d in scan_inputs([benign], pack, jobs=2).detections}
    assert fired & set(NEW_TITLES) == set()
