"""State that survives `vigil serve` being killed (SIGKILL) and started again on the same
data folder: an incident in progress keeps its id when the attack's next alerts come, and a
Sigma `event_count` correlation whose window spans the restart fires exactly once."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import orjson
from served import Served, whoami

WHOAMI_ID = "0b3a1c52-8d7e-4f61-9a2b-3c4d5e6f7a8b"
BURST_ID = "5d2c1f0e-7a4b-4c3d-9e8f-0a1b2c3d4e5f"
BURST = f"""\
title: Three whoami runs on one host
id: {BURST_ID}
status: test
correlation:
    type: event_count
    rules:
        - {WHOAMI_ID}
    group-by:
        - Hostname
    timespan: 1h
    condition:
        gte: 3
level: critical
"""


def at(minute: int) -> str:
    return f"2026-11-28 10:{minute:02d}:00.000"


def kill(served: Served) -> None:
    assert served.process is not None
    served.process.send_signal(signal.SIGKILL)
    served.process.wait(30)


def alerts(served: Served, rule: str) -> list[dict[str, Any]]:
    reply = served.get("/api/v1/alerts", params={"rule_id": rule, "limit": 100})
    assert reply.status_code == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


def incidents_on(served: Served, host: str) -> list[dict[str, Any]]:
    listed = served.get("/api/v1/incidents", params={"limit": 100}).json()
    return [i for i in listed if f"host:{host}" in i["entities"]]


def send(served: Served, *events: dict[str, Any]) -> None:
    reply = served.ingest([orjson.dumps(e) for e in events])
    assert reply.status_code == 202, reply.text
    served.wait_idle()


def test_an_incident_in_progress_keeps_its_id_across_a_kill(tmp_path: Path, until) -> None:
    served = Served(tmp_path).start()
    try:
        send(served, whoami(1, host="ws-9", UtcTime=at(0)))
        (before,) = until(lambda: incidents_on(served, "ws-9"), "the incident")
        kill(served)
        served.start()
        send(served, whoami(2, host="ws-9", UtcTime=at(5)))
        until(lambda: len(alerts(served, WHOAMI_ID)) == 2, "the second alert")
        after = until(
            lambda: [i for i in incidents_on(served, "ws-9") if i["alerts"] == 2], "the join"
        )
        assert [i["id"] for i in after] == [before["id"]]
        assert [i["id"] for i in incidents_on(served, "ws-9")] == [before["id"]]
    finally:
        served.stop()


def test_an_event_count_window_spanning_a_kill_fires_exactly_once(tmp_path: Path, until) -> None:
    served = Served(tmp_path)
    (served.rules / "burst.yml").write_text(BURST)
    served.start()
    try:
        send(served, whoami(1, host="ws-3", UtcTime=at(0)))
        kill(served)
        served.start()
        # the hit before the kill counts once: two hits now, not three
        send(served, whoami(2, host="ws-3", UtcTime=at(10)))
        assert alerts(served, BURST_ID) == []
        kill(served)
        served.start()
        send(served, whoami(3, host="ws-3", UtcTime=at(20)))
        (fired,) = until(lambda: alerts(served, BURST_ID), "the correlation")
        assert len(fired["details"]["events"]) == 3
        send(served, whoami(4, host="ws-3", UtcTime=at(30)))
        assert len(alerts(served, BURST_ID)) == 1
    finally:
        served.stop()
