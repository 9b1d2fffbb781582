"""Benchmark the distributed deployment on this machine: `vigil serve --role intake` (HTTP
ingest → the partitioned `events` stream on a real NATS JetStream), 1 and then 2 `vigil serve
--role detect` workers sharing its partitions (all of ../shared/data/sigma/rules* and the
maltrail indicators; events to Parquet in a shared folder), `--role correlate`, and the state
in a real PostgreSQL. Every role is its own process, as on many machines.

For each number of detect workers, on a fresh stream prefix and database:

1. Sustained rate: the same real events as bench/pipeline.py (Windows, Zeek, CloudTrail,
   interleaved), sent as fast as they are processed (senders pause while more than
   `--backlog` wait); events detected on and stored per second, first request to an empty
   backlog (every partition acknowledged) and the correlate stage caught up.
2. Latency: events sent at 90% of that rate for a phase; each detect worker reports the p50
   and p99 time from an event's arrival at intake to its alert being stored; the worst
   worker's figure is kept.

`scaling` is events_per_s_2 / events_per_s_1. On a 2-core machine, intake, NATS, PostgreSQL
and correlation share the cores with the detect workers, so the second worker adds far less
than a core: docs/scale.md reads these figures as cost per event per stage.

Prints a table and ends with one JSON line (`events_per_s_1`, `events_per_s_2`, `scaling`,
`p99_ms` (2 workers, 90% load), and the rest). `--quick` sends fewer events.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
import psutil  # noqa: E402
from rich.console import Console  # noqa: E402

from figures import calibrate, report  # noqa: E402
from pipeline import (  # noqa: E402
    free_port,
    payloads,
    send_all,
    send_at_rate,
    sending_options,
    vigil,
)
from servers import NatsServer, PostgresServer  # noqa: E402

console = Console(stderr=True)
PARTITIONS = 8


class Process:
    """One `vigil serve --role ROLE` with its own port and data folder."""

    def __init__(self, role: str, folder: Path, env: dict[str, str], rules: list[str]) -> None:
        self.role = role
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        folder.mkdir(parents=True, exist_ok=True)
        args = [a for r in rules for a in ("--rules", r)]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vigil.cli", "serve", "--role", role, "--port",
             str(self.port), "--data-dir", str(folder), *args],
            env=env, stdout=subprocess.DEVNULL, stderr=(folder / "serve.log").open("wb"),
        )  # fmt: skip

    def wait_up(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/health", timeout=1)
                return
            except httpx.HTTPError:
                if self.process.poll() is not None:
                    raise SystemExit(f"vigil serve --role {self.role} ended") from None
                time.sleep(0.3)
        raise SystemExit(f"vigil serve --role {self.role} did not start")

    def health(self, token: str) -> dict:
        auth = {"Authorization": f"Bearer {token}"}
        return httpx.get(f"{self.url}/health", headers=auth, timeout=10).json()  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()


def caught_up(intake: Process, correlate: Process, token: str, timeout: float) -> dict:
    """Once every partition is detected on and stored and correlation has caught up: the
    intake's /health (the deployment's backlog)."""
    deadline = time.monotonic() + timeout
    health: dict = {}
    while time.monotonic() < deadline:
        health = intake.health(token)
        if health["backlog"] == 0:
            stages = correlate.health(token)["stages"]
            if all(s["lag"] == 0 for s in stages.values()):
                return health
        time.sleep(0.05)
    raise SystemExit(f"backlog not drained in {timeout}s: {health}")


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user and system) of these processes and their children so far."""
    total = 0.0
    for pid in pids:
        process = psutil.Process(pid)
        for one in [process, *process.children(recursive=True)]:
            try:
                times = one.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
    return total


def run(workers: int, base: Path, nats: NatsServer, postgres: PostgresServer,
        bodies: list[bytes], events: int, args: argparse.Namespace,
        rules: list[str]) -> dict[str, float]:  # fmt: skip
    folder = base / f"run-{workers}"
    env = {
        **os.environ,
        "VIGIL_BUS__URL": nats.url,
        "VIGIL_BUS__PREFIX": f"bench{workers}",
        "VIGIL_BUS__PARTITIONS": str(PARTITIONS),
        "VIGIL_DATABASE_URL": postgres.database(),
        "VIGIL_EVENTS_DIR": str(folder / "events"),
        "VIGIL_DATA_DIR": str(folder / "cli"),
        "VIGIL_PIPELINE__LATENCY_WINDOW_S": str(args.phase_seconds + 2),
    }
    with console.status("Importing the maltrail indicators…"):
        vigil("intel", "import", str(DATA / "threat_intel" / "maltrail-subset"), env=env)
    token = vigil("token", "create", "--role", "admin", env=env).splitlines()[-1]
    intake = Process("intake", folder / "intake", env, [])
    correlate = Process("correlate", folder / "correlate", env, [])
    detect = [Process("detect", folder / f"detect-{n}", env, rules) for n in range(workers)]
    processes = [intake, correlate, *detect]
    try:
        with console.status(f"Starting intake, correlate and {workers} detect worker(s)…"):
            for process in processes:
                process.wait_up()
            while sum(len(p.health(token).get("partitions", [])) for p in detect) < PARTITIONS:
                time.sleep(0.2)
        with console.status(f"{workers} worker(s): sending {events:,} events as fast as taken…"):
            tiers = {"intake": [intake.process.pid], "detect": [p.process.pid for p in detect],
                     "correlate": [correlate.process.pid], "nats": [nats.process.pid],
                     "postgresql": [postgres.process.pid]}  # fmt: skip
            before = {tier: cpu_seconds(pids) for tier, pids in tiers.items()}
            started = time.monotonic()
            send_all(intake.url, token, bodies, args.threads, args.backlog)
            caught_up(intake, correlate, token, 900)
            seconds = time.monotonic() - started
            costs = {
                f"cpu_us_per_event_{tier}": round(
                    (cpu_seconds(pids) - before[tier]) / events * 1e6, 1
                )
                for tier, pids in tiers.items()
            }
        rate = events / seconds
        with console.status(f"{workers} worker(s): 90% of that rate for {args.phase_seconds}s…"):
            time.sleep(args.phase_seconds + 3)  # the latency window is one phase: start clean
            send_at_rate(intake.url, token, bodies, rate * 0.9, args.phase_seconds)
            caught_up(intake, correlate, token, 300)
        latencies = [p.health(token)["alert_latency_ms"] for p in detect]
        return {
            "events_per_s": round(rate),
            "p50_ms": max(lat.get("p50", -1) for lat in latencies),
            "p99_ms": max(lat.get("p99", -1) for lat in latencies),
            "alerts": sum(p.health(token)["alerts"] for p in detect),
            **costs,
        }
    finally:
        for process in processes:
            process.stop()


def main() -> int:
    args = sending_options(__doc__, events=200_000, quick=40_000, phase=15.0)
    if args is None:
        return 2
    total = args.events
    calibration = calibrate()
    with console.status("Reading the events to send…"):
        requests = payloads(total)
    bodies = [b"\n".join(request) for request in requests]
    events = sum(len(request) for request in requests)
    rules = [str(p) for p in sorted((DATA / "sigma").glob("rules*")) if p.is_dir()]
    figures: dict[str, float | int] = {"events": events, "calibration_seconds": calibration,
                                       "partitions": PARTITIONS}  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        with console.status("Starting nats-server and PostgreSQL…"):
            nats = NatsServer(base / "nats")
            postgres = PostgresServer()
        try:
            for workers in (1, 2):
                got = run(workers, base, nats, postgres, bodies, events, args, rules)
                for name, value in got.items():
                    figures[f"{name}_{workers}"] = value
        finally:
            nats.stop()
            postgres.stop()
    figures["scaling"] = round(figures["events_per_s_2"] / figures["events_per_s_1"], 2)
    figures["p99_ms"] = figures["p99_ms_2"]
    report("Distributed (intake → NATS JetStream → detect workers → PostgreSQL)", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
