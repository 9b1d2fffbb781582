"""Benchmark what one hostile request costs a running `vigil serve`: for each request shape
(the tiny-record arrays and line floods, a line of millions of values, gzip bombs, a poison
record), the answer, its time, and the server's memory above its resting size while it was
answered (resident set, sampled every 5 ms with psutil). A fresh server per shape, so no
shape profits from memory another one freed. The body limit is the default 32 MiB.

Prints a table and ends with one JSON line of figures (`<shape>_status`, `<shape>_ms`,
`<shape>_mb`, and `worst_mb` / `worst_times_body_limit`). `--quick` leaves out the 30 MB
shapes.
"""

from __future__ import annotations

import argparse
import gzip
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
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
import psutil  # noqa: E402
from rich.console import Console  # noqa: E402

from figures import report  # noqa: E402

MB = 1 << 20
BODY_LIMIT = 32 * MB
NDJSON = {"Content-Type": "application/x-ndjson"}
JSON = {"Content-Type": "application/json"}
GZIP = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}
console = Console(stderr=True)


def shapes(quick: bool) -> list[tuple[str, str, bytes, dict[str, str]]]:
    """(name, route, body, headers)"""
    deep = b'{"x":' + b"[" * 254 + b"1" + b"]" * 254 + b"}"
    out = [
        ("poison_254_deep", "/api/v1/ingest", deep, NDJSON),
        ("array_1m_empty_objects_3mb", "/api/v1/ingest", b"[" + b"{}," * 999_999 + b"{}]", JSON),
        ("ndjson_1m_lines_3mb", "/api/v1/ingest", b"{}\n" * 1_000_000, NDJSON),
        ("gzip_bomb_1gb", "/api/v1/ingest", gzip.compress(b"\n" * (1 << 30), 9), GZIP),
        ("alert_upload_gzip_bomb_1gb", "/api/v1/alerts/import?format=wazuh&name=b.gz",
         gzip.compress(b" " * (1 << 30), 9), {}),
    ]  # fmt: skip
    if not quick:
        out += [
            ("array_10m_empty_objects_30mb", "/api/v1/ingest",
             b"[" + b"{}," * 9_999_999 + b"{}]", JSON),
            ("array_10m_empty_arrays_30mb", "/api/v1/ingest",
             b"[" + b"[]," * 9_999_999 + b"[]]", JSON),
            ("one_line_8m_values_24mb", "/api/v1/ingest",
             b'{"x":[' + b"[]," * 8_000_000 + b"[]]}", NDJSON),
        ]  # fmt: skip
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure(route: str, body: bytes, headers: dict[str, str]) -> tuple[int, float, float]:
    """Start a server, send the request: (status, ms, MB above the resting size)."""
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "VIGIL_DATA_DIR": str(Path(folder) / "data"),
               "VIGIL_STARTER_RULES": "true", "VIGIL_INDICATORS": "false",
               "VIGIL_PIPELINE__WORKERS": "0", "VIGIL_CONFIG": "/nonexistent"}  # fmt: skip
        command = [sys.executable, "-m", "vigil.cli", "token", "create", "--role", "admin"]
        token = subprocess.run(command, env=env, capture_output=True, check=True)
        auth = {"Authorization": f"Bearer {token.stdout.decode().split()[-1]}"}
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "vigil.cli", "serve", "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            time.sleep(1.0)  # let it settle
            process = psutil.Process(server.pid)
            resting = peak = process.memory_info().rss
            done = threading.Event()

            def sample() -> None:
                nonlocal peak
                while not done.wait(0.005):
                    peak = max(peak, process.memory_info().rss)

            watcher = threading.Thread(target=sample, daemon=True)
            watcher.start()
            started = time.perf_counter()
            response = httpx.post(f"{url}{route}", content=body, headers={**auth, **headers},
                                  timeout=120)  # fmt: skip
            took = time.perf_counter() - started
            time.sleep(0.05)
            done.set()
            watcher.join()
            return response.status_code, took * 1000, (peak - resting) / MB
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    figures: dict[str, float | int] = {}
    worst = 0.0
    for name, route, body, headers in shapes(args.quick):
        with console.status(f"{name} ({len(body) / MB:.1f} MB sent)…"):
            status, ms, grown = measure(route, body, headers)
        figures[f"{name}_status"] = status
        figures[f"{name}_ms"] = round(ms)
        figures[f"{name}_mb"] = round(grown, 1)
        worst = max(worst, grown)
    figures["worst_mb"] = round(worst, 1)
    figures["worst_times_body_limit"] = round(worst * MB / BODY_LIMIT, 2)
    report("One hostile request: answer, time, server memory above rest", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
