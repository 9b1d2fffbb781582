"""Benchmark the console: server time per page with 1,000,000 alerts and 10,000 incidents.

The store is filled through the stores' own write paths (`AlertStore.add`,
`IncidentStore.save`), with alerts shaped like the detect stage's: the loaded rules' ids,
titles, levels and ATT&CK tags, Sysmon-like events over 2,000 hosts and 5,000 users, each
alert with its entities. 10,000 incidents of 100 alerts each hold every alert. The filled
folder is kept under bench/out/ and reused while the schema is the same.

Each page is asked through the app in-process (the real app: API and console, a signed-in
session, no network), first once to warm it, then `--rounds` times; the figure is the time
from request to the last byte of the answer. Prints a table and ends with one JSON line:
`p99_ms` (per page), `p50_ms` (per page), `worst_p99_ms` and the store's sizes. `--quick`
uses 100,000 alerts and 1,000 incidents.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402

from figures import calibrate, report  # noqa: E402

console = Console(stderr=True)
HOSTS = 2_000
USERS = 5_000
PER_INCIDENT = 100
BATCH = 10_000


def fill(folder: Path, alerts: int, incidents: int) -> None:
    """Alerts and incidents into a fresh state database under `folder`."""
    from vigil.correlate.model import Incident, Membership
    from vigil.correlate.store import IncidentStore
    from vigil.detect.sigma import load_rules, starter_rules
    from vigil.events.records import Alert, Detection
    from vigil.store import state_engine
    from vigil.store.alerts import AlertStore

    rng = random.Random(7)
    rules = [r for r in load_rules([starter_rules()]).plan.rules]
    engine = state_engine(folder)
    alert_store, incident_store = AlertStore(engine), IncidentStore(engine)
    start = time.time() - 30 * 86_400
    step = 30 * 86_400 / alerts
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("alerts", total=alerts)
        made = 0
        batch: list[Alert] = []
        members: list[tuple[str, Membership]] = []
        found: list[Incident] = []
        for i in range(alerts):
            rule = rules[rng.randrange(len(rules))]
            incident_no = i // PER_INCIDENT if i // PER_INCIDENT < incidents else None
            host = f"ws-{(incident_no if incident_no is not None else i) % HOSTS:04d}.corp.local"
            user = f"user{rng.randrange(USERS):04d}"
            at = start + i * step
            event = {
                "EventID": 1,
                "Channel": "Microsoft-Windows-Sysmon/Operational",
                "Hostname": host,
                "User": f"CORP\\{user}",
                "Image": "C:\\Windows\\System32\\rundll32.exe",
                "CommandLine": f"rundll32.exe C:\\Windows\\System32\\comsvcs.dll MiniDump {i}",
                "SourceIp": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
            }
            detection = Detection(
                kind="sigma",
                rule_id=rule.rule_id,
                rule_title=rule.title,
                level=rule.level,
                status=rule.status,
                tags=tuple(rule.tags),
                time=at,
                timestamp=None,
                host=host,
                source_file="bench",
                record_id=i,
                matched_fields={"CommandLine": event["CommandLine"]},
                event=event,
                detected_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at + 1)),
            )
            entities = (("host", host), ("user", user), ("ip", event["SourceIp"]))
            alert = Alert(f"{i:032x}", detection, entities, offset=i, raised=at + 1)
            batch.append(alert)
            if incident_no is not None:
                if i % PER_INCIDENT == 0:
                    found.append(
                        Incident(
                            id=f"INC-{incident_no:016x}",
                            opened=at,
                            last=at,
                            entities={("host", host)},
                            level=rng.choice(["critical", "high", "medium", "low"]),
                            risk=rng.uniform(1, 500),
                            first_event=at,
                            detected=at + 1,
                            tactics=["execution", "credential_access"],
                            earlier=PER_INCIDENT,  # its size, as after a restart
                        )
                    )
                current = found[-1]
                current.last = at
                current.entities.add(("user", user))
                current.rules[rule.rule_id] = current.rules.get(rule.rule_id, 0) + 1
                members.append((current.id, Membership(alert.id, at, "bench", entities)))
            if len(batch) >= BATCH:
                alert_store.add(batch)
                made += len(batch)
                bar.update(task, completed=made)
                batch = []
            if len(found) >= 200 and i % PER_INCIDENT == PER_INCIDENT - 1:
                incident_store.save(found, members)
                found, members = [], []
        if batch:
            alert_store.add(batch)
        if found:
            incident_store.save(found, members)


def prepared(alerts: int, incidents: int) -> Path:
    """A filled data folder, kept while the migrations are the same."""
    versions = ROOT / "src" / "vigil" / "store" / "migrations" / "versions"
    schema = max(p.stem.split("_")[0] for p in versions.glob("*.py"))
    folder = ROOT / "bench" / "out" / f"console-{alerts}-{incidents}-{schema}"
    if (folder / ".filled").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    began = time.monotonic()
    fill(folder, alerts, incidents)
    (folder / ".filled").write_text(f"{time.monotonic() - began:.1f}\n")
    return folder


def pages(client: Any) -> dict[str, str]:
    """The pages timed: every page, and the heavy cases of the big ones."""
    incident = client.get("/api/v1/incidents?limit=1").json()[0]["id"]
    alert = client.get("/api/v1/alerts?limit=1&offset=5000").json()[0]
    host = client.get("/api/v1/assets?kind=host&limit=1").json()[0]["id"]
    return {
        "overview": "/console/",
        "incidents": "/console/incidents",
        "incidents_open_by_opened": "/console/incidents?status=open&sort=opened&order=asc",
        "incidents_far_page": "/console/incidents?offset=9000",
        "incidents_by_entity": "/console/incidents?entity=host:ws-0042.corp.local",
        "incident": f"/console/incidents/{incident}",
        "alerts": "/console/alerts",
        "alerts_by_host": "/console/alerts?host=ws-0042.corp.local",
        "alerts_by_user": "/console/alerts?user=user0042",
        "alerts_by_rule": f"/console/alerts?rule={alert['rule_id']}",
        "alerts_far_page": "/console/alerts?offset=100000",
        "alerts_of_incident": f"/console/alerts?incident={incident}",
        "alert": f"/console/alerts/{alert['id']}",
        "hunt": "/console/hunt",
        "hunt_notebook": "/console/hunt/bench",
        "coverage": "/console/coverage",
        "coverage_exercises": "/console/coverage/exercises",
        "risk_register": "/console/coverage/risk",
        "assets": "/console/assets",
        "asset": f"/console/assets/{host}",
        "zerotrust": "/console/zerotrust",
        "intel": "/console/intel",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 alerts, 1,000 incidents")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    alerts, incidents = (100_000, 1_000) if args.quick else (1_000_000, 10_000)
    folder = prepared(alerts, incidents)

    from fastapi.testclient import TestClient

    from vigil.api.auth import TokenStore
    from vigil.config import Settings
    from vigil.serve.service import Service
    from vigil.web.server import build_app

    scratch = folder.parent / f"{folder.name}-run"
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(folder, scratch)  # the runs' own writes (sessions, stages) stay out of it
    service = Service(Settings(data_dir=scratch, indicators=False, pipeline={"workers": 0}))
    token = TokenStore(service.engine).create("admin", "bench")[0]
    # an inventory of the alerts' hosts (20 crown jewels) and a saved hunt, so that the
    # asset, risk and notebook pages have something to show
    inventory = "hostname,ip,owner,criticality\n" + "".join(
        f"ws-{i:04d}.corp.local,10.9.{i >> 8}.{i & 255},team{i % 40},"
        f"{'crown-jewel' if i % 100 == 0 else 'medium'}\n"
        for i in range(HOSTS)
    )
    service.import_assets(inventory.encode(), "cmdb.csv")
    service.save_hunt(
        "bench", query="SELECT count(*) FROM events", sigma=None, every_seconds=86_400
    )
    figures: dict[str, Any] = {"alerts": alerts, "incidents": incidents}
    p50: dict[str, float] = {}
    p99: dict[str, float] = {}
    with TestClient(build_app(service), base_url="http://127.0.0.1") as client:
        form = client.get("/console/login").text
        signin = re.search(r'name="signin" value="([^"]+)"', form)
        assert signin is not None
        client.post("/console/login", data={"token": token, "signin": signin.group(1)})
        api = TestClient(client.app, base_url="http://127.0.0.1")
        api.headers["Authorization"] = f"Bearer {token}"
        # the stages take up what the import published before any page is timed
        service.drain(300)
        time.sleep(2)
        for name, path in pages(api).items():
            first = client.get(path)
            if first.status_code != 200:
                console.print(f"[red]{name}: {path} answered {first.status_code}[/]")
                p50[name] = p99[name] = -1.0
                continue
            times = []
            for _ in range(args.rounds):
                began = time.perf_counter()
                answer = client.get(path)
                times.append((time.perf_counter() - began) * 1000)
                assert answer.status_code == 200
            times.sort()
            p50[name] = round(statistics.median(times), 1)
            p99[name] = round(times[min(len(times) - 1, int(len(times) * 0.99))], 1)
    service.stop()
    shutil.rmtree(scratch, ignore_errors=True)
    table = Table(title=f"Console pages, {alerts:,} alerts, {incidents:,} incidents (ms)")
    for column in ("page", "p50", "p99", "under 300 ms"):
        table.add_column(column, justify="left" if column == "page" else "right")
    for name in p50:
        ok = 0 <= p99[name] < 300
        table.add_row(name, f"{p50[name]:,.1f}", f"{p99[name]:,.1f}", "yes" if ok else "[red]no[/]")
    console.print(table)
    figures["worst_p99_ms"] = max((v for v in p99.values() if v >= 0), default=-1.0)
    figures["pages_over_300_ms"] = sorted(n for n in p99 if not 0 <= p99[n] < 300)
    figures["cpu_calibration_s"] = calibrate()
    report("Console: server time per page", {**figures, "p50_ms": p50, "p99_ms": p99})


if __name__ == "__main__":
    main()
