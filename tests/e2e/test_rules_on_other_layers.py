"""SigmaHQ rules for AWS, Zeek and Linux fire on the reference data of those layers.

Each expectation was checked by reading the rule and the log: the rule's every condition
holds on at least one record of the file (and, where a file is expected to raise nothing,
no SigmaHQ aws rule names its API calls, or the rule needs a value the record lacks). The
comments say which record makes each rule true.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from vigil.scan import scan_inputs

CLOUDTRAIL_CHANGE = "4db60cc0-36fb-42b7-9b58-a5b53019fb74"  # StopLogging/UpdateTrail/DeleteTrail
BACKDOOR_KEYS = "0a5177f4-6ca9-44c2-aacf-d3f3d8b6e4d2"  # CreateAccessKey (filter is a literal)
LAMBDA_LAYER = "97fbabf8-8e1b-47a2-b7d5-a418d2b95e3d"  # UpdateFunctionConfiguration + layers
ASSUMED_ROLE = "905d389b-b853-46d0-9d3d-dea0d3a3cd49"  # userIdentity.type AssumedRole + Role
SNAPSHOT_SHARE = "abae8fec-57bd-4f87-aff6-6e3db989843d"  # ModifySnapshotAttribute
CONSOLE_NO_MFA = "77caf516-34e5-4df9-b4db-20744fea0a60"  # ConsoleLogin, MFAUsed No, Success
LOGIN_PROFILE = "055fb148-60f8-462d-ad16-26926ce050f1"  # UpdateLoginProfile
FLOW_LOGS = "e386b9b5-af12-450e-afff-761730fb8a98"  # DeleteFlowLogs
SECURITY_GROUP = "6fb77778-040f-4015-9440-572aa9b6b580"  # AuthorizeSecurityGroupIngress
SSM_COMMAND = "38e7f511-3f74-41d4-836e-f57dfa18eead"  # SendCommand with no errorCode

# Stratus Red Team detonation -> the SigmaHQ rules that fire on its CloudTrail.
STRATUS = {
    "aws.credential-access.ec2-get-password-data.json": {ASSUMED_ROLE},
    "aws.credential-access.ec2-steal-instance-credentials.json": {ASSUMED_ROLE, SSM_COMMAND},
    "aws.credential-access.secretsmanager-batch-retrieve-secrets.json": set(),
    "aws.credential-access.secretsmanager-retrieve-secrets.json": set(),
    "aws.credential-access.ssm-retrieve-securestring-parameters.json": set(),
    "aws.defense-evasion.cloudtrail-delete.json": {CLOUDTRAIL_CHANGE},
    "aws.defense-evasion.cloudtrail-event-selectors.json": set(),  # PutEventSelectors: no rule
    "aws.defense-evasion.cloudtrail-stop.json": {CLOUDTRAIL_CHANGE},
    "aws.defense-evasion.dns-delete-logs.json": set(),
    "aws.defense-evasion.organizations-leave.json": {ASSUMED_ROLE},
    "aws.defense-evasion.vpc-remove-flow-logs.json": {FLOW_LOGS},
    "aws.discovery.ec2-download-user-data.json": {ASSUMED_ROLE},
    "aws.execution.ec2-launch-unusual-instances.json": {ASSUMED_ROLE},
    # ModifyInstanceAttribute here carries requestParameters.userData, while the startup
    # script rule wants requestParameters.attribute: userData
    "aws.execution.ec2-user-data.json": set(),
    "aws.execution.ssm-send-command.json": {SSM_COMMAND},
    "aws.execution.ssm-start-session.json": set(),
    "aws.exfiltration.ec2-security-group-open-port-22-ingress.json": {SECURITY_GROUP},
    "aws.exfiltration.ec2-share-ami.json": set(),  # ModifyImageAttribute: no rule
    "aws.exfiltration.ec2-share-ebs-snapshot.json": {SNAPSHOT_SHARE},
    "aws.exfiltration.rds-share-snapshot.json": set(),  # ModifyDBSnapshotAttribute: no rule
    "aws.impact.bedrock-invoke-model.json": {ASSUMED_ROLE},
    "aws.initial-access.console-login-without-mfa.json": {CONSOLE_NO_MFA},
    "aws.lateral-movement.ec2-instance-connect.json": set(),
    "aws.lateral-movement.ec2-serial-console-send-ssh-public-key.json": {ASSUMED_ROLE},
    "aws.persistence.iam-backdoor-role.json": set(),
    "aws.persistence.iam-backdoor-user.json": {BACKDOOR_KEYS},
    "aws.persistence.iam-create-admin-user.json": {BACKDOOR_KEYS},
    "aws.persistence.iam-create-backdoor-role.json": set(),
    # CreateLoginProfile, but the rule wants the S3 Browser user agent
    "aws.persistence.iam-create-user-login-profile.json": set(),
    "aws.persistence.lambda-backdoor-function.json": set(),
    "aws.persistence.lambda-layer-extension.json": {LAMBDA_LAYER},
    "aws.persistence.lambda-overwrite-code.json": set(),
    "aws.persistence.rolesanywhere-create-trust-anchor.json": set(),
    "aws.persistence.sts-federation-token.json": set(),
    "aws.privilege-escalation.iam-update-user-login-profile.json": {LOGIN_PROFILE},
}


def fired_by_file(paths: list[Path], sigma_rules) -> dict[str, set[str]]:
    result = scan_inputs(paths, sigma_rules.loaded)
    fired: dict[str, set[str]] = defaultdict(set)
    for detection in result.detections:
        fired[detection.source_file].add(detection.rule_id)
    return fired


LOG4SHELL = ("linux", "otrf", "compound", "Log4Shell")
APT29_ZEEK = ("network", "otrf-apt29-zeek", "day1", "zeek", "individual_zeek_logs")
ATOMIC = ("linux", "otrf", "atomic", "linux")


def test_aws_rules_on_each_stratus_red_team_detonation(need_data, sigma_rules) -> None:
    folder = need_data("cloud", "stratus-red-team")
    fired = fired_by_file([folder], sigma_rules)
    got = {Path(name).name: rules for name, rules in fired.items()}
    assert sorted(p.name for p in folder.glob("aws.*.json")) == sorted(STRATUS)
    assert {name: got.get(name, set()) for name in STRATUS} == STRATUS


@pytest.mark.parametrize(
    ("path", "rule_id", "why"),
    [
        (
            (*ATOMIC, "defense_evasion", "host", "sh_binary_padding_dd.zip"),
            "c52a914f-3d8b-4b2a-bb75-b3991e75f8ba",
            "Binary Padding - Linux: EXECVE a0 dd, a1 if=/dev/zero (a record of the event)",
        ),
        (
            (*ATOMIC, "defense_evasion", "host", "sh_binary_padding_dd.zip"),
            "37222991-11e9-4b6d-8bdf-60fbe48f753e",
            "Overwriting the File with Dev Zero or Null: the same EXECVE, a0 contains dd, "
            "a1 contains if=/dev/zero",
        ),
        (
            (*ATOMIC, "discovery", "host", "sh_arp_cache.zip"),
            None,
            "no SigmaHQ auditd rule names arp",
        ),
        (
            ("network", "wrccdc2018-zeek", "dce_rpc.json.gz"),
            "b640c0b8-87f8-4daa-aef8-95a24261dd1d",
            "MITRE BZAR Indicators for Execution: record 4 is svcctl CreateServiceW (op8)",
        ),
        (
            (*APT29_ZEEK, "SCRANTON_http.log"),
            "e09aed7a-09e0-4c9a-90dd-f0d52507347e",
            "Windows WebDAV User Agent (category proxy: c-useragent is Zeek's user_agent): "
            "records 61-62 are Microsoft-WebDAV-MiniRedir GETs",
        ),
        (
            (*LOG4SHELL, "syslog_sysmon_log4shell_cve2021_44228_jndi_reference.zip"),
            "d292e0af-9a18-420c-9525-ec0ac3936892",
            "Suspicious Java Children Processes (linux process_creation = Sysmon for Linux 1): "
            "record 8, java spawning bash -c {echo,...} (its XML cut short, read to the cut)",
        ),
        (
            (*LOG4SHELL, "syslog_sysmon_log4shell_cve2021_44228_jndi_reference.zip"),
            "83dcd9f6-9ca8-4af7-a16e-a1c7a6b51871",
            "Linux Reverse Shell Indicator (network_connection = Sysmon for Linux 3): "
            "record 62, /bin/bash connecting out",
        ),
    ],
)  # fmt: skip
def test_linux_and_zeek_rules_fire_on_their_data(
    need_data, sigma_rules, path: tuple[str, ...], rule_id: str | None, why: str
) -> None:
    target = need_data(*path)
    fired = set().union(*fired_by_file([target], sigma_rules).values())
    if rule_id is None:
        assert not fired, why
    else:
        assert rule_id in fired, why
