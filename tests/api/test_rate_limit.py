"""`api.rate_per_token`: a token sending faster than its rate gets 429 with Retry-After; other
tokens are not held back, and the token is served again once it has waited."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from vigil.api.auth import TokenStore
from vigil.config import Settings
from vigil.detect.sigma import load_rules
from vigil.serve.service import Service
from vigil.web.server import build_app

EVENT = b'{"EventID": 1, "Hostname": "pc1"}'


def test_a_token_past_its_rate_gets_429_with_retry_after_and_others_are_served(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path / "d", indicators=False, pipeline={"workers": 0},
                        api={"rate_per_token": 3})  # fmt: skip
    service = Service(settings, loaded=load_rules([]))
    tokens = TokenStore(service.engine)
    fast, other = tokens.create("ingest", "fast")[0], tokens.create("ingest", "other")[0]
    client = TestClient(build_app(service))  # not started: the events just wait in the log

    def send(token: str):  # type: ignore[no-untyped-def]
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
        return client.post("/api/v1/ingest", content=EVENT, headers=headers)

    try:
        answers = [send(fast) for _ in range(10)]
        codes = [a.status_code for a in answers]
        assert codes[:3] == [202, 202, 202], codes  # a burst as large as the rate
        refused = next(a for a in answers if a.status_code == 429)
        assert refused.json() == {"error": 429, "detail": "too many requests"}
        wait = int(refused.headers["Retry-After"])
        assert 1 <= wait <= 2
        assert send(other).status_code == 202  # each token has its own rate
        time.sleep(wait)
        assert send(fast).status_code == 202
    finally:
        service.stop()
