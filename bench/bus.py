"""Benchmark the streams: publish and consume on the embedded segment log and on NATS
JetStream (a real nats-server started here on a free loopback port, file storage).

Records are real events as JSON lines (Windows, Zeek, CloudTrail, as bench/pipeline.py
sends them), in batches of `--batch` (1,000). Figures: records/s published (the call
returns once the batch is durable: fsync'd on the log, acknowledged by the server on
JetStream), JetStream also one synchronous publish per record (as a naive client does),
and records/s consumed (fetch in order, acknowledge each batch). Prints a table and ends
with one JSON line. `--quick` moves fewer records.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from figures import calibrate, report  # noqa: E402
from pipeline import payloads  # noqa: E402
from vigil.bus import LocalStream  # noqa: E402
from vigil.bus.jetstream import JetStreamBus  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def consume(stream, total: int, batch: int) -> float:
    started = time.perf_counter()
    consumer = stream.consumer("bench")
    position = consumer.acked
    while position < total:
        got = consumer.fetch(position, batch, 1.0)
        if not got:
            raise SystemExit(f"stream ended at {position} of {total}")
        position = got[-1][0] + 1
        consumer.ack(position)
    return time.perf_counter() - started


def publish(stream, batches: list[list[bytes]]) -> float:
    started = time.perf_counter()
    for batch in batches:
        stream.publish(batch)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    binary = shutil.which("nats-server")
    if binary is None:
        print("nats-server not installed (make test installs it)", file=sys.stderr)
        return 2
    total = 20_000 if args.quick else args.records
    calibration = calibrate()
    lines = [line for request in payloads(total) for line in request][:total]
    batches = [lines[i : i + args.batch] for i in range(0, len(lines), args.batch)]
    figures: dict[str, float | int] = {"records": len(lines), "record_bytes": 0}
    figures["record_bytes"] = round(sum(map(len, lines)) / len(lines))
    with tempfile.TemporaryDirectory(prefix="vigil-bus-") as scratch:
        local = LocalStream(Path(scratch) / "local", fsync=True)
        seconds = publish(local, batches)
        figures["local_publish_per_s"] = round(len(lines) / seconds)
        figures["local_consume_per_s"] = round(len(lines) / consume(local, len(lines), 2000))
        local.close()
        port = free_port()
        server = subprocess.Popen(
            [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", f"{scratch}/nats"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                with socket.socket() as sock:
                    if sock.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.05)
            bus = JetStreamBus(f"nats://127.0.0.1:{port}")
            stream = bus.stream("events")
            seconds = publish(stream, batches)
            figures["jetstream_publish_per_s"] = round(len(lines) / seconds)
            figures["jetstream_consume_per_s"] = round(
                len(lines) / consume(stream, len(lines), 2000)
            )
            naive = lines[: min(len(lines), 5000)]
            sync = bus.stream("sync")
            started = time.perf_counter()
            for line in naive:
                sync.publish([line])  # one record, one round trip
            figures["jetstream_publish_one_by_one_per_s"] = round(
                len(naive) / (time.perf_counter() - started)
            )
            bus.close()
        finally:
            server.terminate()
            server.wait(20)
    figures["calibration_seconds"] = calibration
    report("Streams: embedded log and NATS JetStream", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
