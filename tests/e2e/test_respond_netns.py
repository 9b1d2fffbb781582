"""Response for real, end to end, in network namespaces (root, `ip netns`, `nft`): a real
credential-dumping recording (Mimikatz opening LSASS on FS03, evtx-to-mitre-attack) replayed
into `vigil serve` makes the shipped playbook isolate that host, which is the lab's test host:
the workstation's connections to it then fail while management's go through, the incident is
contained and has its case note, and undo through the API lets the workstation in again. A
connection to an address a threat-intelligence list names makes the block playbook block it:
the address can no longer reach the host. The audit chain holds every step."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import orjson
from served import MIMIKATZ, MIMIKATZ_HOST, Served, evtx_documents

from netlab import MANAGEMENT, WORKSTATION, connects

RECORDING, HOST_NAME = MIMIKATZ, MIMIKATZ_HOST


def wait_for(served: Served, path: str, ready: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = served.get(path).json()
        if ready(last):
            return last
        time.sleep(0.2)
    raise AssertionError(f"{path} never got there: {last}")


def step(run: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in run["steps"] if s["step"] == name)


def test_recorded_credential_dumping_isolates_the_host_and_a_c2_hit_is_blocked(
    lab, tmp_path, need_data
) -> None:
    host_ns, peer = lab
    recording = need_data(*RECORDING)
    inside = ["ip", "netns", "exec", host_ns]
    c2 = tmp_path / "c2.txt"
    c2.write_text(f"{WORKSTATION}\n")
    served = Served(
        tmp_path,
        env={
            "VIGIL_STARTER_RULES": "true",
            "VIGIL_INDICATORS": "true",
            "VIGIL_RESPOND__DRY_RUN": "false",
            "VIGIL_RESPOND__FIREWALL__HOSTS": orjson.dumps({HOST_NAME: inside}).decode(),
            "VIGIL_RESPOND__FIREWALL__HERE": orjson.dumps(inside).decode(),
            "VIGIL_RESPOND__FIREWALL__MANAGEMENT": orjson.dumps([f"{MANAGEMENT}/32"]).decode(),
            # the lab's addresses are private: only loopback and management stay unblockable
            "VIGIL_RESPOND__GUARDRAILS__NEVER_BLOCK": orjson.dumps(
                ["127.0.0.0/8", f"{MANAGEMENT}/32"]
            ).decode(),
        },
    )
    imported = subprocess.run(
        [
            sys.executable,
            "-m",
            "vigil.cli",
            "intel",
            "import",
            str(c2),
            "--data-dir",
            str(served.data),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert imported.returncode == 0, imported.stderr
    served.start()
    try:
        assert connects(peer, WORKSTATION) and connects(peer, MANAGEMENT)

        # the recording: isolation of its host, management kept
        reply = served.ingest(evtx_documents(recording))
        assert reply.status_code in (200, 202), reply.text
        runs = wait_for(
            served,
            "/api/v1/runs?playbook=contain-credential-dumping",
            lambda rs: rs and rs[0]["state"] not in ("queued", "running"),
        )
        assert len(runs) == 1, runs  # three alerts on one host: one containment
        run = served.get(f"/api/v1/runs/{runs[0]['id']}").json()
        assert run["dry_run"] is False and run["subject"], run
        assert step(run, "isolate")["state"] == "done", run
        assert step(run, "isolate")["inputs"] == {"host": HOST_NAME}
        assert not connects(peer, WORKSTATION), "the isolated host still takes connections"
        assert connects(peer, MANAGEMENT), "isolation cut the management path"
        # the case: opened on the incident the alerts formed, which is contained
        run = wait_for(
            served, f"/api/v1/runs/{run['id']}", lambda r: step(r, "open-case")["state"] == "done"
        )
        incidents = served.get("/api/v1/incidents").json()
        incident = next(i for i in incidents if f"host:{HOST_NAME}" in i["entities"])
        assert incident["status"] == "contained" and incident["contained_at"], incident
        detail = served.get(f"/api/v1/incidents/{incident['id']}").json()
        assert [r["id"] for r in detail["runs"]] == [run["id"]]  # its runs, on the incident
        timeline = detail["timeline"]
        [kept] = [e for e in timeline if e["kind"] == "evidence"]  # the alert, as a file
        assert kept["text"].endswith(".json"), kept
        assert any(
            "isolated by playbook contain-credential-dumping" in e.get("text", "") for e in timeline
        ), timeline

        # undo: the host takes connections again
        assert served.post(f"/api/v1/runs/{run['id']}/undo", role="viewer").status_code == 403
        assert served.post(f"/api/v1/runs/{run['id']}/undo").status_code == 202
        undone = wait_for(
            served,
            f"/api/v1/runs/{run['id']}",
            lambda r: r["state"] not in ("undoing", "queued", "running"),
        )
        assert undone["state"] == "undone", undone
        assert [u["action"] for u in undone["undo"]] == ["firewall.release"]
        assert connects(peer, WORKSTATION) and connects(peer, MANAGEMENT)

        # a connection to the listed address: blocked, it can no longer reach the host
        conn = {
            "ts": time.time(),
            "uid": "CvigilC2",
            "id.orig_h": "10.231.0.2",
            "id.orig_p": 50000,
            "id.resp_h": WORKSTATION,
            "id.resp_p": 443,
            "proto": "tcp",
            "service": "ssl",
            "conn_state": "SF",
        }
        assert served.ingest([orjson.dumps(conn)]).status_code in (200, 202)
        blocks = wait_for(
            served,
            "/api/v1/runs?playbook=block-c2-indicator",
            lambda rs: rs and rs[0]["state"] not in ("queued", "running"),
        )
        block = served.get(f"/api/v1/runs/{blocks[0]['id']}").json()
        assert step(block, "block")["state"] == "done", block
        assert step(block, "block")["inputs"]["address"] == WORKSTATION
        assert not connects(peer, WORKSTATION), "the blocked address still connects"
        assert connects(peer, MANAGEMENT)
    finally:
        served.stop()
    verify = subprocess.run(
        [
            sys.executable,
            "-m",
            "vigil.cli",
            "audit",
            "verify",
            "--json",
            "--data-dir",
            str(served.data),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert orjson.loads(verify.stdout)["entries"] >= 8
