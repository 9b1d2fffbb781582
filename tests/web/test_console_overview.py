"""The overview: its figures from the same services as the API (incidents open by level,
MTTD by day, the pipeline's stages), kept live by server-sent events that end when the
session does."""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
import pytest
from console_client import Browser, browser

from vigil.config import Settings
from vigil.demo import records
from vigil.serve.pipeline import JSON
from vigil.serve.service import Service
from vigil.web.console import seconds
from vigil.web.server import build_app


@pytest.fixture
def with_rules(tmp_path) -> Iterator[Browser]:
    """The console over a service with the starter rules (the demo's detections)."""
    settings = Settings(data_dir=tmp_path, indicators=False, pipeline={"workers": 0})
    service = Service(settings)
    made = browser(build_app(service), service)
    with made.client:
        yield made


def test_the_overview_shows_the_demo_and_streams_its_figures(with_rules) -> None:
    console = with_rules
    service = console.service
    service.events_out.publish(JSON, "demo", records(time.time() - 3600))
    assert service.drain(60)
    console.sign_in("viewer")
    page = console.get("/console/")
    assert page.status_code == 200
    by_level = service.incident_store.open_by_level()
    assert by_level and sum(by_level.values()) >= 1
    for level, count in by_level.items():
        assert f"<title>{level}: {count}</title>" in page.text  # the bar chart's
    metrics = service.incident_store.response_metrics(days=30)  # the API's own figures
    assert metrics["mttd"] is not None
    assert f"mean {seconds(metrics['mttd'])})" in page.text
    assert 'sse-connect="/console/stream"' in page.text
    with console.client.stream("GET", "/console/stream") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        seen = ""
        for line in stream.iter_lines():
            seen += line + "\n"
            if line.startswith("data:") and "<td>detect</td>" in line:
                break
        assert "event: overview" in seen and "<td>detect</td>" in seen


def test_a_live_stream_ends_with_its_session(console) -> None:
    console.sign_in("analyst")
    with console.client.stream("GET", "/console/stream") as stream:
        lines = stream.iter_lines()
        while "event: overview" not in next(lines):
            pass
        console.post("/console/logout")  # the same browser signs out
        time.sleep(1.1)  # past what a session found valid is believed
        rest = []
        for line in lines:
            rest.append(line)
            if "event: ended" in line:
                break
        assert "event: ended" in rest


def test_the_overview_needs_a_session(console) -> None:
    assert console.get("/console/stream", follow_redirects=False).status_code == 303
    assert orjson.loads(console.get("/health").content)["status"] in ("ok", "degraded")
