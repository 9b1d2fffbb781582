"""Benchmark the Zero Trust decision point: 1,000 policies, 10,000 users, 100,000 decisions.

The organisation is generated, seeded (every run the same): 200 groups, users in one to three
of them, 2,000 resources carrying 300 tags, 3,000 devices with their posture; 950 allow
policies (a group on a tag, some actions, conditions on MFA, device posture and user risk)
and 50 deny policies.

1. In-process: `DecisionPoint.decide` on each request, the decision log included (every
   decision queued for the durable `decisions` stream); p50 and p99 per decision.
2. Cedar: the same policies written in Cedar and evaluated with `cedarpy` in batches of 1,000
   (the fastest way to call it); microseconds per decision, and how often it agrees with
   Vigil's compiled policies (step-up counted as not allowed, which Cedar has no word for).
3. Sustained: 10,000 decisions a second for 10 seconds; every one must be in the log.
4. Over HTTP: `POST /api/v1/access/decision` on a real server in its own process, as an
   enforcement point meets it (`vigil serve`'s app on uvicorn, loopback, one keep-alive
   connection, the same organisation), each answer sent once its decision is kept in the
   log; p50, p99 with a lean client (`http.client`, the decision point's own latency) and
   with httpx (what `vigil zt proxy` uses, about 0.3 ms more), and the decisions logged.

Prints a table and ends with one JSON line (`p99_inprocess_us`, `p99_http_ms`, ...).
`--quick` makes 10,000 decisions (2,000 over HTTP).
"""

from __future__ import annotations

import argparse
import gc
import http.client
import multiprocessing
import random
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import cedarpy  # noqa: E402
import httpx  # noqa: E402
import orjson  # noqa: E402
import uvicorn  # noqa: E402
from rich.console import Console  # noqa: E402

from figures import calibrate, report  # noqa: E402
from vigil.api.auth import TokenStore  # noqa: E402
from vigil.config import Settings  # noqa: E402
from vigil.serve.service import Service  # noqa: E402
from vigil.web.server import build_app  # noqa: E402
from vigil.zerotrust.policy import AccessRequest  # noqa: E402

console = Console(stderr=True)
GROUPS, USERS, RESOURCES, TAGS, DEVICES, POLICIES = 200, 10_000, 2_000, 300, 3_000, 1_000
ACTIONS = ("read", "write", "delete", "admin")


def organisation(seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)
    users = {
        f"u{n}": sorted({f"g{rng.randrange(GROUPS)}" for _ in range(rng.randint(1, 3))})
        for n in range(USERS)
    }
    resources = {
        f"r{n}": sorted({f"t{rng.randrange(TAGS)}" for _ in range(rng.randint(1, 2))})
        for n in range(RESOURCES)
    }
    devices = {
        f"d{n}": {
            "managed": rng.random() < 0.9,
            "edr": rng.random() < 0.85,
            "disk_encrypted": rng.random() < 0.9,
            "patch_age_days": rng.randrange(90),
        }
        for n in range(DEVICES)
    }
    policies = []
    for n in range(POLICIES):
        deny = n >= POLICIES - 50
        when: dict[str, Any] = {}
        if not deny:
            if rng.random() < 0.5:
                when["mfa"] = True
            if rng.random() < 0.3:
                when["device"] = {"managed": True}
            when["max_user_risk"] = 60
        policies.append(
            {
                "id": f"p{n}",
                "effect": "deny" if deny else "allow",
                "subjects": {"groups": [f"g{rng.randrange(GROUPS)}"]},
                "resources": {"tags": [f"t{rng.randrange(TAGS)}"]},
                "actions": rng.sample(ACTIONS, rng.randint(1, 2)),
                "when": when,
            }
        )
    risk = {u: float(rng.choice((0, 0, 0, 20, 80))) for u in users}
    return {
        "users": users,
        "resources": resources,
        "devices": devices,
        "policies": policies,
        "risk": risk,
    }


def requests(org: dict[str, Any], count: int, seed: int = 11) -> list[AccessRequest]:
    rng = random.Random(seed)
    users = list(org["users"])
    out = []
    for _ in range(count):
        user = rng.choice(users)
        out.append(
            AccessRequest(
                user,
                rng.choice(ACTIONS),
                f"r{rng.randrange(RESOURCES)}",
                groups=tuple(org["users"][user]),
                mfa=rng.random() < 0.7,
                device=f"d{rng.randrange(DEVICES)}",
                source_ip=f"10.{rng.randrange(256)}.0.9",
            )
        )
    return out


def cedar(org: dict[str, Any]) -> tuple[cedarpy.PolicySet, cedarpy.Entities]:
    """The same policies and organisation in Cedar: users in groups, resources in tags."""
    texts = []
    for p in org["policies"]:
        actions = ", ".join(f'Action::"{a}"' for a in p["actions"])
        conditions = []
        when = p["when"]
        if when.get("mfa"):
            conditions.append("context.mfa")
        if when.get("device"):
            conditions.append("context.managed")
        if "max_user_risk" in when:
            conditions.append(f"context.user_risk <= {int(when['max_user_risk'])}")
        effect = "forbid" if p["effect"] == "deny" else "permit"
        head = (
            f'{effect}(principal in Group::"{p["subjects"]["groups"][0]}", action in '
            f'[{actions}], resource in Tag::"{p["resources"]["tags"][0]}")'
        )
        texts.append(head + (f" when {{ {' && '.join(conditions)} }};" if conditions else ";"))
    entities: list[dict[str, Any]] = [
        {"uid": {"type": "Group", "id": f"g{n}"}, "attrs": {}, "parents": []} for n in range(GROUPS)
    ]
    entities += [
        {"uid": {"type": "Tag", "id": f"t{n}"}, "attrs": {}, "parents": []} for n in range(TAGS)
    ]
    entities += [
        {
            "uid": {"type": "User", "id": u},
            "attrs": {},
            "parents": [{"type": "Group", "id": g} for g in groups],
        }
        for u, groups in org["users"].items()
    ]
    entities += [
        {
            "uid": {"type": "Resource", "id": r},
            "attrs": {},
            "parents": [{"type": "Tag", "id": t} for t in tags],
        }
        for r, tags in org["resources"].items()
    ]
    return (
        cedarpy.PolicySet.from_str("\n".join(texts)),
        cedarpy.Entities.from_json_str(orjson.dumps(entities).decode()),
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def seeded(folder: Path, org: dict[str, Any]) -> Service:
    """A service deciding over the organisation: its policies, and what the inventory and
    correlation would have told the decision point."""
    policy_file = folder / "policies.yml"
    policy_file.write_text(orjson.dumps({"policies": org["policies"]}).decode())
    settings = Settings.model_validate(
        {
            "data_dir": folder / "data",
            "indicators": False,
            "starter_rules": False,
            "pipeline": {"workers": 0},
            "zerotrust": {"policies": [str(policy_file)]},
        }
    )
    service = Service(settings)
    knowledge = service.knowledge
    for name, tags in org["resources"].items():
        knowledge.resources[name] = (frozenset(tags), None)
    for name, posture in org["devices"].items():
        knowledge.devices[name] = posture
    for user, risk in org["risk"].items():
        knowledge.risk[("user", user)] = risk
    return service


def server(port: int, told: Any, logged: Any) -> None:
    """The HTTP side, in its own process: `vigil serve`'s app over the seeded service. Tells
    its token, and once stopped (SIGTERM) how many decisions its log wrote."""
    service = seeded(Path(tempfile.mkdtemp(prefix="vigil-bench-pdp-http-")), organisation())
    told.put(TokenStore(service.engine).create("pep", "bench")[0])
    stop = service.stop

    def stopped() -> None:
        stop()  # the log flushed
        logged.value = service.decision_log.written

    service.stop = stopped  # type: ignore[method-assign]
    uvicorn.run(
        build_app(service), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    count, over_http = (10_000, 2_000) if args.quick else (100_000, 10_000)
    figures: dict[str, Any] = {
        "calibration_seconds": calibrate(),
        "policies": POLICIES,
        "users": USERS,
        "decisions": count,
    }
    org = organisation()
    asked = requests(org, count)
    service = seeded(Path(tempfile.mkdtemp(prefix="vigil-bench-pdp-")), org)
    knowledge = service.knowledge
    gc.freeze()  # as `Service.start` does once start-up has loaded everything
    service.decision_log.start()
    pdp = service.pdp

    with console.status(f"In-process: {count:,} decisions…"):
        times, outcomes = [], []
        for request in asked:
            began = time.perf_counter()
            outcomes.append(pdp.decide(request).outcome)
            times.append(time.perf_counter() - began)
    service.decision_log.wait(service.decision_log._seq, 120)
    figures["p50_inprocess_us"] = round(percentile(times, 0.5) * 1e6, 1)
    figures["p99_inprocess_us"] = round(percentile(times, 0.99) * 1e6, 1)
    figures["decisions_logged"] = service.decision_log.written
    figures["allowed_share"] = round(outcomes.count("allow") / count, 3)

    with console.status("Cedar (cedarpy), batches of 1,000…"):
        policies, entities = cedar(org)
        facts = [knowledge.facts(r) for r in asked]
        cedar_allowed: list[bool] = []
        began = time.perf_counter()
        for at in range(0, count, 1000):
            batch = [
                {
                    "principal": f'User::"{r.subject}"',
                    "action": f'Action::"{r.action}"',
                    "resource": f'Resource::"{r.resource}"',
                    "context": {
                        "mfa": r.mfa,
                        "managed": bool((f.posture or {}).get("managed")),
                        "user_risk": int(f.user_risk),
                    },
                }
                for r, f in zip(asked[at : at + 1000], facts[at : at + 1000], strict=True)
            ]
            results = cedarpy.is_authorized_batch(batch, policies, entities)
            cedar_allowed.extend(r.allowed for r in results)
        cedar_s = time.perf_counter() - began
    figures["cedar_us_per_decision"] = round(cedar_s / count * 1e6, 1)
    agree = sum(a == (o == "allow") for a, o in zip(cedar_allowed, outcomes, strict=True))
    figures["cedar_agreement"] = round(agree / count, 4)

    # sustained: 10,000 decisions a second for 10 s (2 s with --quick); every one logged
    seconds = 2 if args.quick else 10
    before = service.decision_log.written
    began = time.monotonic()
    with console.status(f"Sustained: 10,000 decisions/s for {seconds} s…"):
        for n in range(seconds * 10_000):
            target = began + n / 10_000
            if (lag := target - time.monotonic()) > 0:
                time.sleep(lag)
            pdp.decide(asked[n % count])
    achieved = seconds * 10_000 / (time.monotonic() - began)
    service.decision_log.wait(service.decision_log._seq, 120)
    figures["sustained_decisions_per_s"] = round(achieved)
    figures["sustained_logged"] = service.decision_log.written - before
    figures["sustained_complete"] = figures["sustained_logged"] == seconds * 10_000

    service.decision_log.stop()
    port = free_port()
    spawn = multiprocessing.get_context("spawn")
    told, logged = spawn.Queue(), spawn.Value("q", -1)
    process = spawn.Process(target=server, args=(port, told, logged), daemon=True)
    process.start()
    token = told.get(timeout=300)
    bodies = [
        orjson.dumps(
            {
                "subject": r.subject,
                "action": r.action,
                "resource": r.resource,
                "groups": list(r.groups),
                "mfa": r.mfa,
                "device": r.device,
                "source_ip": r.source_ip,
            }
        )
        for r in asked[:over_http]
    ]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    # a lean keep-alive client (as an enforcement point in C, nginx or Envoy, would be), so
    # the figure is the decision point's; then httpx, what `vigil zt proxy` itself uses
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while True:  # the server is up
        try:
            connection.request("GET", "/health")
            connection.getresponse().read()
            break
        except OSError:
            connection.close()
            time.sleep(0.1)
    http_times = []
    with console.status(f"Over HTTP: {over_http:,} decisions…"):
        for body in bodies:
            began = time.perf_counter()
            connection.request("POST", "/api/v1/access/decision", body, headers)
            answer = connection.getresponse()
            data = answer.read()
            http_times.append(time.perf_counter() - began)
            assert answer.status == 200, data
    connection.close()
    httpx_times = []
    with (
        console.status(f"Over HTTP with httpx: {over_http:,} decisions…"),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client,
    ):
        for body in bodies:
            began = time.perf_counter()
            reply = client.post("/api/v1/access/decision", content=body)
            httpx_times.append(time.perf_counter() - began)
            assert reply.status_code == 200, reply.text
    process.terminate()  # SIGTERM: uvicorn stops the service, which flushes its log
    process.join(60)
    figures["http_logged"] = logged.value
    figures["p50_http_ms"] = round(percentile(http_times, 0.5) * 1000, 2)
    figures["p99_http_ms"] = round(percentile(http_times, 0.99) * 1000, 2)
    figures["p50_http_httpx_ms"] = round(percentile(httpx_times, 0.5) * 1000, 2)
    figures["p99_http_httpx_ms"] = round(percentile(httpx_times, 0.99) * 1000, 2)
    figures["http_decisions"] = 2 * over_http
    report("Zero Trust decision point", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
