"""`vigil serve` killed with SIGKILL while 100,000 events stream in over HTTP, then restarted:
every acknowledged event is stored exactly once and each of its detections exists exactly
once (an event in flight when the server died, never acknowledged, is stored at most once)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from whoami_stream import RULE, event

from vigil.api.auth import TokenStore
from vigil.store import state_engine
from vigil.store.alerts import AlertStore
from vigil.store.events import EventStore

TOTAL = 100_000
BATCH = 500


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, data: Path, rules: Path) -> None:
        self.data, self.rules = data, rules
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "vigil.cli", "serve", "--data-dir", str(self.data),
                   "--rules", str(self.rules), "--port", str(self.port)]  # fmt: skip
        env = {**os.environ, "VIGIL_INDICATORS": "false", "VIGIL_STARTER_RULES": "false",
               "VIGIL_CACHE_DIR": str(self.data / "c")}  # fmt: skip
        self.process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                raise AssertionError(
                    self.process.stderr.read().decode() if self.process.stderr else ""
                )
            time.sleep(0.2)
        raise AssertionError("server did not start")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def wait_processed(self, token: str, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        auth = {"Authorization": f"Bearer {token}"}
        while time.monotonic() < deadline:
            health = httpx.get(f"{self.url}/health", headers=auth, timeout=5).json()
            if health["lag"] == 0:
                return health
            time.sleep(0.3)
        raise AssertionError(f"backlog not processed: {health}")


@pytest.mark.slow
def test_acknowledged_events_survive_kill_9_exactly_once(tmp_path: Path) -> None:
    data, rules = tmp_path / "vigil-data", tmp_path / "rules"
    rules.mkdir()
    (rules / "whoami.yml").write_text(RULE)
    token, _ = TokenStore(state_engine(data)).create("ingest", "durability-test")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    batches = [list(range(start, min(start + BATCH, TOTAL))) for start in range(0, TOTAL, BATCH)]
    acked: set[int] = set()
    attempted: set[int] = set()  # sent (maybe written) but not acknowledged
    server = Server(data, rules)
    server.start()
    killed = threading.Event()

    def send(batch: list[int], client: httpx.Client) -> bool:
        body = b"\n".join(event(seq) for seq in batch)
        try:
            response = client.post(f"{server.url}/api/v1/ingest", content=body, headers=headers)
        except httpx.HTTPError:
            return False
        if response.status_code == 202:
            assert response.json()["accepted"] == len(batch)
            acked.update(batch)
            return True
        return False

    next_batch = 0
    with httpx.Client(timeout=30) as client:
        try:
            while next_batch < len(batches):
                batch = batches[next_batch]
                if next_batch == len(batches) * 2 // 5 and not killed.is_set():
                    # SIGKILL while a request is in flight
                    threading.Timer(0.002, server.kill).start()
                    killed.set()
                if not send(batch, client):
                    attempted.update(batch)
                    next_batch += 1
                    break
                next_batch += 1
        finally:
            if not killed.is_set():
                server.kill()
        assert killed.is_set() and len(acked) < TOTAL
        time.sleep(0.5)
        server.process = None
        server.start()  # same data folder: picks up from the last acknowledged position
        try:
            for batch in batches[next_batch:]:
                assert send(batch, client)
            server.wait_processed(token)
        finally:
            server.stop()

    stored: dict[int, int] = {}
    for batch in EventStore(data / "events").events(None, None):
        for stored_event in batch:
            seq = stored_event.fields["seq"]
            stored[seq] = stored.get(seq, 0) + 1
    print(
        f"acked {len(acked):,}, in flight at the kill {len(attempted):,}, stored "
        f"{sum(stored.values()):,}"
    )
    assert len(acked) + len(attempted) == TOTAL
    assert {seq for seq in acked if stored.get(seq) != 1} == set()
    assert {seq for seq in attempted if stored.get(seq, 0) > 1} == set()

    alerts = AlertStore(state_engine(data)).list(limit=TOTAL)
    alerted: dict[int, int] = {}
    for alert in alerts:
        seq = alert["event"]["seq"]
        alerted[seq] = alerted.get(seq, 0) + 1
    expected = {seq for seq in acked if seq % 10 == 0}
    assert {seq for seq in expected if alerted.get(seq) != 1} == set()
    assert all(count == 1 for count in alerted.values())
    assert set(alerted) - expected <= {s for s in attempted if s % 10 == 0}
