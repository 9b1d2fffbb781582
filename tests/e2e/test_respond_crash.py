"""A response run survives `kill -9`: a playbook of three calls to a real HTTP receiver (none
idempotent) is triggered through `vigil serve`; the server is killed while the second call
is in flight; restarted, the run completes without repeating anything: the first call is
done and not sent again, the one in flight (it may have gone through) is marked uncertain and
not sent again, the third goes once. Every call carries its own idempotency key."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import yaml
from served import Served, whoami

from vigil.respond.audit import AuditLog
from vigil.store import state_engine

PLAYBOOK = {
    "id": "three-calls",
    "name": "Three calls to the ticketing system",
    "trigger": {"type": "alert", "rules": ["Whoami"], "entity": "host"},
    "steps": [
        {
            "id": f"call-{name}",
            "action": "rest.request",
            "with": {
                "endpoint": "tickets",
                "method": "POST",
                "path": f"/{name}",
                "json": {"host": "{{ entity.host }}"},
            },
            "timeout_s": 20,
        }
        for name in ("first", "slow", "last")
    ],
}


class Receiver(ThreadingHTTPServer):
    """Counts the calls by path and key; holds /slow until told."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.keys: list[str] = []
        self.slow_arrived = threading.Event()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.calls[self.path] += 1
                receiver.keys.append(self.headers.get("Idempotency-Key", ""))
                if self.path == "/slow":
                    receiver.slow_arrived.set()
                    receiver.release.wait(30)
                body = json.dumps({"ok": True}).encode()
                try:
                    self.send_response(201)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the caller is gone (killed)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def test_a_run_killed_mid_step_resumes_and_runs_nothing_twice(tmp_path: Path) -> None:
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "three-calls.yml").write_text(yaml.safe_dump(PLAYBOOK))
    port = receiver.server_address[1]
    env = {
        "VIGIL_RESPOND__DRY_RUN": "false",
        "VIGIL_RESPOND__SHIPPED": "false",
        "VIGIL_RESPOND__PLAYBOOKS": orjson.dumps([str(books)]).decode(),
        "VIGIL_RESPOND__REST": orjson.dumps(
            {"tickets": {"base_url": f"http://127.0.0.1:{port}"}}
        ).decode(),
    }
    served = Served(tmp_path, env=env).start()
    try:
        assert served.ingest([orjson.dumps(whoami(1, host="ws7"))]).status_code in (200, 202)
        assert receiver.slow_arrived.wait(60), "the second call never came"
        os.kill(served.pid, signal.SIGKILL)  # in flight: the receiver holds it
        assert served.process is not None
        served.process.wait(30)
        receiver.release.set()
        served.start()
        deadline = time.monotonic() + 60
        runs: list[dict] = []
        while time.monotonic() < deadline:
            runs = served.get("/api/v1/runs?playbook=three-calls").json()
            if runs and runs[0]["state"] not in ("queued", "running"):
                break
            time.sleep(0.2)
        assert len(runs) == 1 and runs[0]["state"] == "done", runs
        run = served.get(f"/api/v1/runs/{runs[0]['id']}").json()
    finally:
        served.stop()
        receiver.shutdown()
    states = {s["step"]: s["state"] for s in run["steps"]}
    assert states == {"call-first": "done", "call-slow": "uncertain", "call-last": "done"}
    assert receiver.calls == Counter({"/first": 1, "/slow": 1, "/last": 1})
    assert len(set(receiver.keys)) == 3 and all(k.startswith(run["id"]) for k in receiver.keys)
    log = AuditLog(state_engine(served.data))
    assert log.verify().ok
    said = [(e["action"], orjson.loads(e["detail"]).get("step")) for e in log.entries()]
    assert ("action.uncertain", "call-slow") in said
    assert said.count(("action.done", "call-first")) == 1
