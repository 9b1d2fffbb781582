"""The demo intrusion: `vigil demo --json` on a fresh embedded instance gives one incident
holding the whole attack (its alerts, entities across endpoint, network and cloud, and the
stages in kill-chain order), apart from the administrator's noise, and the shipped
containment playbook's dry-run on its workstation; replayed into a running
service in real time, it is detected within the pipeline's own delay."""

from __future__ import annotations

import json

from vigil.config import Settings
from vigil.demo import incident_view, replay
from vigil.serve.service import Service

ATTACK = [
    "Outlook Saves a Macro-Enabled Office Attachment",
    "Office Application Spawns a Shell or Script Host",
    "PowerShell Runs an Encoded Command",
    "PowerShell Download Cradle",
    "LSASS Memory Dumped With comsvcs MiniDump",
    "Logon With New Credentials (Overpass the Hash)",
    "NTLM Network Logon Without a Session Key (Pass the Hash)",
    "PsExec Service Installed",
    "Archive Created With a Password",
    "Rclone Copies Data to Cloud Storage",
    "Large Upload to an Outside Address",
    "IAM Access Key Created",
    "S3 Bucket Policy Grants Access to Everyone",
    "CloudTrail Logging Stopped or Deleted",
]
STAGES = ["initial-access", "execution", "credential-access", "lateral-movement", "exfiltration"]


def test_vigil_demo_json_shows_the_intrusion_as_one_incident(run_cli) -> None:
    result = run_cli("demo", "--json")
    assert result.exit_code == 0, result.output
    incidents = json.loads(result.stdout)
    intrusion, noise = incidents
    rules = [a["rule"] for a in intrusion["alerts"]]
    assert len(rules) == 22 and set(ATTACK) <= set(rules)
    assert rules.index("Outlook Saves a Macro-Enabled Office Attachment") == 0
    assert intrusion["level"] == "critical" and intrusion["risk"] > noise["risk"]
    assert {
        "host:ws-fin-07.northwind.local", "host:fs01.northwind.local", "user:jdoe",
        "ip:10.20.1.57", "ip:10.20.0.21", "ip:185.220.101.47",
        "principal:arn:aws:iam::111122223333:user/jdoe",
    } <= set(intrusion["entities"])  # fmt: skip
    stages = intrusion["stages"]
    assert [s for s in stages if s in STAGES] == STAGES  # in kill-chain order
    assert [a["rule"] for a in noise["alerts"]] == ["whoami Lists All Groups or Privileges"]
    named = [e for e in noise["entities"] if not e.startswith("process:")]
    assert named == ["host:it-adm-02.northwind.local", "user:it.admin"]
    assert not any(e.startswith("user:jdoe") for e in noise["entities"])
    # the LSASS dump started the shipped containment, in dry-run: what it would do
    [run] = intrusion["runs"]
    assert run["playbook"] == "contain-credential-dumping" and run["dry_run"] is True
    steps = {s["step"]: s for s in run["steps"]}
    assert steps["isolate"]["state"] == "done"
    assert steps["isolate"]["inputs"] == {"host": "ws-fin-07.northwind.local"}
    assert steps["open-case"]["state"] == "done"
    assert "no directory is configured" in steps["disable-account"]["error"]
    assert noise["runs"] == []


def test_replayed_live_the_intrusion_is_detected_within_seconds(tmp_path) -> None:
    settings = Settings.model_validate(
        {"data_dir": tmp_path, "indicators": False, "pipeline": {"workers": 0}}
    )
    service = Service(settings)
    service.start()
    try:
        found = replay(service, seconds=3.0)
        assert found is not None
        view = incident_view(service, service.incident_store.get(found))
        # every risk change went out as an event on the `risk` stream
        changes = [json.loads(r) for _, r in service.risk_stream.fetch(0, 10_000, 0)]
    finally:
        service.stop()
    assert len(view["alerts"]) == 22
    assert view["mttd_s"] is not None and 0 <= view["mttd_s"] < 5
    jdoe = [c for c in changes if (c["kind"], c["value"]) == ("user", "jdoe")]
    assert len(jdoe) >= 10 and jdoe[-1]["risk"] > 200  # 22 alerts of medium to critical
    assert {"kind", "value", "risk", "delta", "at"} == set(jdoe[0])
