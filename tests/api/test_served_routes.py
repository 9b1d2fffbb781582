"""Every API route: 401 without a token, 403 with a role that may not, 2xx with one that may;
the OpenAPI document lists them all. Served by a real service (embedded stores, a rule)."""

from __future__ import annotations

import hashlib
import io
import tempfile
import time
from pathlib import Path

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from vigil.api.auth import KNOWN_S, PERMISSIONS, ROLES, TokenStore
from vigil.config import Settings
from vigil.correlate import AlertIn
from vigil.detect.sigma import load_rules
from vigil.serve.service import Service
from vigil.store.events import EventStore
from vigil.web.server import build_app

RULE = """\
title: Whoami
id: 0b3a1c52-8d7e-4f61-9a2b-3c4d5e6f7a8b
status: test
logsource: {product: windows, category: process_creation}
detection:
    selection: {Image|endswith: '\\\\whoami.exe'}
    condition: selection
level: high
"""
EVENT = (
    b'{"EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational", "Hostname": "pc1",'
    b' "UtcTime": "2026-11-28 10:00:00.000", "Image": "C:\\\\Windows\\\\System32\\\\whoami.exe"}'
)

WAZUH = (
    b'{"timestamp": "2026-11-28T10:15:02.123+0000", "rule": {"level": 10, "id": "5712",'
    b' "description": "sshd: brute force"}, "agent": {"name": "web-01", "ip": "10.0.0.5"},'
    b' "data": {"srcip": "203.0.113.9", "dstuser": "root"}}\n'
)

CMDB = b"hostname,ip,criticality,exposure\nweb1,10.0.0.8,crown-jewel,yes\n"
# a playbook whose one step waits for a responder's approval
GATE = {
    "id": "gate",
    "name": "Gate",
    "trigger": {"type": "alert", "rules": ["none"]},
    "steps": [
        {
            "id": "gate",
            "action": "case.open",
            "with": {"incident": "x"},
            "approval": {"roles": ["responder"]},
        }
    ],
}

GRANTS = Path(tempfile.mkdtemp()) / "grants.yml"  # JSON is YAML
# an exercise's results.json, as `vigil exercise run` writes and reports it
RESULTS = {
    "url": "http://vigil.test", "started": 1.0, "finished": 2.0, "tested": 1, "detected": 1,
    "passed": 1, "coverage": 1.0, "mttd_s": 0.5, "mttc_s": None,
    "by_technique": {"T1003": {"tested": 1, "detected": 1, "rules": ["r"]}}, "gaps": [],
    "scenarios": [{"id": "a", "name": "a", "techniques": ["T1003"], "tactics": [],
                   "detected": True, "time_to_detect_s": 0.5, "passed": True}],
}  # fmt: skip

# (method, path, permission, request body), one per route
CALLS = [
    ("GET", "/metrics", "metrics:read", None),
    ("POST", "/api/v1/ingest", "events:write", EVENT),
    ("GET", "/api/v1/alerts", "alerts:read", None),
    ("GET", "/api/v1/alerts/{alert_id}", "alerts:read", None),
    ("POST", "/api/v1/alerts/import", "events:write", WAZUH),
    ("POST", "/api/v1/hunts/sql", "hunts:run", {"query": "select count(*) from events"}),
    ("POST", "/api/v1/hunts/sigma", "hunts:run", {"rule": RULE, "since": "30d"}),
    ("GET", "/api/v1/hunts/saved", "hunts:run", None),
    ("POST", "/api/v1/hunts/saved", "hunts:manage",
     {"name": "whoami", "query": "select host from events", "every_seconds": 60}),
    ("DELETE", "/api/v1/hunts/saved/{name}", "hunts:manage", None),
    ("GET", "/api/v1/hunts/saved/{name}/notebook", "hunts:run", None),
    ("POST", "/api/v1/hunts/saved/{name}/notebook", "hunts:manage",
     {"kind": "note", "text": "nothing on pc1"}),
    ("GET", "/api/v1/rules", "rules:read", None),
    ("GET", "/api/v1/indicators", "indicators:read", None),
    ("POST", "/api/v1/indicators", "indicators:write",
     {"type": "domain", "value": "evil.example"}),
    ("GET", "/api/v1/indicators/stats", "indicators:read", None),
    ("GET", "/api/v1/indicators/recent", "indicators:read", None),
    ("GET", "/api/v1/indicators/sightings", "indicators:read", None),
    ("GET", "/api/v1/tokens", "tokens:manage", None),
    ("POST", "/api/v1/tokens", "tokens:manage", {"role": "viewer", "name": "made"}),
    ("DELETE", "/api/v1/tokens/{token_id}", "tokens:manage", None),
    ("GET", "/api/v1/incidents", "incidents:read", None),
    ("GET", "/api/v1/incidents/{incident_id}", "incidents:read", None),
    ("POST", "/api/v1/incidents/{incident_id}/status", "cases:write", {"status": "triaged"}),
    ("POST", "/api/v1/incidents/{incident_id}/assignee", "cases:write", {"assignee": "bo"}),
    ("POST", "/api/v1/incidents/{incident_id}/notes", "cases:write", {"text": "seen"}),
    ("POST", "/api/v1/incidents/{incident_id}/tasks", "cases:write", {"title": "image disk"}),
    ("POST", "/api/v1/incidents/{incident_id}/tasks/{task_id}/done", "cases:write", None),
    ("POST", "/api/v1/incidents/{incident_id}/evidence", "cases:write", b"pcap bytes"),
    ("GET", "/api/v1/evidence/{sha256}", "incidents:read", None),
    ("GET", "/api/v1/entities", "incidents:read", None),
    ("GET", "/api/v1/response-metrics", "incidents:read", None),
    ("GET", "/api/v1/assets", "assets:read", None),
    ("GET", "/api/v1/assets/{node_id:path}", "assets:read", None),
    ("GET", "/api/v1/assets/paths", "assets:read", None),
    ("GET", "/api/v1/assets/blast-radius", "assets:read", None),
    ("GET", "/api/v1/assets/privesc", "assets:read", None),
    ("GET", "/api/v1/risk", "assets:read", None),
    ("POST", "/api/v1/exercises", "exercises:write", RESULTS),
    ("GET", "/api/v1/exercises", "rules:read", None),
    ("GET", "/api/v1/exercises/latest", "rules:read", None),
    ("GET", "/api/v1/exercises/{run_id}", "rules:read", None),
    ("GET", "/api/v1/coverage", "rules:read", None),
    ("POST", "/api/v1/assets/import", "assets:write", CMDB),
    ("GET", "/api/v1/playbooks", "playbooks:read", None),
    ("GET", "/api/v1/playbooks/schema", "playbooks:read", None),
    ("POST", "/api/v1/playbooks/validate", "playbooks:read", GATE),
    ("GET", "/api/v1/playbooks/{playbook_id}", "playbooks:read", None),
    ("GET", "/api/v1/playbooks/{playbook_id}/cacao", "playbooks:read", None),
    ("POST", "/api/v1/playbooks/{playbook_id}/runs", "playbooks:run", {"host": "ws1"}),
    ("GET", "/api/v1/runs", "playbooks:read", None),
    ("GET", "/api/v1/runs/pending", "playbooks:read", None),
    ("GET", "/api/v1/runs/{run_id}", "playbooks:read", None),
    ("POST", "/api/v1/runs/{run_id}/steps/{step_id}/decision", "playbooks:approve",
     {"decision": "approve"}),
    ("POST", "/api/v1/runs/{run_id}/decision", "playbooks:approve", {"decision": "deny"}),
    ("POST", "/api/v1/runs/{run_id}/undo", "playbooks:run", None),
    ("GET", "/api/v1/respond/metrics", "metrics:read", None),
    ("POST", "/api/v1/access/decision", "access:decide",
     {"subject": "alice", "action": "read", "resource": "wiki"}),
    ("GET", "/api/v1/segments", "assets:read", None),
    ("GET", "/api/v1/ssf/jwks", "access:decide", None),
    ("POST", "/api/v1/access/grants", "access:decide",
     {"subject": "alice", "resource": "prod-db", "actions": ["admin"], "seconds": 60,
      "reason": "test", "groups": ["dba"]}),
    ("GET", "/api/v1/access/grants", "playbooks:read", None),
    ("GET", "/api/v1/access/decisions", "playbooks:read", None),
    ("GET", "/api/v1/access/sessions", "playbooks:read", None),
    ("POST", "/api/v1/access/grants/{grant_id}/decision", "playbooks:approve",
     {"decision": "approve"}),
    ("POST", "/api/v1/ssf/poll", "access:decide", {"receiver": "proxy"}),
]  # fmt: skip


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    GRANTS.write_text(
        '{"grants": [{"id": "dba", "subjects": {"groups": ["dba"]}, "resources": {"names":'
        ' ["prod-db"]}, "actions": ["admin"]}, {"id": "audit", "subjects": {"users": ["carol"]},'
        ' "resources": {"names": ["payroll"]}, "actions": ["read"], "approval": true}]}'
    )
    (folder / "rules").mkdir()
    (folder / "rules" / "whoami.yml").write_text(RULE)
    loaded = load_rules([folder / "rules"], use_cache=False)
    settings = Settings.model_validate(
        {
            "data_dir": folder / "data",
            "indicators": False,
            "zerotrust": {
                "receivers": [{"id": "proxy", "audience": "https://proxy.test"}],
                "policies": [str(GRANTS)],
            },
        }
    )
    service = Service(settings, loaded=loaded)
    tokens = TokenStore(service.engine)
    keys = {role: tokens.create(role, f"test-{role}")[0] for role in ROLES}
    with TestClient(build_app(service)) as client:
        yield client, keys, service, tokens


def call(client, method: str, path: str, body, token: str | None, served_state):
    _, _, service, tokens = served_state
    if "{alert_id}" in path:
        # an alert of its own (under xdist the ingest tests may run in another worker)
        service.ingest([EVENT], source="test")
        service.pipeline.drain(10)
        alerts = service.alert_store.list(limit=1)
        path = path.replace("{alert_id}", alerts[0]["id"] if alerts else "none")
    if "{name}" in path:
        service.save_hunt("to-delete", query="select 1", sigma=None, every_seconds=60)
        path = path.replace("{name}", "to-delete")
    if "{token_id}" in path:
        path = path.replace("{token_id}", tokens.create("viewer", "to-revoke")[1].id)
    if "{incident_id}" in path or "{sha256}" in path:  # a fresh incident each call
        stamp = time.time()
        (incident,) = service.incidents.feed(
            [AlertIn(id=f"t-{stamp}", time=stamp, rule="r", title="r",
                     entities=(("host", f"h-{stamp}"),))]
        )  # fmt: skip
        path = path.replace("{incident_id}", incident.id)
        if "{task_id}" in path:
            task = service.incident_store.add_task(incident.id, "test", "a task")
            path = path.replace("{task_id}", str(task))
        if path.endswith("/evidence"):
            path += "?name=capture.pcap"
    if "{sha256}" in path:
        item = service.incident_store.add_evidence(
            incident.id, "test", "e.bin", io.BytesIO(b"evidence")
        )
        path = path.replace("{sha256}", item["sha256"])
    if path == "/api/v1/indicators":
        path += "?value=example.com"
    if path == "/api/v1/alerts/import":
        path += "?format=wazuh&name=alerts.json"
    if "/assets" in path:  # an asset of its own, with a relationship
        service.import_assets(CMDB, "cmdb.csv")
        path = path.replace("{node_id:path}", "host:web1")
        if path.endswith("/blast-radius"):
            path += "?node=host:web1"
        if path.endswith("/import"):
            path += "?name=cmdb.csv"
    if path.startswith("/api/v1/exercises/"):  # a run reported, to read back
        run = service.exercise_runs.add(RESULTS, name="test")
        path = path.replace("{run_id}", run["id"])
    if "{playbook_id}" in path:
        path = path.replace("{playbook_id}", "contain-credential-dumping")
    if "{grant_id}" in path:  # a grant waiting for a responder's decision, each call
        grant = service.grants.ask("carol", "payroll", ["read"], 60, "audit")
        path = path.replace("{grant_id}", grant.id)
    if "{run_id}" in path:
        path = path.replace("{run_id}", a_run(service, path))
        path = path.replace("{step_id}", "gate")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if isinstance(body, bytes):
        headers["Content-Type"] = "application/x-ndjson"
        return client.request(method, path, content=body, headers=headers)
    return client.request(method, path, json=body, headers=headers)


def a_run(service, path: str) -> str:
    """A fresh run in the state the route needs: a step waiting for approval, held by the
    storm guard, or finished (to undo)."""
    from vigil.respond.actions import ACTIONS
    from vigil.respond.playbook import parse

    responder = service.responder
    responder.playbooks["gate"] = parse(GATE, "gate", ACTIONS)
    gated = path.endswith(("/steps/{step_id}/decision", "/undo"))
    if path.endswith("/decision") and not gated:  # held by the storm guard
        book = responder.playbook("contain-credential-dumping")
        context = {"alert": None, "incident": None, "entity": {"host": "ws1"}, "entities": {}}
        row = responder._new_run(
            book, "alert", "held", context, time.time(), key=str(time.time_ns())
        )
        row["state"] = "held"
        return responder._create([row])[0]  # type: ignore[no-any-return]
    run_id = responder.start_run(
        "gate" if gated else "contain-credential-dumping",
        "test",
        context={"entity": {"host": "ws1"}},
    )
    deadline = time.monotonic() + 10
    while responder.run(run_id)["state"] in ("queued", "running") and time.monotonic() < deadline:
        responder.execute(run_id)
        time.sleep(0.05)
    if path.endswith("/undo"):  # a run ended by a denial is finished
        responder.deny(run_id, "gate", "test", {"admin"})
        while responder.run(run_id)["state"] not in ("denied",) and time.monotonic() < deadline:
            responder.execute(run_id)
            time.sleep(0.05)
    return run_id


def test_every_route_is_in_this_table_and_in_the_openapi_document(served) -> None:
    client = served[0]
    routes = {  # included routers are nodes of app.routes: iter_route_contexts walks them
        (method, route.path)
        for route in iter_route_contexts(client.app.routes)
        if isinstance(route.original_route, APIRoute)
        and route.original_route.include_in_schema  # the console's pages: tests/web
        and route.path != "/health"
        for method in route.methods or ()
    }
    assert routes == {(method, path) for method, path, _, _ in CALLS}
    documented = client.get("/openapi.json").json()["paths"]
    for method, path in routes | {("GET", "/health")}:
        # OpenAPI writes a path parameter without its converter (`{node_id:path}`)
        assert method.lower() in documented[path.replace(":path}", "}")], (method, path)


def test_health_needs_no_token(served) -> None:
    assert served[0].get("/health").json()["status"] in ("ok", "degraded")


@pytest.mark.parametrize(("method", "path", "permission", "body"), CALLS)
def test_without_a_token_401_with_a_role_that_may_not_403_with_one_that_may_2xx(
    served, method, path, permission, body
) -> None:
    client, keys, *_ = served
    unauthenticated = call(client, method, path, body, None, served)
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["WWW-Authenticate"] == "Bearer"
    assert call(client, method, path, body, "vgl_" + "x" * 43, served).status_code == 401
    allowed = PERMISSIONS[permission]
    for role in ROLES:
        response = call(client, method, path, body, keys[role], served)
        if role in allowed:
            assert 200 <= response.status_code < 300, (role, response.text)
        else:
            assert response.status_code == 403, (role, response.status_code)


def test_ingested_event_becomes_an_alert_readable_over_the_api(served) -> None:
    client, keys, service, _ = served
    headers = {"Authorization": f"Bearer {keys['ingest']}", "Content-Type": "application/x-ndjson"}
    reply = client.post("/api/v1/ingest", content=EVENT, headers=headers)
    assert reply.status_code == 202 and reply.json()["accepted"] == 1
    assert service.drain(10)
    reader = {"Authorization": f"Bearer {keys['viewer']}"}
    rule = {"rule_id": "0b3a1c52-8d7e-4f61-9a2b-3c4d5e6f7a8b"}
    alerts = client.get("/api/v1/alerts", params=rule, headers=reader).json()
    assert alerts and alerts[0]["event"]["Image"].endswith("whoami.exe")
    metrics = client.get("/metrics", headers=reader).text
    assert "vigil_events_in_total" in metrics and "vigil_pipeline_lag_events" in metrics
    # the alert became an incident on its host, with the alert and its reason
    on_pc1 = [
        client.get(f"/api/v1/incidents/{i['id']}", headers=reader).json()
        for i in client.get("/api/v1/incidents", headers=reader).json()
        if "host:pc1" in i["entities"]
    ]  # fmt: skip
    (full,) = [i for i in on_pc1 if alerts[0]["id"] in i["alert_ids"]]
    assert full["reasons"][0]["reason"].startswith("opened")
    assert full["alerts_detail"][0]["rule_title"] == "Whoami"
    risky = client.get("/api/v1/entities", headers=reader).json()
    assert {"kind": "host", "value": "pc1"}.items() <= next(
        e for e in risky if e["value"] == "pc1"
    ).items()


def test_other_tools_alerts_become_alerts_and_incidents_once(served, need_data) -> None:
    client, keys, *_ = served
    eve = need_data("network", "suricata-eve-alerts", "wrccdc-2018", "alerts-only.json")
    headers = {"Authorization": f"Bearer {keys['ingest']}"}
    params = {"format": "suricata", "name": "wrccdc-2018.json"}
    first = client.post("/api/v1/alerts/import", params=params, content=eve.read_bytes(),
                        headers=headers).json()  # fmt: skip
    assert (first["accepted"], first["new_alerts"], first["rejected"]) == (207, 207, 0)
    assert first["incidents"]
    again = client.post("/api/v1/alerts/import", params=params, content=eve.read_bytes(),
                        headers=headers).json()  # fmt: skip
    assert (again["accepted"], again["new_alerts"], again["incidents"]) == (207, 0, [])
    reader = {"Authorization": f"Bearer {keys['viewer']}"}
    got = client.get("/api/v1/alerts", params={"kind": "suricata", "limit": 1000},
                     headers=reader).json()  # fmt: skip
    assert len(got) == 207 and got[0]["event"]["event_type"] == "alert"
    bad = client.post("/api/v1/alerts/import", params={"format": "splunk"}, content=b"x",
                      headers=headers)  # fmt: skip
    assert bad.status_code == 422
    # CSV with a mapping; a bad row is set aside with its reason
    mapped = {"format": "csv", "name": "edr.csv",
              "map": ["time=when", "rule=sig", "host=box", "user=who", "level=sev"]}  # fmt: skip
    body = (
        b"when,sig,box,who,sev\n2026-11-28T10:00:00Z,Mimikatz,WS-9,eve,critical\nnope,x,y,z,low\n"
    )
    csv_reply = client.post("/api/v1/alerts/import", params=mapped, content=body,
                            headers=headers).json()  # fmt: skip
    assert (csv_reply["accepted"], csv_reply["rejected"]) == (1, 1)
    incident = client.get(f"/api/v1/incidents/{csv_reply['incidents'][0]}", headers=reader).json()
    assert {"host:ws-9", "user:eve"} <= set(incident["entities"])
    assert incident["level"] == "critical"
    unmapped = client.post("/api/v1/alerts/import", params={"format": "csv"}, content=body,
                           headers=headers)  # fmt: skip
    assert unmapped.status_code == 400 and "time=COLUMN" in unmapped.text


def test_over_the_body_limit_413_and_overload_503_with_retry_after(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", indicators=False,
                        pipeline={"max_lag": 3}, api={"max_body_bytes": 1000})  # fmt: skip
    service = Service(settings, loaded=load_rules([]))
    token = TokenStore(service.engine).create("ingest", "t")[0]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    client = TestClient(build_app(service))  # not started: nothing drains the intake log
    assert client.post("/api/v1/ingest", content=b"x" * 2000, headers=headers).status_code == 413
    big = client.post("/api/v1/alerts/import", params={"format": "wazuh"}, content=b"x" * 2000,
                      headers=headers)  # fmt: skip
    assert big.status_code == 413  # alert imports and evidence have the same limit
    assert client.post("/api/v1/ingest", content=b"{}\n{}", headers=headers).status_code == 202
    refused = client.post("/api/v1/ingest", content=b"{}\n{}", headers=headers)
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
    service.stream.close()


def test_tokens_are_stored_hashed_and_revoked_ones_refused(served, tmp_path) -> None:
    client, _, service, tokens = served
    token, info = tokens.create("viewer", "hashed")
    database = Path(str(service.engine.url.database)).read_bytes()
    assert token.encode() not in database
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/rules", headers=headers).status_code == 200
    tokens.revoke(info.id)  # elsewhere (as `vigil token revoke` does): refused within KNOWN_S
    revoked = time.monotonic()
    while client.get("/api/v1/rules", headers=headers).status_code == 200:
        assert time.monotonic() - revoked < KNOWN_S + 0.5, "a revoked token is still taken"
        time.sleep(0.05)
    assert client.get("/api/v1/rules", headers=headers).status_code == 401


def test_a_token_revoked_through_the_api_is_refused_at_once(served) -> None:
    client, keys, _, _ = served
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    made = client.post("/api/v1/tokens", json={"role": "viewer", "name": "short"}, headers=admin)
    headers = {"Authorization": f"Bearer {made.json()['token']}"}
    assert client.get("/api/v1/rules", headers=headers).status_code == 200  # now remembered
    assert client.delete(f"/api/v1/tokens/{made.json()['id']}", headers=admin).status_code == 204
    assert client.get("/api/v1/rules", headers=headers).status_code == 401


def test_a_tailed_log_file_is_read_into_the_pipeline(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text(
        "Nov 28 10:00:01 web1 sshd[411]: Failed password for root from 203.0.113.9 port 2222 ssh2\n"
    )
    settings = Settings(data_dir=tmp_path / "d", indicators=False, listeners={"tail": [log]})
    service = Service(settings, loaded=load_rules([]))
    service.start()
    try:
        deadline = time.monotonic() + 10
        while service.pipeline.totals["events"] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        with log.open("a") as out:
            out.write("Nov 28 10:00:02 web1 sshd[411]: Accepted password for bob from 10.0.0.5 "
                      "port 5000 ssh2\n")  # fmt: skip
        while service.pipeline.totals["events"] < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        service.stop()
    assert service.pipeline.totals["events"] == 2
    stored = [e for batch in EventStore(tmp_path / "d" / "events").events(None, None)
              for e in batch]  # fmt: skip
    assert {e.fields.get("hostname") for e in stored} == {"web1"}
    assert all(e.source == "tail:auth.log" for e in stored)


def test_case_errors_get_the_status_of_their_kind(served) -> None:
    """Unknown incident or task: 404; a status it cannot reach from here: 409; a status that
    does not exist: 400 (chosen by the error's kind, not its text)."""
    client, keys, service, _ = served
    headers = {"Authorization": f"Bearer {keys['analyst']}"}
    stamp = time.time()
    (incident,) = service.incidents.feed(
        [AlertIn(id=f"k-{stamp}", time=stamp, rule="r", title="r", entities=(("host", "k"),))]
    )
    url = f"/api/v1/incidents/{incident.id}"
    assert client.get("/api/v1/incidents/INC-none", headers=headers).status_code == 404
    assert client.post(f"{url}/tasks/999/done", headers=headers).status_code == 404
    assert client.post(f"{url}/status", json={"status": "nope"}, headers=headers).status_code == 400
    reply = client.post(f"{url}/status", json={"status": "new"}, headers=headers)
    assert reply.status_code == 409, reply.text
    assert "can go to" in reply.json()["detail"]


def test_segments_route_shows_the_policy_in_force(tmp_path) -> None:
    policy = tmp_path / "segments.yml"
    policy.write_text(
        "segments:\n  - {name: users, cidrs: [10.0.1.0/24], intra: deny}\n"
        "  - {name: servers, cidrs: [10.0.0.0/24]}\n"
        "flows:\n  - {src: users, dst: servers, protocol: tcp, ports: [443, 8000-8080]}\n"
    )
    settings = Settings.model_validate(
        {"data_dir": tmp_path / "d", "indicators": False, "zerotrust": {"segments": str(policy)}}
    )
    service = Service(settings, loaded=load_rules([]))
    token = TokenStore(service.engine).create("viewer", "t")[0]
    with TestClient(build_app(service)) as client:
        shown = client.get("/api/v1/segments", headers={"Authorization": f"Bearer {token}"})
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert body["problem"] is None and body["path"] == str(policy)
    assert [s["name"] for s in body["segments"]] == ["users", "servers"]
    assert body["flows"] == [
        {"src": "users", "dst": "servers", "protocol": "tcp", "ports": [443, "8000-8080"]}
    ]
    assert body["stage"] == {
        "path": str(policy), "since": body["stage"]["since"], "problem": None,
        "sha256": hashlib.sha256(policy.read_bytes()).hexdigest(), "checked": 0, "violations": 0,
    }  # fmt: skip
