"""Benchmark the readers: parse throughput per log format (events/s, MB/s), one core.

For each format, real records from ../shared/data are written (repeated to a size worth
timing) into a plain file in a temporary folder, which is then read through Vigil's reader
(format detection, decoding, flattening, Event objects; `--with-ecs` adds the ECS view).
MB/s counts the bytes of the plain file. Prints a table and ends with one JSON line of
figures. `--quick` uses fewer records. Each figure is the best of `--repeat` reads.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "src"))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from vigil.ingest import FileReport, discover, read_events  # noqa: E402
from vigil.scan import collector_tuned  # noqa: E402


def _text(path: Path) -> bytes:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            data = b"".join(archive.read(n) for n in archive.namelist() if not n.endswith("/"))
    return data


def _repeat_lines(data: bytes, records: int) -> bytes:
    lines = [line for line in data.splitlines() if line.strip()]
    header = [line for line in lines if line.startswith(b"#")]
    body = [line for line in lines if not line.startswith(b"#")]
    times = max(1, records // max(1, len(body)))
    return b"\n".join(header + body * times) + b"\n"


def _cloudtrail(records: int) -> bytes:
    items = []
    for path in sorted((DATA / "cloud" / "stratus-red-team").glob("aws.*.json")):
        items.extend(json.loads(path.read_bytes()))
    times = max(1, records // len(items))
    return json.dumps({"Records": items * times}).encode()


def _cloudtrail_lines(records: int) -> bytes:
    items = []
    for path in sorted((DATA / "cloud" / "stratus-red-team").glob("aws.*.json")):
        items.extend(json.loads(path.read_bytes()))
    lines = [json.dumps(item).encode() for item in items]
    return b"\n".join(lines * max(1, records // len(lines))) + b"\n"


def _audit_events(records: int) -> bytes:
    """The arp sample's audit events, repeated with fresh serial numbers (one event each)."""
    path = DATA / "linux" / "otrf" / "atomic" / "linux" / "discovery" / "host" / "sh_arp_cache.zip"
    lines = [line for line in _text(path).splitlines() if line.strip()]
    out = []
    serial = 0
    while serial < records:
        stamp = None
        for line in lines:
            current = line.split(b"audit(", 1)[1].split(b")", 1)[0]
            if current != stamp:
                stamp, serial = current, serial + 1
            head, _, rest = line.partition(b"audit(")
            seconds = rest.split(b":", 1)[0]
            out.append(head + b"audit(" + seconds + b":%d" % serial + rest[rest.index(b")") :])
    return b"\n".join(out) + b"\n"


def _zeek(name: str) -> Callable[[int], bytes]:
    return lambda records: _repeat_lines(_text(DATA / "network" / name), records)


FORMATS: dict[str, Callable[[int], bytes]] = {
    "zeek-json": _zeek("wrccdc2018-zeek/dns.json.gz"),
    "zeek-tsv": _zeek("stratosphere/008-zeek-mixed/data/conn.log.labeled"),
    "cloudtrail-records": _cloudtrail,
    "cloudtrail-lines": _cloudtrail_lines,
    "suricata-eve": lambda n: _repeat_lines(
        b"\n".join(
            json.dumps(item).encode()
            for item in json.loads(
                _text(DATA / "network" / "suricata-eve-alerts" / "wrccdc-2018" / "alerts-only.json")
            )
        ),
        n,
    ),
    "auth-log": lambda n: _repeat_lines(_text(DATA / "linux" / "elastic-examples" / "auth.log"), n),
    "auditd": lambda n: _audit_events(n),
    "panther-mixed-json": lambda n: _repeat_lines(
        _text(DATA / "cloud" / "panther-rule-tests" / "panther_rule_tests.jsonl.gz"), n
    ),
}


def _read(path: Path, with_ecs: bool) -> tuple[int, float]:
    """Read as `vigil scan` reads: with its garbage-collector settings."""
    with collector_tuned():
        started = time.process_time()
        count = 0
        for source in discover([path]):
            report = FileReport(source.name)
            for batch in read_events(source, report):
                count += len(batch)
                if with_ecs:
                    for event in batch:
                        event.ecs  # noqa: B018 - building the view is what is timed
        return count, time.process_time() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer records, one read")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--with-ecs", action="store_true", help="also build each ECS view")
    args = parser.parse_args()
    if not (DATA / "network").exists():
        print("reference data not found under", DATA, file=sys.stderr)
        return 2
    records = 20_000 if args.quick else 200_000
    repeat = 1 if args.quick else args.repeat
    figures: dict[str, dict[str, float]] = {}
    table = Table(title="Parse throughput, one core (CPU time)", title_justify="left")
    for column in ("format", "events", "MB", "events/s", "MB/s"):
        table.add_column(column, justify="left" if column == "format" else "right")
    with tempfile.TemporaryDirectory() as folder:
        for name, build in FORMATS.items():
            path = Path(folder) / f"{name}.log"
            path.write_bytes(build(records))
            size = path.stat().st_size
            best = min((_read(path, args.with_ecs) for _ in range(repeat)), key=lambda r: r[1])
            count, seconds = best
            figures[name] = {
                "events": count,
                "mb": round(size / 1e6, 1),
                "events_per_s": round(count / seconds),
                "mb_per_s": round(size / 1e6 / seconds, 1),
            }
            table.add_row(
                name,
                f"{count:,}",
                f"{size / 1e6:.1f}",
                f"{count / seconds:,.0f}",
                f"{size / 1e6 / seconds:.1f}",
            )
            path.unlink()
    Console(stderr=True).print(table)
    print(json.dumps({"with_ecs": args.with_ecs, "formats": figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
