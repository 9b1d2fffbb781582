"""Benchmark the whole embedded pipeline of `vigil serve`: HTTP ingest → durable intake log →
Sigma rules (all of ../shared/data/sigma/rules*) and the maltrail indicators → alerts in
SQLite → events in Parquet.

A real server runs in its own process (as in production); this process is the sender. The
events are real records of every layer (Windows, Zeek, CloudTrail), sent as NDJSON, the
sources' requests interleaved as several senders' are.

1. Sustained rate: everything is sent as fast as the server processes it (senders pause
   while more than `--backlog` events wait, so intake and detection share the machine as
   they do live); the rate is events processed (detected on, stored) per second from the
   first request to an empty backlog.
2. Latency: events are sent at 50% and then 90% of that rate for a while; the server reports
   the p50/p99 time from an event's arrival to its alert being stored.

`calibration_seconds` times a fixed pure-Python loop first (bench/figures.py), so runs taken
at different times can be compared.

3. Memory: the peak resident set of the server process and of its largest child (a
   detection worker, which also holds the events waiting to be written to Parquet).

Prints a table and ends with one JSON line (`events_per_s`, `p50_ms`, `p99_ms` at 90% load,
and the rest). `--quick` sends fewer events and shortens the phases.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
import orjson  # noqa: E402
import psutil  # noqa: E402
from rich.console import Console  # noqa: E402

from figures import calibrate, report  # noqa: E402
from vigil.ingest import FileReport, discover, read_events  # noqa: E402

BATCH = 1000
console = Console(stderr=True)


def payloads(limit: int) -> list[list[bytes]]:
    """Real events as JSON lines, in requests of BATCH: Windows (flattened EVTX fields, read
    back as Windows events), Zeek JSON, CloudTrail; `limit` events in all, each source's
    share as its number of events (repeated as needed). A request holds one source's events,
    as one agent sends them, and the sources' requests are interleaved, as several senders'
    reach a live server (sent one source after another, the 10,000 Windows events, which
    carry nearly every alert and cost the most to match, came as one burst per cycle)."""
    sources = [
        DATA / "windows" / "evtx-to-mitre-attack",
        DATA / "network" / "wrccdc2018-zeek",
        DATA / "cloud" / "stratus-red-team",
    ]
    per_source: list[list[bytes]] = []
    for folder in sources:
        lines: list[bytes] = []
        for source in discover([folder]):
            for batch in read_events(source, FileReport(source.name)):
                lines.extend(orjson.dumps(event.fields, default=str) for event in batch)
                if len(lines) >= limit // 2:
                    break
            if len(lines) >= limit // 2:
                break
        per_source.append(lines[: limit // 2])
    total = sum(len(lines) for lines in per_source)
    placed: list[tuple[float, list[bytes]]] = []
    for lines in per_source:
        share = round(limit * len(lines) / total)
        taken = (lines * (share // len(lines) + 1))[:share]
        requests = [taken[i : i + BATCH] for i in range(0, share, BATCH)]
        placed.extend(((n + 0.5) / len(requests), r) for n, r in enumerate(requests))
    placed.sort(key=lambda item: item[0])
    return [request for _, request in placed]


def peak_rss_mb(pid: int) -> tuple[int, int]:
    """Peak resident memory (VmHWM) of the server process and of its largest child (a
    detection worker), in MB."""
    server = psutil.Process(pid)

    def peak(process: psutil.Process) -> int:
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
        return 0

    children = [peak(child) for child in server.children(recursive=True)]
    return peak(server), max(children, default=0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def vigil(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "vigil.cli", *args], env=env, capture_output=True, check=True
    )
    return done.stdout.decode().strip()


def wait_empty(url: str, token: str, timeout: float) -> dict:
    """/health (with its figures: a token) once the backlog is detected on and stored and
    every stage after detection (correlation) has caught up: the rate counts all of them."""
    deadline = time.monotonic() + timeout
    health: dict = {}
    auth = {"Authorization": f"Bearer {token}"}
    while time.monotonic() < deadline:
        health = httpx.get(f"{url}/health", headers=auth, timeout=10).json()
        stages = health.get("stages", {})
        if health["backlog"] == 0 and all(s["lag"] == 0 for s in stages.values()):
            return health
        time.sleep(0.05)
    raise SystemExit(f"backlog not drained in {timeout}s: {health}")


def send_all(url: str, token: str, bodies: list[bytes], threads: int, backlog: int) -> None:
    """Send everything, as fast as the server processes it: senders pause while more than
    `backlog` events wait (so intake and detection share the machine, as they do live)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    cursor = iter(range(len(bodies)))
    lock = threading.Lock()
    lag = [0]
    done = threading.Event()

    def watch() -> None:
        with httpx.Client(timeout=10) as client:
            while not done.is_set():
                lag[0] = client.get(f"{url}/health", headers=headers).json()["lag"]
                time.sleep(0.05)

    def worker() -> None:
        with httpx.Client(timeout=60) as client:
            while True:
                while lag[0] > backlog:
                    time.sleep(0.01)
                with lock:
                    index = next(cursor, None)
                if index is None:
                    return
                while True:
                    response = client.post(f"{url}/api/v1/ingest", content=bodies[index],
                                           headers=headers)  # fmt: skip
                    if response.status_code == 202:
                        break
                    time.sleep(float(response.headers.get("Retry-After", "1")))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    done.set()


def send_at_rate(url: str, token: str, bodies: list[bytes], rate: float, seconds: float) -> int:
    """Batches of BATCH events at `rate` events/s for `seconds`; events sent."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    interval = BATCH / rate
    sent = 0
    started = time.monotonic()
    with httpx.Client(timeout=60) as client:
        index = 0
        while time.monotonic() - started < seconds:
            due = started + index * interval
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            client.post(f"{url}/api/v1/ingest", content=bodies[index % len(bodies)],
                        headers=headers)  # fmt: skip
            sent += BATCH
            index += 1
    return sent


def sending_options(
    doc: str | None, *, events: int, quick: int, phase: float
) -> argparse.Namespace:
    """The options of a bench that sends real events to a server (this one and
    bench/distributed.py); `--quick` sends `quick` events with phases of 6 s. None when the
    reference data is missing (said on standard error)."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--events", type=int, default=events)
    parser.add_argument("--phase-seconds", type=float, default=phase)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backlog", type=int, default=20_000,
                        help="senders pause while more events than this wait")  # fmt: skip
    args = parser.parse_args()
    if not (DATA / "sigma").exists():
        print("reference data not found under", DATA, file=sys.stderr)
        return None
    if args.quick:
        args.events, args.phase_seconds = quick, 6.0
    return args


def main() -> int:
    args = sending_options(__doc__, events=300_000, quick=60_000, phase=20.0)
    if args is None:
        return 2
    total, phase = args.events, args.phase_seconds
    calibration = calibrate()  # before the server starts: the machine's speed, idle
    with console.status("Reading the events to send…"):
        requests = payloads(total)
    bodies = [b"\n".join(request) for request in requests]
    events = sum(len(request) for request in requests)
    rules = [str(p) for p in sorted((DATA / "sigma").glob("rules*")) if p.is_dir()]
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "vigil-data"
        env = {
            **os.environ,
            "VIGIL_DATA_DIR": str(data),
            # /health's latency figures cover one phase
            "VIGIL_PIPELINE__LATENCY_WINDOW_S": str(phase + 2),
        }
        with console.status("Importing the maltrail indicators…"):
            vigil("intel", "import", str(DATA / "threat_intel" / "maltrail-subset"), env=env)
        token = vigil("token", "create", "--role", "ingest", env=env).splitlines()[-1]
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        rule_args = [a for r in rules for a in ("--rules", r)]
        server = subprocess.Popen(
            [sys.executable, "-m", "vigil.cli", "serve", "--port", str(port), *rule_args],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        try:
            with console.status("Starting the server (rules and indicators)…"):
                deadline = time.monotonic() + 180
                while time.monotonic() < deadline:
                    try:
                        health = httpx.get(f"{url}/health", timeout=1).json()
                        break
                    except httpx.HTTPError:
                        time.sleep(0.3)
                else:
                    raise SystemExit("server did not start")
            with console.status(f"Sending {events:,} events as fast as they are taken…"):
                started = time.monotonic()
                send_all(url, token, bodies, args.threads, args.backlog)
                sent_s = time.monotonic() - started
                health = wait_empty(url, token, 600)
                seconds = time.monotonic() - started
            rate = events / seconds
            figures: dict[str, float | int] = {
                "events": events,
                "calibration_seconds": calibration,
                "events_per_s": round(rate),
                "ingest_events_per_s": round(events / sent_s),
                "alerts": health["alerts"],
                "rules": health["rules"],
                "indicators": health["indicators"],
            }
            for share in (0.5, 0.9):
                with console.status(f"Sending at {share:.0%} of that rate for {phase:.0f}s…"):
                    time.sleep(phase + 3)  # the latency window is one phase: start it clean
                    send_at_rate(url, token, bodies, rate * share, phase)
                    health = wait_empty(url, token, 120)
                latency = health["alert_latency_ms"]
                tag = f"{int(share * 100)}"
                figures[f"p50_ms_at_{tag}"] = latency.get("p50", -1)
                figures[f"p99_ms_at_{tag}"] = latency.get("p99", -1)
                figures[f"alerts_at_{tag}"] = latency.get("alerts", 0)
            figures["p50_ms"] = figures["p50_ms_at_90"]
            figures["p99_ms"] = figures["p99_ms_at_90"]
            figures["server_peak_rss_mb"], figures["worker_peak_rss_mb"] = peak_rss_mb(server.pid)
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
    report("Embedded pipeline (HTTP → log → rules + indicators → stores)", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
