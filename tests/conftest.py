"""Shared fixtures: where the reference data is, and one loaded SigmaHQ rule set per session.

The reference data (third-party logs, rules and their labels) lives next to the project in
`../shared/data`; it is read in place, never copied or changed. Tests that need it skip when
it is absent. Test modules cannot import this file reliably (no `__init__.py` files), so
everything is handed out as fixtures.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from vigil.cli import app
from vigil.detect.sigma import LoadedRules, load_rules

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def _need(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data not found at {path}")
    return path


def _labels(folder: Path) -> list[dict[str, Any]]:
    text = (folder / "labels.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def need_data() -> Callable[..., Path]:
    """`need_data("windows", "sysmon")`: that path under the reference data, or skip the test."""
    return _need


@pytest.fixture(scope="session")
def labels_of() -> Callable[[Path], list[dict[str, Any]]]:
    """`labels_of(folder)`: the folder's labels.jsonl, one dict per line."""
    return _labels


@pytest.fixture(scope="session")
def sigma_rule_dirs() -> list[Path]:
    """Every SigmaHQ rule folder of the reference release (`sigma/rules*`)."""
    sigma = _need("sigma")
    folders = sorted(p for p in sigma.glob("rules*") if p.is_dir())
    if not folders:
        pytest.skip(f"no rules* folders in {sigma}")
    return folders


@dataclass(frozen=True)
class RuleSet:
    loaded: LoadedRules
    folders: list[Path]
    cache_dir: Path  # holds the compiled plan: a CLI run pointed here loads it from cache


@pytest.fixture(scope="session")
def sigma_rules(sigma_rule_dirs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    """All SigmaHQ rules, compiled once per session into a private cache folder.

    Under pytest-xdist the workers share the folder: the first compiles while holding a
    lock, the others then load the compiled plan from it."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = tmp_path_factory.getbasetemp().parent  # one per session, shared by workers
        cache = shared / "vigil-cache"
        lock_path = shared / "vigil-cache.lock"
    else:
        cache = tmp_path_factory.mktemp("vigil-cache")
        lock_path = cache / ".lock"
    saved = os.environ.get("VIGIL_CACHE_DIR")
    os.environ["VIGIL_CACHE_DIR"] = str(cache)
    try:
        with lock_path.open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            loaded = load_rules(sigma_rule_dirs)
    finally:
        if saved is None:
            del os.environ["VIGIL_CACHE_DIR"]
        else:
            os.environ["VIGIL_CACHE_DIR"] = saved
    return RuleSet(loaded, sigma_rule_dirs, cache)


@pytest.fixture
def vigil_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, empty plan cache for this test (the user's cache is never touched)."""
    cache = tmp_path / "vigil-cache"
    monkeypatch.setenv("VIGIL_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def run_cli(vigil_cache: Path) -> Callable[..., Result]:
    """`run_cli("scan", path, "--rules", dir)`: the `vigil` command run in-process."""
    runner = CliRunner()

    def run(*args: str | Path) -> Result:
        return runner.invoke(app, [str(a) for a in args])

    return run


def _until(probe: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="session")
def until() -> Callable[..., Any]:
    """`until(probe, "what", timeout=60)`: probe until it gives something true; that."""
    return _until


# --- real servers, started on free loopback ports ---------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout: float = 20.0) -> None:
    import socket
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


class NatsServer:
    """A real nats-server with JetStream, its store in a folder of its own; `restart` keeps
    the port and the store (what a crash and a restart of the server do)."""

    def __init__(self, folder: Path) -> None:
        import shutil

        binary = shutil.which("nats-server")
        if binary is None:
            pytest.fail("nats-server is not installed (make test installs it)")
        self.binary = binary
        self.folder = folder
        self.port = _free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: Any = None
        self.start()

    def start(self) -> None:
        import subprocess

        self.process = subprocess.Popen(
            [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port),
             "-sd", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_port(self.port)

    def stop(self, *, kill: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            self.process.wait(20)
        self.process = None

    def restart(self, *, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.start()


@pytest.fixture
def nats_server(tmp_path: Path):
    server = NatsServer(tmp_path / "nats")
    try:
        yield server
    finally:
        server.stop()


class PostgresServer:
    """A real PostgreSQL server in a folder of its own (initdb, trust on loopback), run as
    the `postgres` user when the tests run as root (PostgreSQL refuses root); `database()`
    makes a fresh database and gives its SQLAlchemy URL."""

    def __init__(self) -> None:
        import glob
        import shutil
        import subprocess
        import tempfile

        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            pytest.fail("PostgreSQL is not installed (make test installs it)")
        self.bin = Path(found[-1]).parent
        self.folder = Path(tempfile.mkdtemp(prefix="vigil-pg-", dir="/tmp"))
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.port = _free_port()
        self.count = 0
        subprocess.run(
            [*self.prefix, str(self.bin / "initdb"), "-D", str(self.folder / "data"),
             "-A", "trust", "-U", "vigil", "-E", "UTF8", "--locale=C"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.process = subprocess.Popen(
            [*self.prefix, str(self.bin / "postgres"), "-D", str(self.folder / "data"),
             "-p", str(self.port), "-k", str(self.folder), "-c", "listen_addresses=127.0.0.1",
             "-c", "fsync=off", "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_port(self.port, 60)

    def database(self) -> str:
        import psycopg

        self.count += 1
        name = f"vigil_test_{os.getpid()}_{self.count}"
        admin = f"host=127.0.0.1 port={self.port} user=vigil dbname=postgres"
        for _ in range(50):  # the server may still be starting up
            try:
                with psycopg.connect(admin, autocommit=True) as db:
                    db.execute(f'CREATE DATABASE "{name}"')
                break
            except psycopg.OperationalError:
                import time

                time.sleep(0.1)
        return f"postgresql+psycopg://vigil@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        import shutil

        self.process.terminate()
        self.process.wait(30)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty PostgreSQL database's URL."""
    return postgres_server.database()
