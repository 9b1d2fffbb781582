"""Benchmark the indicator store and matcher: import and load time, memory and the cost of
matching one event, with 1.5 million indicators (every list and feed under
../shared/data/threat_intel, completed with synthetic ones of realistic types).

Prints a table and ends with one JSON line of figures. `--quick` uses 150,000 indicators.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import psutil  # noqa: E402

from figures import report  # noqa: E402
from vigil.detect.ioc import IntelScan  # noqa: E402
from vigil.events import Event  # noqa: E402
from vigil.ingest import FileReport, discover, read_events  # noqa: E402
from vigil.intel import Indicator  # noqa: E402
from vigil.intel.store import IndicatorStore  # noqa: E402

TLDS = ("com", "net", "org", "ru", "cn", "info", "xyz", "top", "io", "biz")
# Share of each type among the synthetic indicators (roughly that of public feeds).
MIX = (("domain", 0.50), ("ipv4", 0.25), ("sha256", 0.10), ("md5", 0.05), ("url", 0.09),
       ("cidr", 0.01))  # fmt: skip


def real_indicators() -> list[Indicator]:
    """Every list, feed and bundle of the reference data, through Vigil's importers."""
    from vigil.intel.importers import import_path

    found: list[Indicator] = []
    intel = DATA / "threat_intel"
    for path in (intel / "maltrail-subset", intel / "misp-feed-eset",
                 intel / "stix21-oasis-examples", intel / "unit42-playbooks-stix20"):  # fmt: skip
        if path.exists():
            for imported in import_path(path):
                found.extend(imported.result.indicators)
    return found


def synthetic(count: int, seed: int = 7) -> list[Indicator]:
    rng = random.Random(seed)
    out = []
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    for kind, share in MIX:
        for i in range(int(count * share)):
            if kind == "domain":
                value = "".join(rng.choices(letters, k=rng.randint(6, 14))) + "." + rng.choice(TLDS)
            elif kind == "ipv4":
                value = ".".join(str(rng.randint(1, 254)) for _ in range(4))
            elif kind == "cidr":
                value = ".".join(str(rng.randint(1, 254)) for _ in range(3)) + ".0/24"
            elif kind == "url":
                host = "".join(rng.choices(letters, k=10)) + "." + rng.choice(TLDS)
                value = f"http://{host}/{''.join(rng.choices(letters, k=8))}.php?id={i}"
            else:
                size = 64 if kind == "sha256" else 32
                value = f"{rng.getrandbits(size * 4):0{size}x}"
            out.append(Indicator(kind, value, "synthetic", confidence=rng.randint(40, 100),
                                 reference=f"synthetic:{kind}:{i}"))  # fmt: skip
    return out


def sample_events(limit: int) -> list[Event]:
    """Real events of every layer with entities to match: DNS, connections, HTTP, TLS,
    files, Suricata, Sysmon."""
    paths = [
        DATA / "network" / "stratosphere" / "005-zeek-scenario-malicious",
        DATA / "network" / "wrccdc2018-zeek",
        DATA / "network" / "suricata-eve-alerts",
        DATA / "windows" / "evtx-to-mitre-attack",
    ]
    events: list[Event] = []
    per_path = limit // len(paths)
    for path in paths:
        taken = 0
        for source in discover([path]):
            for batch in read_events(source, FileReport(source.name)):
                events.extend(batch[: per_path - taken])
                taken += min(len(batch), per_path - taken)
                if taken >= per_path:
                    break
            if taken >= per_path:
                break
    return events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="150,000 indicators")
    parser.add_argument("--indicators", type=int, default=1_500_000)
    parser.add_argument("--events", type=int, default=40_000)
    args = parser.parse_args()
    if not (DATA / "threat_intel").exists():
        print("reference data not found under", DATA, file=sys.stderr)
        return 2
    total = 150_000 if args.quick else args.indicators
    events_wanted = 8_000 if args.quick else args.events
    process = psutil.Process()
    started = time.perf_counter()
    real = real_indicators()
    real_s = time.perf_counter() - started
    fake = synthetic(max(0, total - len(real)))
    with tempfile.TemporaryDirectory() as folder:
        store = IndicatorStore.open(folder)
        started = time.perf_counter()
        counts = store.add(real + fake)
        import_s = time.perf_counter() - started
        del fake
        gc.collect()
        rss_before = process.memory_info().rss
        started = time.perf_counter()
        intel = IntelScan.load(store)
        load_s = time.perf_counter() - started
        gc.collect()
        matcher_mb = (process.memory_info().rss - rss_before) / 1e6
        events = sample_events(events_wanted)
        started = time.perf_counter()
        for event in events:
            event.ecs  # noqa: B018 - the ECS view is built by ingestion, timed apart
        ecs_us = (time.perf_counter() - started) / len(events) * 1e6
        match = intel.matcher.match
        best = float("inf")
        hits = 0
        for _ in range(3):
            started = time.perf_counter()
            hits = sum(len(match(event)) for event in events)
            best = min(best, time.perf_counter() - started)
        match_us = best / len(events) * 1e6
        db_mb = sum(f.stat().st_size for f in Path(folder).iterdir()) / 1e6
    figures = {
        "indicators": counts.indicators,
        "distinct": len(intel.matcher),
        "real_indicators": len(real),
        "real_import_s": round(real_s, 2),
        "store_write_s": round(import_s, 2),
        "load_s": round(load_s, 2),
        "matcher_mb": round(matcher_mb, 1),
        "peak_rss_mb": round(process.memory_info().rss / 1e6, 1),
        "db_mb": round(db_mb, 1),
        "events": len(events),
        "hits": hits,
        "match_us_per_event": round(match_us, 2),
        "ecs_us_per_event": round(ecs_us, 2),
    }
    report("Indicator store and matcher", figures)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
