"""Exercise results over the API: `vigil exercise run` against a real served Vigil (uvicorn,
Vigil's own rules) reports its results when it ends, and they are listed, read back and
shown on the ATT&CK coverage; the document's shape is checked and its size limited; only
roles that may report do; a role that may not gets a warning, never a failed run."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from vigil.api.auth import TokenStore
from vigil.config import Settings
from vigil.exercise.run import Result, report_to
from vigil.serve.service import Service
from vigil.web.server import build_app

ROLES = ("admin", "analyst", "responder", "viewer", "ingest")
# A Sysmon process creation a starter rule finds (comsvcs MiniDump: T1003.001), and one
# nothing finds
DUMP = {
    "EventID": 1,
    "Channel": "Microsoft-Windows-Sysmon/Operational",
    "Hostname": "ws-7",
    "UtcTime": "2026-11-28 10:00:00.000",
    "Image": "C:\\Windows\\System32\\rundll32.exe",
    "CommandLine": "rundll32.exe C:\\Windows\\System32\\comsvcs.dll, MiniDump 624 l.dmp full",
}
QUIET = {**DUMP, "Image": "C:\\Windows\\notepad.exe", "CommandLine": "notepad.exe notes.txt"}
SCENARIOS = {
    "scenarios": [
        {"id": "lsass", "name": "LSASS dumped by comsvcs", "steps": [{"replay": "dump.json"}],
         "expect": {"techniques": ["T1003"], "within_s": 20}},
        {"id": "ransom", "name": "files encrypted", "steps": [{"replay": "quiet.json"}],
         "expect": {"techniques": ["T1486"], "within_s": 5}},
        {"id": "shadows", "name": "shadow copies deleted", "steps": [{"replay": "quiet.json"}],
         "expect": {"techniques": ["T1490"], "within_s": 5}},
    ]
}  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    """A Service and its app on uvicorn in a thread: a real HTTP server for the CLI."""

    def __init__(self, folder: Path) -> None:
        self.service = Service(
            Settings(data_dir=folder, indicators=False, starter_rules=True, pipeline={"workers": 0})
        )
        store = TokenStore(self.service.engine)
        self.tokens = {role: store.create(role, f"{role}-user")[0] for role in ROLES}
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            build_app(self.service), host="127.0.0.1", port=port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server not up"
            time.sleep(0.05)
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def client(self, role: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.tokens[role]}"}
        )


@pytest.fixture
def api(tmp_path) -> Iterator[tuple[TestClient, dict[str, str], Service]]:
    service = Service(
        Settings(data_dir=tmp_path, indicators=False, starter_rules=True, pipeline={"workers": 0})
    )
    store = TokenStore(service.engine)
    tokens = {role: store.create(role, f"{role}-user")[0] for role in ROLES}
    with TestClient(build_app(service)) as client:
        yield client, tokens, service


def as_run_writes_it(**changed: Any) -> dict[str, Any]:
    """A results.json of one detected scenario, as `Result.as_dict` writes it."""
    from vigil.exercise.run import Outcome

    result = Result("http://vigil.test", 1_800_000_000.0, 1_800_000_060.0)
    result.outcomes = [
        Outcome("a", "LSASS", ["T1003.001"], [], detected=True, time_to_detect_s=0.8, passed=True)
    ]
    return {**json.loads(json.dumps(result.as_dict())), **changed}


def auth(tokens: dict[str, str], role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[role]}"}


def test_vigil_exercise_run_reports_its_results_to_the_vigil_it_ran_against(
    tmp_path, run_cli
) -> None:
    data = tmp_path / "recordings"
    data.mkdir()
    (data / "dump.json").write_text(json.dumps(DUMP))
    (data / "quiet.json").write_text(json.dumps(QUIET))
    scenarios = tmp_path / "scenarios.yml"
    scenarios.write_text(json.dumps(SCENARIOS))  # JSON is YAML
    with Served(tmp_path / "vigil") as served:
        done = run_cli(
            "exercise", "run", scenarios, "--data", data, "--vigil", served.url,
            "--token", served.tokens["admin"], "--out", tmp_path / "out",
        )  # fmt: skip
        assert done.exit_code == 0, done.output
        assert "warning" not in done.output
        with served.client("viewer") as viewer:
            (listed,) = viewer.get("/api/v1/exercises").json()
            latest = viewer.get("/api/v1/exercises/latest").json()
            coverage = viewer.get("/api/v1/coverage").json()
            # a role that may not report: the results are not taken, and it is said why
            assert "may not report" in (report_to(viewer, Result(served.url, 0.0), name="x") or "")
        with httpx.Client(base_url="http://127.0.0.1:9") as nowhere:  # nothing listens
            assert "could not be reported" in (report_to(nowhere, Result("", 0.0), name="x") or "")
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert listed["name"] == "scenarios.yml" and listed["id"] == latest["id"]
    assert (listed["tested"], listed["detected"], listed["passed"]) == (3, 1, 1)
    assert listed["mttd_s"] == written["mttd_s"] is not None
    stored = latest["results"]
    assert stored["reported_by"] == "admin-user"
    assert {k: v for k, v in stored.items() if k != "reported_by"} == written
    assert stored["by_technique"]["T1003"] == {
        "tested": 1, "detected": 1, "rules": ["LSASS Memory Dumped With comsvcs MiniDump"]
    }  # fmt: skip
    cells = coverage["techniques"]
    assert (cells["T1003"]["state"], cells["T1486"]["state"], cells["T1490"]["state"]) == (
        "detected", "missed", "missed"
    )  # fmt: skip
    causes = {g["technique"]: g["cause"] for g in coverage["exercise"]["gaps"]}
    assert causes == {"T1486": "no rule", "T1490": "not fired"}


def test_results_are_listed_newest_first_and_read_back(api) -> None:
    client, tokens, _ = api
    viewer = auth(tokens, "viewer")
    assert client.get("/api/v1/exercises/latest", headers=viewer).status_code == 404
    first = client.post("/api/v1/exercises", json=as_run_writes_it(), headers=auth(tokens, "admin"))
    assert first.status_code == 201, first.text
    assert first.json()["name"] == "exercise against http://vigil.test"
    second = client.post(
        "/api/v1/exercises",
        params={"name": "nightly"},
        json=as_run_writes_it(mttd_s=2.5),
        headers=auth(tokens, "analyst"),
    )
    assert second.status_code == 201
    listed = client.get("/api/v1/exercises", headers=viewer).json()
    assert [r["name"] for r in listed] == ["nightly", "exercise against http://vigil.test"]
    assert [r["mttd_s"] for r in listed] == [2.5, 0.8]
    assert client.get("/api/v1/exercises", params={"offset": 1}, headers=viewer).json() == [
        listed[1]
    ]
    latest = client.get("/api/v1/exercises/latest", headers=viewer).json()
    assert (
        latest["id"] == second.json()["id"] and latest["results"]["reported_by"] == "analyst-user"
    )
    one = client.get(f"/api/v1/exercises/{first.json()['id']}", headers=viewer).json()
    assert one["results"]["scenarios"][0]["time_to_detect_s"] == 0.8
    assert client.get("/api/v1/exercises/none", headers=viewer).status_code == 404
    # a sub-technique tested counts on its technique's cell
    cells = client.get("/api/v1/coverage", headers=viewer).json()["techniques"]
    assert cells["T1003"]["state"] == "detected"
    assert cells["T1003"]["subtechniques"][0]["id"] == "T1003.001"


def test_a_document_of_another_shape_or_too_large_is_refused(api, tmp_path) -> None:
    client, tokens, service = api
    admin = auth(tokens, "admin")
    for body, said in (
        (b"not json", "not JSON"),
        (b"[]", "the document"),
        (json.dumps(as_run_writes_it(tested="many")).encode(), "tested"),
        (json.dumps(as_run_writes_it(detected=5)).encode(), "more detected"),
        (json.dumps(as_run_writes_it(by_technique={"<b>": {"tested": 1, "detected": 0}})).encode(),
         "by_technique"),
        (json.dumps(as_run_writes_it(mttd_s=-1)).encode(), "mttd_s"),
    ):  # fmt: skip
        refused = client.post("/api/v1/exercises", content=body, headers=admin)
        assert refused.status_code == 400, (body, refused.text)
        assert said in refused.json()["detail"], refused.text
    assert service.exercise_runs.count() == 0
    small = Service(
        Settings(
            data_dir=tmp_path / "small",
            indicators=False,
            pipeline={"workers": 0},
            api={"max_body_bytes": 1000},
        )
    )
    token = TokenStore(small.engine).create("admin", "t")[0]
    big = as_run_writes_it(url="x" * 1500)
    reply = TestClient(build_app(small)).post(
        "/api/v1/exercises", json=big, headers={"Authorization": f"Bearer {token}"}
    )
    assert reply.status_code == 413
    small.stream.close()


def test_only_admins_and_analysts_report_results_readers_read_them(api) -> None:
    client, tokens, _ = api
    for role in ROLES:
        reply = client.post(
            "/api/v1/exercises", json=as_run_writes_it(), headers=auth(tokens, role)
        )
        assert reply.status_code == (201 if role in ("admin", "analyst") else 403), role
        for path in ("/api/v1/exercises", "/api/v1/exercises/latest", "/api/v1/coverage"):
            read = client.get(path, headers=auth(tokens, role))
            assert read.status_code == (403 if role == "ingest" else 200), (role, path)
