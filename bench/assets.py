"""Benchmark the access graph (vigil.assets.graph): relationships added incrementally, in
batches as the discovery stage hands them over, then the queries an analyst runs.

The graph has the shape of an enterprise (seeded, so every run builds the same one):
100,000 nodes (70 % users, 25 % hosts, 5 % groups) and 1,000,000 relationships: logons
(user → host, most to a user's few own machines, some to shared servers), flows between
hosts (most to a few hundred servers), group memberships and groups administering hosts.

1. Updates: the relationships in batches of 1,000 (`AccessGraph.add`), some of them again
   (a logon seen twice is one relationship); relationship updates per second.
2. Queries: attack paths from 50 internet-exposed hosts to 10 crown jewels, and the blast
   radius of 50 users (within 3 moves and whole); the p50 and p99 latency of each.
3. Memory: the process's peak resident set.

Prints a table and ends with one JSON line (`edge_updates_per_s`, `rss_mb`,
`query_p99_ms`, and the rest). `--quick` builds a tenth of the graph.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from rich.console import Console  # noqa: E402

from figures import calibrate, report  # noqa: E402
from vigil.assets.graph import AccessGraph  # noqa: E402

console = Console(stderr=True)
BATCH = 1000


def relationships(nodes: int, edges: int, seed: int = 7) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    users = [f"user:u{n}" for n in range(int(nodes * 0.70))]
    hosts = [f"host:h{n}" for n in range(int(nodes * 0.25))]
    groups = [f"group:g{n}" for n in range(nodes - len(users) - len(hosts))]
    servers = hosts[: max(10, len(hosts) // 100)]
    out: list[tuple[str, str, str]] = []
    shares = (("logon", 0.55), ("flow", 0.30), ("member_of", 0.12), ("admin_of", 0.03))
    for kind, share in shares:
        for _ in range(int(edges * share)):
            if kind == "logon":
                user = rng.randrange(len(users))
                # a user's own few machines, or a shared server
                host = servers[rng.randrange(len(servers))] if rng.random() < 0.2 else (
                    hosts[(user * 3 + rng.randrange(3)) % len(hosts)])  # fmt: skip
                out.append((users[user], host, kind))
            elif kind == "flow":
                target = servers if rng.random() < 0.8 else hosts
                out.append((rng.choice(hosts), rng.choice(target), kind))
            elif kind == "member_of":
                out.append((rng.choice(users), rng.choice(groups), kind))
            else:
                out.append((rng.choice(groups), rng.choice(hosts), kind))
    rng.shuffle(out)
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    nodes, edges = (10_000, 100_000) if args.quick else (100_000, 1_000_000)
    calibration = calibrate()
    with console.status("Making the relationships…"):
        stream = relationships(nodes, edges)
        stream += stream[: len(stream) // 10]  # seen again: no new relationship
    graph = AccessGraph()
    with console.status(f"Adding {len(stream):,} relationships in batches of {BATCH:,}…"):
        started = time.perf_counter()
        for start in range(0, len(stream), BATCH):
            graph.add(stream[start : start + BATCH])
        seconds = time.perf_counter() - started
    rng = random.Random(11)
    hosts = [n for n in graph.index if n.startswith("host:")]
    users = [n for n in graph.index if n.startswith("user:")]
    exposed, jewels = rng.sample(hosts, 50), rng.sample(hosts, 10)
    path_times: list[float] = []
    found = 0
    with console.status("Attack paths…"):
        for jewel in jewels:
            began = time.perf_counter()
            found += len(graph.attack_paths(exposed, [jewel], per_target=5))
            path_times.append(time.perf_counter() - began)
    near_times: list[float] = []
    whole_times: list[float] = []
    reached = 0
    with console.status("Blast radius…"):
        for user in rng.sample(users, 50):
            began = time.perf_counter()
            graph.blast_radius(user, depth=3)
            near_times.append(time.perf_counter() - began)
            began = time.perf_counter()
            reached = max(reached, len(graph.blast_radius(user)))
            whole_times.append(time.perf_counter() - began)
    every = path_times + near_times + whole_times
    figures = {
        "nodes": graph.graph.num_nodes(),
        "moves": len(graph),
        "relationships_sent": len(stream),
        "calibration_seconds": calibration,
        "edge_updates_per_s": round(len(stream) / seconds),
        "attack_paths_found": found,
        "attack_paths_p50_ms": percentile(path_times, 0.5),
        "attack_paths_p99_ms": percentile(path_times, 0.99),
        "blast_radius_3_p99_ms": percentile(near_times, 0.99),
        "blast_radius_p99_ms": percentile(whole_times, 0.99),
        "blast_radius_max_nodes": reached,
        "query_p99_ms": percentile(every, 0.99),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }
    report("Access graph: incremental updates and queries", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
