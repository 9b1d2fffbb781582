"""A real `vigil serve` in a subprocess for whole-server tests: its own data folder, a rule,
settings from the environment, tokens made before it starts, and its memory and CPU as the
kernel counts them (psutil)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from vigil.api.auth import TokenStore
from vigil.store import state_engine

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def whoami(seq: int, host: str = "pc1", **extra: Any) -> dict[str, Any]:
    """A Sysmon process creation the rule above matches."""
    return {
        "EventID": 1,
        "Channel": "Microsoft-Windows-Sysmon/Operational",
        "Hostname": host,
        "UtcTime": "2026-11-28 10:00:00.000",
        "Image": "C:\\Windows\\System32\\whoami.exe",
        "ProcessId": seq,
        **extra,
    }


class Served:
    def __init__(self, folder: Path, env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.data = folder / "vigil-data"
        self.rules = folder / "rules"
        self.rules.mkdir(parents=True, exist_ok=True)
        (self.rules / "whoami.yml").write_text(RULE)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env or {}
        tokens = TokenStore(state_engine(self.data))
        self.tokens = {
            role: tokens.create(role, f"test-{role}")[0]
            for role in ("admin", "ingest", "analyst", "viewer", "responder")
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log = folder / "serve.log"

    def auth(self, role: str = "admin", **headers: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}", **headers}

    def start(self, *args: str) -> Served:
        command = [
            sys.executable,
            "-m",
            "vigil.cli",
            "serve",
            "--data-dir",
            str(self.data),
            "--rules",
            str(self.rules),
            "--port",
            str(self.port),
            *args,
        ]
        env = {
            **os.environ,
            "VIGIL_INDICATORS": "false",
            "VIGIL_STARTER_RULES": "false",
            "VIGIL_CACHE_DIR": str(self.folder / "cache"),
            "VIGIL_CONFIG": "/nonexistent",
            **self.env,
        }
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                raise AssertionError(f"vigil serve ended: {self.log.read_text()[-3000:]}")
            time.sleep(0.2)
        raise AssertionError("vigil serve did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def health(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/health", headers=self.auth(), timeout=10).json()  # type: ignore[no-any-return]

    def post(
        self, path: str, role: str = "admin", timeout: float = 60, **kwargs: Any
    ) -> httpx.Response:
        headers = {**self.auth(role), **kwargs.pop("headers", {})}
        return httpx.post(f"{self.url}{path}", headers=headers, timeout=timeout, **kwargs)

    def get(self, path: str, role: str = "admin", **kwargs: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers=self.auth(role), timeout=30, **kwargs)

    def ingest(self, lines: list[bytes], **kwargs: Any) -> httpx.Response:
        return self.post(
            "/api/v1/ingest",
            content=b"\n".join(lines),
            headers={"Content-Type": "application/x-ndjson"},
            **kwargs,
        )

    def sql(self, query: str) -> list[list[Any]]:
        response = self.post("/api/v1/hunts/sql", json={"query": query})
        assert response.status_code == 200, response.text
        return response.json()["rows"]  # type: ignore[no-any-return]

    def wait_idle(self, timeout: float = 60) -> dict[str, Any]:
        """Until every event received is detected on and stored (status ok)."""
        deadline = time.monotonic() + timeout
        health: dict[str, Any] = {}
        while time.monotonic() < deadline:
            health = self.health()
            if health["backlog"] == 0 and health["status"] == "ok":
                return health
            time.sleep(0.2)
        raise AssertionError(f"not idle: {health}")

    def rejects(self) -> list[dict[str, Any]]:
        import orjson

        path = self.data / "rejects.jsonl"
        if not path.exists():
            return []
        return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


class Peak:
    """The highest resident memory of a process while in use (sampled every 5 ms)."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.before = self.process.memory_info().rss
        self.peak = self.before
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        time.sleep(0.05)
        self._done.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.before

    def _run(self) -> None:
        while not self._done.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)


# The real Mimikatz recording (LSASS opened on FS03, evtx-to-mitre-attack), for the tests
# that replay an attack into a served Vigil; its host is the recording's Computer.
MIMIKATZ = (
    "windows",
    "evtx-to-mitre-attack",
    "TA0006-Credential Access",
    "T1003-Credential dumping",
    "ID10-Mimikatz LSASS process dump.evtx.gz",
)
MIMIKATZ_HOST = "fs03.offsec.lan"


def evtx_documents(path: Path) -> list[bytes]:
    """A recording's records as evtx-rs JSON documents (what SigmaHQ's samples hold), one
    per line for `Served.ingest`: as `vigil exercise` sends them."""
    from vigil.exercise.recordings import records

    return records(path)
