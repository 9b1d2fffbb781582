"""Vigil's own rules: at least 30, every layer, ATT&CK-tagged, all usable, and they find
what third-party attack recordings hold (and nothing in the other recordings)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from vigil.detect.sigma import load_rules, starter_rules
from vigil.scan import scan_inputs


@pytest.fixture(scope="module")
def starter():
    return load_rules([starter_rules()], use_cache=False)


def test_the_pack_loads_whole_and_covers_every_layer(starter) -> None:
    files = sorted(starter_rules().rglob("*.yml"))
    correlations = len(starter.plan.correlations)
    assert len(files) >= 30 and len(starter.plan.rules) + correlations == len(files)
    assert starter.problems == []
    documents = [yaml.safe_load(path.read_text()) for path in files]
    assert len({d["id"] for d in documents}) == len(documents)
    assert {path.parent.name for path in files} == {"endpoint", "network", "cloud", "identity"}
    for document in documents:
        tags = document["tags"]
        assert any(t.startswith("attack.t") for t in tags), document["title"]
        assert document["level"] in ("low", "medium", "high", "critical")
        assert document["author"] == "Vigil team"


def test_stratus_red_team_techniques_are_found_and_only_they(starter, need_data) -> None:
    stratus = need_data("cloud", "stratus-red-team")
    found = Counter(
        (d.rule_title, Path(d.source_file).name)
        for d in scan_inputs(sorted(stratus.glob("aws.*.json")), starter).detections
    )
    assert found == Counter(
        {
            (
                "EC2 Windows Password Data Requested for Many Instances",
                "aws.credential-access.ec2-get-password-data.json",
            ): 6,
            (
                "EC2 Instance Credentials Used From an IAM User's Address",
                "aws.credential-access.ec2-steal-instance-credentials.json",
            ): 1,
            (
                "SSM Run Command Executes a Shell Script on Instances",
                "aws.credential-access.ec2-steal-instance-credentials.json",
            ): 1,
            (
                "Secrets Manager Secrets Retrieved in Batch by Filter",
                "aws.credential-access.secretsmanager-batch-retrieve-secrets.json",
            ): 5,
            (
                "Many Secrets Manager Secrets Retrieved by One Identity",
                "aws.credential-access.secretsmanager-retrieve-secrets.json",
            ): 2,
            (
                "SSM Parameters Listed Then Decrypted by One Identity",
                "aws.credential-access.ssm-retrieve-securestring-parameters.json",
            ): 3,
            (
                "CloudTrail Logging Stopped or Deleted",
                "aws.defense-evasion.cloudtrail-delete.json",
            ): 1,
            (
                "CloudTrail Event Selectors Stop Recording Management Events",
                "aws.defense-evasion.cloudtrail-event-selectors.json",
            ): 1,
            (
                "CloudTrail Logging Stopped or Deleted",
                "aws.defense-evasion.cloudtrail-stop.json",
            ): 1,
            (
                "Route 53 Resolver Query Logging Removed",
                "aws.defense-evasion.dns-delete-logs.json",
            ): 1,
            (
                "AWS Account Attempted to Leave Its Organization",
                "aws.defense-evasion.organizations-leave.json",
            ): 1,
            ("VPC Flow Logs Deleted", "aws.defense-evasion.vpc-remove-flow-logs.json"): 1,
            (
                "EC2 User Data Read for Many Instances",
                "aws.discovery.ec2-download-user-data.json",
            ): 3,
            (
                "EC2 GPU or Accelerated Instances Launched",
                "aws.execution.ec2-launch-unusual-instances.json",
            ): 1,
            ("EC2 Instance User Data Modified", "aws.execution.ec2-user-data.json"): 1,
            (
                "SSM Run Command Executes a Shell Script on Instances",
                "aws.execution.ssm-send-command.json",
            ): 1,
            (
                "SSM Sessions Started on Several Instances by One Identity",
                "aws.execution.ssm-start-session.json",
            ): 1,
            (
                "Security Group Opens SSH, RDP or All Traffic to the Internet",
                "aws.exfiltration.ec2-security-group-open-port-22-ingress.json",
            ): 1,
            (
                "EC2 AMI Shared With Another Account or Made Public",
                "aws.exfiltration.ec2-share-ami.json",
            ): 1,
            (
                "EBS Snapshot Shared With Another Account or Made Public",
                "aws.exfiltration.ec2-share-ebs-snapshot.json",
            ): 1,
            (
                "RDS Snapshot Shared With Another Account or Made Public",
                "aws.exfiltration.rds-share-snapshot.json",
            ): 1,
            ("Bedrock Foundation Model Access Enabled", "aws.impact.bedrock-invoke-model.json"): 3,
            (
                "AWS Console Login Without MFA",
                "aws.initial-access.console-login-without-mfa.json",
            ): 1,
            (
                "EC2 Instance Connect SSH Keys Pushed to Several Instances",
                "aws.lateral-movement.ec2-instance-connect.json",
            ): 1,
            (
                "EC2 Serial Console SSH Key Pushed",
                "aws.lateral-movement.ec2-serial-console-send-ssh-public-key.json",
            ): 3,
            (
                "IAM Role Trust Policy Lets a Whole Account or Anyone Assume It",
                "aws.persistence.iam-backdoor-role.json",
            ): 1,
            ("IAM Access Key Created", "aws.persistence.iam-backdoor-user.json"): 1,
            (
                "AdministratorAccess Policy Attached to a User, Role or Group",
                "aws.persistence.iam-create-admin-user.json",
            ): 1,
            ("IAM Access Key Created", "aws.persistence.iam-create-admin-user.json"): 1,
            (
                "AdministratorAccess Policy Attached to a User, Role or Group",
                "aws.persistence.iam-create-backdoor-role.json",
            ): 1,
            (
                "IAM Role Trust Policy Lets a Whole Account or Anyone Assume It",
                "aws.persistence.iam-create-backdoor-role.json",
            ): 1,
            (
                "IAM Console Password Set for Another User",
                "aws.persistence.iam-create-user-login-profile.json",
            ): 1,
            (
                "Lambda Function Opened to Anyone",
                "aws.persistence.lambda-backdoor-function.json",
            ): 1,
            (
                "Lambda Layer Added to a Function by a Person",
                "aws.persistence.lambda-layer-extension.json",
            ): 1,
            (
                "Lambda Function Code Replaced by a Person",
                "aws.persistence.lambda-overwrite-code.json",
            ): 1,
            (
                "IAM Roles Anywhere Trust Anchor Created or Changed",
                "aws.persistence.rolesanywhere-create-trust-anchor.json",
            ): 1,
            (
                "STS Federation Token Requested by an IAM User",
                "aws.persistence.sts-federation-token.json",
            ): 1,
            (
                "IAM Console Password Set for Another User",
                "aws.privilege-escalation.iam-update-user-login-profile.json",
            ): 1,
        }
    )


@pytest.mark.parametrize(
    ("recording", "title"),
    [
        (
            "T1003-Credential dumping/ID1-LSASS dump with LSASSY (SYSMON).evtx",
            "LSASS Memory Dumped With comsvcs MiniDump",
        ),
        (
            "T1003-Credential dumping/ID10-Mimikatz LSASS process dump.evtx",
            "Process Opens LSASS With Memory Read Access",
        ),
        (
            "T1550-Use Alternate Authentication Material/ID4624-Mimikatz Pass the hash.evtx",
            "Logon With New Credentials (Overpass the Hash)",
        ),
        (
            "T1543.003-Create or Modify System Process-Windows Service/"
            "ID7045-7036 PSexec service installation.evtx",
            "PsExec Service Installed",
        ),
        (
            "T1490-Inhibit System Recovery/ID4688-Delete VSS backup (WMI).evtx",
            "Volume Shadow Copies Deleted",
        ),
        (
            "T1098.xxx-Account manipulation/ID4738-Do not require Kerberos preauthentication.evtx",
            "Kerberos Pre-Authentication Turned Off for an Account",
        ),
    ],
)
def test_windows_attack_recordings_are_found(starter, need_data, recording, title) -> None:
    folder = need_data("windows", "evtx-to-mitre-attack")
    matches = [p for p in folder.rglob("*.evtx*") if str(p).replace(".gz", "").endswith(recording)]
    assert len(matches) == 1, recording
    titles = {d.rule_title for d in scan_inputs(matches, starter).detections}
    assert title in titles


def test_vigil_scan_uses_the_pack_on_request(run_cli, need_data, tmp_path) -> None:
    stratus = need_data("cloud", "stratus-red-team")
    out = tmp_path / "found.jsonl"
    result = run_cli("scan", str(stratus), "--starter-rules", "--format", "jsonl", "-o", str(out))
    assert result.exit_code == 0, result.output
    titles = Counter(json.loads(line)["rule_title"] for line in out.read_text().splitlines())
    assert titles == {
        "AWS Account Attempted to Leave Its Organization": 1,
        "AWS Console Login Without MFA": 1,
        "AdministratorAccess Policy Attached to a User, Role or Group": 2,
        "Bedrock Foundation Model Access Enabled": 3,
        "CloudTrail Event Selectors Stop Recording Management Events": 1,
        "CloudTrail Logging Stopped or Deleted": 2,
        "EBS Snapshot Shared With Another Account or Made Public": 1,
        "EC2 AMI Shared With Another Account or Made Public": 1,
        "EC2 GPU or Accelerated Instances Launched": 1,
        "EC2 Instance Connect SSH Keys Pushed to Several Instances": 1,
        "EC2 Instance Credentials Used From an IAM User's Address": 1,
        "EC2 Instance User Data Modified": 1,
        "EC2 Serial Console SSH Key Pushed": 3,
        "EC2 User Data Read for Many Instances": 3,
        "EC2 Windows Password Data Requested for Many Instances": 6,
        "IAM Access Key Created": 2,
        "IAM Console Password Set for Another User": 2,
        "IAM Role Trust Policy Lets a Whole Account or Anyone Assume It": 2,
        "IAM Roles Anywhere Trust Anchor Created or Changed": 1,
        "Lambda Function Code Replaced by a Person": 1,
        "Lambda Function Opened to Anyone": 1,
        "Lambda Layer Added to a Function by a Person": 1,
        "Many Secrets Manager Secrets Retrieved by One Identity": 2,
        "RDS Snapshot Shared With Another Account or Made Public": 1,
        "Route 53 Resolver Query Logging Removed": 1,
        "SSM Parameters Listed Then Decrypted by One Identity": 3,
        "SSM Run Command Executes a Shell Script on Instances": 2,
        "SSM Sessions Started on Several Instances by One Identity": 1,
        "STS Federation Token Requested by an IAM User": 1,
        "Secrets Manager Secrets Retrieved in Batch by Filter": 5,
        "Security Group Opens SSH, RDP or All Traffic to the Internet": 1,
        "VPC Flow Logs Deleted": 1,
    }
    bare = run_cli("scan", str(stratus))
    assert bare.exit_code == 2 and "--starter-rules" in bare.stderr


def test_the_pack_on_the_benign_baselines(starter, need_data) -> None:
    """Real benign Windows logs (Security, System, Sysmon: a Process Monitor session reading
    LSASS among them) and WRCCDC 2018's Zeek logs raise nothing: there, three management
    hosts map the ADMIN$ share of three servers each, 261 times, which a mapping alone cannot
    tell from an intruder's; the spread correlation alerts from four hosts, and stays quiet."""
    windows = scan_inputs([need_data("windows", "evtx-rs-benign-and-corrupt")], starter, jobs=2)
    assert [d.rule_title for d in windows.detections] == []
    zeek = scan_inputs([need_data("network", "wrccdc2018-zeek")], starter, jobs=2).detections
    assert [d.rule_title for d in zeek] == []


def test_admin_shares_mapped_on_four_hosts_by_one_is_lateral_spread(starter, tmp_path) -> None:
    def mapping(ts: float, src: str, dst: str, share: str = "ADMIN$") -> str:
        return json.dumps(
            {
                "ts": ts,
                "uid": f"C{ts}",
                "id.orig_h": src,
                "id.orig_p": 49152,
                "id.resp_h": dst,
                "id.resp_p": 445,
                "path": f"\\\\{dst}\\{share}",
                "share_type": "DISK",
                "_path": "smb_mapping",
            }
        )

    log = tmp_path / "smb_mapping.log"
    log.write_text(
        "\n".join(
            [
                *(mapping(1700000000 + 60 * n, "10.0.0.66", f"10.0.1.{n}") for n in range(1, 5)),
                *(
                    mapping(1700000000 + 60 * n, "10.0.0.7", f"10.0.2.{n}", "C$")
                    for n in range(1, 4)
                ),
                mapping(1700090000, "10.0.0.7", "10.0.2.9"),  # a fourth host, but a day later
            ]
        )
        + "\n"
    )
    found = Counter((d.rule_title, d.kind) for d in scan_inputs([log], starter).detections)
    assert found == {  # a mapping alone does not alert
        ("Administrative Shares Mapped on Many Hosts", "correlation"): 1,  # 10.0.0.66 only
    }
