"""`vigil segments` on the APT29 day-1 Zeek conn logs: learn a policy from one sensor's
flows, stage it and check the other sensor's against it (the attack's flows stand out; exit
code 1), compile it (nft accepts it), promote it into force with an audit entry."""

from __future__ import annotations

import orjson

from vigil.respond.audit import AuditLog
from vigil.store import state_engine

SEGMENTS = """\
segments:
  - {name: servers, cidrs: [10.0.0.0/24]}
  - {name: workstations, cidrs: [10.0.1.0/24]}
  - {name: internet, cidrs: [0.0.0.0/0]}
flows: []
"""


def test_learn_stage_check_compile_and_promote(run_cli, need_data, tmp_path) -> None:
    logs = need_data("network", "otrf-apt29-zeek", "day1", "zeek", "individual_zeek_logs")
    segments = tmp_path / "segments.yml"
    segments.write_text(SEGMENTS)
    proposed = tmp_path / "proposed.yml"
    learned = run_cli(
        "segments", "learn", logs / "SCRANTON_conn.log", "--segments", segments, "-o", proposed
    )
    assert learned.exit_code == 0, learned.output
    assert "workstations" in proposed.read_text()
    staged = run_cli("segments", "stage", proposed, logs / "NASHUA_conn.log", "--json")
    assert staged.exit_code == 0, staged.output
    report = orjson.loads(staged.stdout)
    assert report["flows"] > 0 and 0 < report["blocked"] <= report["flows"]
    checked = run_cli("segments", "check", proposed, logs / "NASHUA_conn.log", "--jsonl")
    assert checked.exit_code == 1  # flows outside the policy
    alerts = [orjson.loads(line) for line in checked.stdout.splitlines()]
    assert len(alerts) == report["blocked"]
    assert all("attack.lateral-movement" in a["detection"]["tags"] for a in alerts)
    compiled = run_cli("segments", "compile", proposed)
    assert compiled.exit_code == 0, compiled.output
    assert "table inet vigil_segments" in compiled.stdout
    data = tmp_path / "data"
    active = tmp_path / "active" / "segments.yml"
    promoted = run_cli("segments", "promote", proposed, active, "--data-dir", data)
    assert promoted.exit_code == 0, promoted.output
    assert active.read_text() == proposed.read_text()
    [entry] = [
        e for e in AuditLog(state_engine(data)).entries() if e["action"] == "segments.promoted"
    ]
    assert entry["subject"] == str(active)
