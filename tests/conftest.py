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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from netlab import lab  # noqa: F401  (the network lab fixture, for every test)
from servers import MissingServer, NatsServer, PostgresServer, SlapdServer
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


def _serving(start: Callable[[], Any]) -> Iterator[Any]:
    """A real server, started (a missing program fails the test, naming it) and stopped."""
    try:
        server = start()
    except MissingServer as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_server(tmp_path: Path):
    yield from _serving(lambda: NatsServer(tmp_path / "nats"))


@pytest.fixture
def slapd_server(tmp_path: Path):
    yield from _serving(lambda: SlapdServer(tmp_path / "slapd"))


@pytest.fixture(scope="session")
def postgres_server():
    yield from _serving(PostgresServer)


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty PostgreSQL database's URL."""
    return postgres_server.database()
