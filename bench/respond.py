"""Benchmark response latency: detection → first action, through the whole embedded
`vigil serve` pipeline (intake, detect, correlate, respond stages).

The real Mimikatz recording (evtx-to-mitre-attack, Mimikatz opening LSASS) is replayed for
one new host after another, at a steady pace; each host's alerts trigger the shipped
playbook "contain credential dumping", whose first step isolates the host. The latency of a
run is from when detection raised its alert to when the isolation was done (the runs'
`first_action - raised`), measured twice:

1. dry-run: the connectors say what they would do;
2. nftables: the isolation is done for real by `nft` in a network namespace of its own
   (root; skipped with the reason otherwise).

The guardrails' rates are raised and the blast-radius hold is off for the benchmark: it
measures the engine, not the guardrails (the hosts share the recording's accounts, so past
50 hosts each would wait for a person). Prints a table and ends with one JSON line
(`p50_ms`, `p99_ms` — the worst of the modes measured — and each mode's, with where the
time goes: alert → run written, run → action begun, the action). `--quick` replays for 40
hosts instead of 200.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import orjson  # noqa: E402
from evtx import PyEvtxParser  # noqa: E402
from rich.console import Console  # noqa: E402

from figures import calibrate, report  # noqa: E402
from vigil.config import Settings  # noqa: E402
from vigil.serve.service import Service  # noqa: E402

console = Console(stderr=True)
RECORDING = (
    ROOT.parent
    / "shared"
    / "data"
    / "windows"
    / "evtx-to-mitre-attack"
    / "TA0006-Credential Access"
    / "T1003-Credential dumping"
    / "ID10-Mimikatz LSASS process dump.evtx.gz"
)
PACE_S = 0.1  # a new host every 100 ms: latency, not throughput


def documents() -> list[dict[str, Any]]:
    parser = PyEvtxParser(io.BytesIO(gzip.decompress(RECORDING.read_bytes())))
    return [orjson.loads(r["data"]) for r in parser.records_json()]


def for_host(recording: list[dict[str, Any]], host: str) -> list[bytes]:
    out = []
    for document in recording:
        document["Event"]["System"]["Computer"] = host
        out.append(orjson.dumps(document))
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def measure(hosts: int, prefix: list[str] | None) -> dict[str, Any]:
    """Latencies (ms) of `hosts` containments; `prefix` runs nft (None: dry-run)."""
    folder = Path(tempfile.mkdtemp(prefix="vigil-bench-respond-"))
    names = [f"ws{n}.bench.lan" for n in range(hosts)]
    settings = Settings.model_validate(
        {
            "data_dir": folder,
            "indicators": False,
            "respond": {
                "dry_run": prefix is None,
                "firewall": {
                    "hosts": {name: prefix or [] for name in names},
                    "management": ["10.99.0.0/24"],
                },
                "guardrails": {
                    "runs": "100000/minute",
                    "rates": {"firewall.isolate": "100000/minute"},
                    # the hosts share the recording's accounts: each one's blast radius
                    # grows with the others, and past the limit a person would decide
                    "max_blast_radius": 0,
                },
            },
        }
    )
    service = Service(settings)
    service.start()
    recording = documents()
    try:
        for name in names:
            service.ingest(for_host(recording, name), source="bench")
            time.sleep(PACE_S)
        responder = service.responder
        assert responder is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            runs = responder.runs(playbook="contain-credential-dumping", limit=100_000)
            if len(runs) >= hosts and all(r["first_action"] for r in runs):
                break
            time.sleep(0.2)
        spans = [(r["first_action"] - r["raised"]) * 1000 for r in runs if r["first_action"]]
        # where the time goes: alert → run written, run → isolation begun, isolation itself
        parts: dict[str, list[float]] = {"queued": [], "waited": [], "acted": []}
        isolated = 0
        for r in runs:
            step = next(s for s in responder.run(r["id"])["steps"] if s["step"] == "isolate")
            if step["state"] != "done":
                continue
            isolated += 1
            parts["queued"].append((r["created"] - r["raised"]) * 1000)
            parts["waited"].append((step["started"] - r["created"]) * 1000)
            parts["acted"].append((step["finished"] - step["started"]) * 1000)
    finally:
        service.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "runs": len(spans),
        "isolated": isolated,
        "p50_ms": percentile(spans, 0.5),
        "p99_ms": percentile(spans, 0.99),
        "max_ms": percentile(spans, 1.0),
        **{f"{name}_p99_ms": percentile(values, 0.99) for name, values in parts.items()},
    }


def namespace() -> tuple[str | None, str]:
    """A network namespace of its own, or None and why not."""
    if os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"):
        return None, "needs root, nft and ip"
    name = f"vbench{uuid.uuid4().hex[:6]}"
    done = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if done.returncode:
        return None, f"namespaces not permitted: {done.stderr.strip()}"
    return name, ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if not RECORDING.exists():
        console.print(f"[red]the recording is missing: {RECORDING}")
        return 2
    hosts = 40 if args.quick else 200
    figures: dict[str, Any] = {"calibration_seconds": calibrate(), "hosts": hosts}
    with console.status(f"dry-run: {hosts} hosts…"):
        dry = measure(hosts, None)
    figures.update({f"dry_run_{k}": v for k, v in dry.items()})
    worst = [dry]
    name, why = namespace()
    if name is None:
        figures["nftables"] = f"skipped: {why}"
    else:
        try:
            with console.status(f"nftables in namespace {name}: {hosts} hosts…"):
                real = measure(hosts, ["ip", "netns", "exec", name])
            figures.update({f"nftables_{k}": v for k, v in real.items()})
            worst.append(real)
        finally:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
    figures["p50_ms"] = max(m["p50_ms"] for m in worst)
    figures["p99_ms"] = max(m["p99_ms"] for m in worst)
    report("Response: detection → first action (isolation)", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
