"""The same events give the same detections through `vigil serve` (HTTP ingest, the intake
log, the streaming detection stage) as through `vigil scan` on their files: the SigmaHQ
regression samples (their evtx-rs JSON events) and the Stratus Red Team CloudTrail logs,
with every SigmaHQ rule."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from vigil.api.auth import TokenStore
from vigil.config import Settings
from vigil.detect import Detection
from vigil.scan import scan_inputs
from vigil.serve.service import Service
from vigil.web.server import build_app


def documents(path: Path) -> list[dict[str, Any]]:
    """The JSON values of a file: one, an array, or several one after another."""
    text = path.read_text("utf-8")
    decoder = json.JSONDecoder()
    out: list[dict[str, Any]] = []
    position = 0
    while position < len(text):
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            break
        value, position = decoder.raw_decode(text, position)
        out.extend(value if isinstance(value, list) else [value])
    return out


def identity(kind: str, rule_id: str, event: dict[str, Any]) -> tuple[Any, ...]:
    """What a detection is about, independent of how the event arrived."""
    keys = ("EventRecordID", "Computer", "Channel", "eventID", "eventName", "requestID")
    return (kind, rule_id, *(str(event.get(k)) for k in keys))


def of_scan(detections: list[Detection]) -> Counter[tuple[Any, ...]]:
    return Counter(identity(d.kind, d.rule_id, d.event) for d in detections if d.kind == "sigma")


@pytest.fixture
def inputs(need_data) -> list[Path]:
    regression = need_data("windows", "sigma-regression-data", "regression_data")
    stratus = need_data("cloud", "stratus-red-team")
    return [*sorted(regression.rglob("*.json")), *sorted(stratus.glob("aws.*.json"))]


def test_serve_finds_what_scan_finds(inputs, sigma_rules, tmp_path) -> None:
    expected = of_scan(scan_inputs(inputs, sigma_rules.loaded).detections)
    assert len(expected) > 150  # 139 regression samples, 19 Stratus hits, and more

    settings = Settings(data_dir=tmp_path / "vigil-data", indicators=False)
    service = Service(settings, loaded=sigma_rules.loaded)
    token, _ = TokenStore(service.engine).create("admin", "test")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    lines = [orjson.dumps(doc) for path in inputs for doc in documents(path)]
    with TestClient(build_app(service)) as client:
        for start in range(0, len(lines), 200):
            body = b"\n".join(lines[start : start + 200])
            response = client.post("/api/v1/ingest", content=body, headers=headers)
            assert response.status_code == 202, response.text
        deadline = time.monotonic() + 120
        while client.get("/health", headers=headers).json()["lag"] and time.monotonic() < deadline:
            time.sleep(0.1)
        alerts = []
        for page in range(0, 100_000, 1000):
            got = client.get(
                "/api/v1/alerts", params={"limit": 1000, "offset": page}, headers=headers
            ).json()
            items = got["alerts"] if isinstance(got, dict) else got
            alerts.extend(items)
            if len(items) < 1000:
                break
    served = Counter(
        identity(a["kind"], a["rule_id"], a["event"]) for a in alerts if a["kind"] == "sigma"
    )
    assert served == expected
