"""`vigil token create|list|revoke` and `vigil hunt` from the command line."""

from __future__ import annotations

import json
import time

from vigil.api.auth import TokenStore
from vigil.ingest import FileReport, discover, read_events
from vigil.store import state_engine
from vigil.store.events import EventStore


def test_token_create_prints_a_token_that_the_store_accepts(run_cli, tmp_path) -> None:
    result = run_cli("token", "create", "--role", "analyst", "--data-dir", tmp_path)
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    principal = TokenStore(state_engine(tmp_path)).verify(token)
    assert principal is not None and principal.role == "analyst"
    assert run_cli("token", "create", "--role", "root", "--data-dir", tmp_path).exit_code == 2


def test_token_list_names_the_tokens_and_revoke_ends_one(run_cli, tmp_path) -> None:
    store = TokenStore(state_engine(tmp_path))
    token, info = store.create("pep", "the-proxy")
    listed = run_cli("token", "list", "--json", "--data-dir", tmp_path)
    assert listed.exit_code == 0, listed.output
    assert [
        (t["id"], t["name"], t["role"]) for t in map(json.loads, listed.stdout.splitlines())
    ] == [(info.id, "the-proxy", "pep")]
    table = run_cli("token", "list", "--data-dir", tmp_path)
    assert table.exit_code == 0 and "pep" in table.stdout and token not in table.stdout
    assert run_cli("token", "revoke", info.id, "--data-dir", tmp_path).exit_code == 0
    assert TokenStore(state_engine(tmp_path)).verify(token) is None
    assert run_cli("token", "revoke", "no-such-id", "--data-dir", tmp_path).exit_code == 2


def test_hunt_runs_sql_and_sigma_over_stored_events(run_cli, need_data, tmp_path) -> None:
    folder = need_data("windows", "evtx-to-mitre-attack")
    events = []
    for source in discover(sorted(folder.rglob("*.evtx*"))[:10]):
        for batch in read_events(source, FileReport(source.name)):
            events.extend(batch)
    EventStore(tmp_path / "events").write(events, range(len(events)), ingested=time.time())
    result = run_cli("hunt", "SELECT count(*) AS n FROM events", "--json", "--data-dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"n": len(events)}
    rule = tmp_path / "any.yml"
    rule.write_text(
        "title: Any Security event\nid: 6a0f9c1e-2b3d-4e5f-8a9b-0c1d2e3f4a5b\nstatus: test\n"
        "logsource: {product: windows, service: security}\n"
        "detection: {selection: {EventID: 4688}, condition: selection}\nlevel: low\n"
    )
    found = run_cli("hunt", "--sigma", rule, "--json", "--data-dir", tmp_path)
    assert found.exit_code == 0, found.output
    lines = [json.loads(line) for line in found.stdout.splitlines() if line.startswith("{")]
    expected = sum(1 for e in events if e.fields.get("EventID") == 4688
                   and e.fields.get("Channel") == "Security")  # fmt: skip
    assert expected and len(lines) == expected
    assert {d["rule_id"] for d in lines} == {"6a0f9c1e-2b3d-4e5f-8a9b-0c1d2e3f4a5b"}
    assert run_cli("hunt", "DROP VIEW events", "--data-dir", tmp_path).exit_code == 2
