"""Benchmark hunting: a filter-and-group SQL query over 10 million stored events.

The events are synthetic, written straight as Parquet in the event store's layout (day and
dataset partitions, its schema, a commit log). Building 10 million `Event` objects through
the pipeline would take most of an hour and measure ingestion, not hunting. They spread over
30 days and 10 datasets, with cardinalities like a mid-size network's: 2,000 hosts, 5,000
users, 50,000 addresses and 100,000 domains. The queries go through `vigil.hunt.sql`, the
same path as `vigil hunt` and the API. Each figure is the best of three runs.

Prints a table and ends with one JSON line: `rows`, `seconds` (the filter-and-group query),
and the other figures. `--quick` uses 1,000,000 rows.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from rich.console import Console  # noqa: E402

from figures import report  # noqa: E402
from vigil.hunt import sql  # noqa: E402
from vigil.store.events import COMMITS, SCHEMA  # noqa: E402

DATASETS = ["zeek.dns", "zeek.conn", "zeek.http", "zeek.ssl", "windows", "linux.auditd",
            "aws.cloudtrail", "suricata.alert", "okta.system", "linux.auth"]  # fmt: skip
DAY = 86_400
QUERIES = {
    "filter_group": (
        "SELECT host_name, count(*) AS c FROM events WHERE dataset = 'zeek.dns' "
        "AND dns_question_name LIKE '%.ru' GROUP BY 1 ORDER BY c DESC LIMIT 20"
    ),
    "time_range": (
        "SELECT destination_ip, count(DISTINCT source_ip) AS sources, count(*) AS c "
        "FROM events WHERE time >= TIMESTAMPTZ '{start}' AND time < TIMESTAMPTZ '{end}' "
        "AND destination_port = 445 GROUP BY 1 ORDER BY c DESC LIMIT 20"
    ),
}


def generate(folder: Path, rows: int, seed: int = 7) -> int:
    """Write `rows` events in the store's layout; bytes written."""
    rng = np.random.default_rng(seed)
    start = int(time.time()) // DAY * DAY - 30 * DAY
    hosts = np.array([f"host-{i:04d}" for i in range(2_000)], dtype=object)
    users = np.array([f"user{i:04d}" for i in range(5_000)], dtype=object)
    addresses = np.array([f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(50_000)],
                         dtype=object)  # fmt: skip
    tlds = np.array(["com", "net", "org", "ru", "cn", "io", "de"], dtype=object)
    domains = np.array([f"d{i}.{tlds[i % len(tlds)]}" for i in range(100_000)], dtype=object)
    ports = np.array([53, 80, 443, 445, 22, 3389, 8080, 135], dtype=np.int32)
    written = 0
    offset = 0
    chunk = 1_000_000
    commits = []
    for first in range(0, rows, chunk):
        count = min(chunk, rows - first)
        times = start * 1_000_000 + rng.integers(0, 30 * DAY * 1_000_000, count)
        order = np.argsort(times)
        times = times[order]
        dataset_index = rng.integers(0, len(DATASETS), count)
        columns = {name: pa.nulls(count, type=SCHEMA.field(name).type) for name in SCHEMA.names}
        columns["offset"] = pa.array(np.arange(offset, offset + count, dtype=np.int64))
        columns["time"] = pa.array(times, type=pa.timestamp("us", tz="UTC"))
        columns["ingested"] = columns["time"]
        columns["dataset"] = pa.array(np.array(DATASETS, dtype=object)[dataset_index])
        columns["host_name"] = pa.array(hosts[rng.integers(0, len(hosts), count)])
        columns["host"] = columns["host_name"]
        columns["user_name"] = pa.array(users[rng.integers(0, len(users), count)])
        columns["source_ip"] = pa.array(addresses[rng.zipf(1.3, count) % len(addresses)])
        columns["destination_ip"] = pa.array(addresses[rng.integers(0, len(addresses), count)])
        columns["destination_port"] = pa.array(ports[rng.integers(0, len(ports), count)])
        columns["dns_question_name"] = pa.array(domains[rng.zipf(1.2, count) % len(domains)])
        columns["fields"] = pa.array(np.full(count, "{}", dtype=object))
        columns["source"] = pa.array(np.full(count, "bench", dtype=object))
        table = pa.Table.from_arrays([columns[n] for n in SCHEMA.names], schema=SCHEMA)
        days = (times // 1_000_000 - start) // DAY
        for day in np.unique(days):
            stamp = time.strftime("%Y-%m-%d", time.gmtime(start + int(day) * DAY))
            for index, dataset in enumerate(DATASETS):
                mask = (days == day) & (dataset_index == index)
                if not mask.any():
                    continue
                part = table.filter(pa.array(mask))
                target = folder / f"day={stamp}" / f"dataset={dataset}"
                target.mkdir(parents=True, exist_ok=True)
                name = f"part-{offset:020d}-{offset + count - 1:020d}.parquet"
                pq.write_table(part, target / name, compression="zstd")
                written += (target / name).stat().st_size
        commits.append(f"{offset} {offset + count - 1}\n")
        offset += count
    (folder / COMMITS).write_text("".join(commits))
    return written


def best(query: str, folder: Path) -> tuple[float, int]:
    times = []
    rows = 0
    for _ in range(3):
        result = sql(folder, query, limit=1000)
        times.append(result.seconds)
        rows = len(result.rows)
    return min(times), rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,000,000 rows")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--keep", type=Path, help="write the events here and keep them")
    args = parser.parse_args()
    rows = 1_000_000 if args.quick else args.rows
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.keep or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        with console.status(f"Writing {rows:,} events…"):
            started = time.perf_counter()
            size = generate(folder, rows)
            generated = time.perf_counter() - started
        now = int(time.time()) // DAY * DAY
        window = QUERIES["time_range"].format(
            start=time.strftime("%Y-%m-%d", time.gmtime(now - 8 * DAY)),
            end=time.strftime("%Y-%m-%d", time.gmtime(now - 1 * DAY)),
        )
        with console.status("Querying…"):
            seconds, answer_rows = best(QUERIES["filter_group"], folder)
            window_seconds, _ = best(window, folder)
            count_seconds, _ = best("SELECT count(*) FROM events", folder)
    figures = {
        "rows": rows,
        "seconds": round(seconds, 3),
        "answer_rows": answer_rows,
        "time_range_seconds": round(window_seconds, 3),
        "count_seconds": round(count_seconds, 3),
        "generate_seconds": round(generated, 1),
        "mb_on_disk": round(size / 1e6, 1),
    }
    report("Hunting over stored events (DuckDB over Parquet)", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
