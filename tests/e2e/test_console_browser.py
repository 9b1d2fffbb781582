"""The console in a real browser: Playwright drives Debian's Chromium (installed by `make
test`; no browser download) against a real `vigil serve` holding the demo intrusion, its
workstation a crown jewel so that its containment waits for a person.

An analyst's day, page by page, each page's content asserted and a screenshot of it written
under test-output/console/: sign in, the overview, the demo incident from the list, its
timeline followed to an alert, the pivot from that alert to a hunt over the stored events,
the pending isolation approved by a responder, the ATT&CK coverage. Then the guards, in the
browser: a viewer is offered no approval and a forged approval is refused, a form posted
without the session's anti-forgery value is refused, and a `<script>` in a process command
line is shown as text and never runs; no page breaks the Content-Security-Policy."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from served import Served

from vigil.demo import HOST, records

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-output" / "console"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CMDB = f"hostname,criticality\n{HOST},crown-jewel\n".encode()
HOSTILE = '<script>window.__owned = 1</script><img src=x onerror="window.__owned = 2">'

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make test does it)"
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server with the starter rules; the workstation made a crown jewel; the demo's
    records sent as `vigil demo` tells them, then a whoami with a hostile command line."""
    server = Served(
        tmp_path_factory.mktemp("console"),
        env={"VIGIL_STARTER_RULES": "true", "VIGIL_RESPOND__DRY_RUN": "true"},
    ).start()
    try:
        imported = server.post("/api/v1/assets/import?name=cmdb.csv", content=CMDB)
        assert imported.status_code == 200, imported.text
        sent = server.ingest(records(time.time() - 3600))
        assert sent.status_code in (200, 202), sent.text
        hostile = {
            "EventID": 1,
            "Channel": "Microsoft-Windows-Sysmon/Operational",
            "Hostname": "pc-hostile",
            "UtcTime": time.strftime("%Y-%m-%d %H:%M:%S.000", time.gmtime()),
            "Image": "C:\\Windows\\System32\\whoami.exe",
            "CommandLine": f"whoami {HOSTILE}",
            "User": f"CORP\\{HOSTILE}",
        }
        assert server.ingest([orjson.dumps(hostile)]).status_code in (200, 202)
        server.wait_idle(120)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield chromium
        chromium.close()


class Analyst:
    """One signed-in browser tab, watching for script errors and CSP refusals."""

    def __init__(self, browser: Any, served: Served, role: str) -> None:
        self.context = browser.new_context(
            base_url=served.url, viewport={"width": 1400, "height": 900}
        )
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        self.page.on(
            "console",
            lambda message: (
                self.problems.append(message.text)
                if message.type == "error" or "Content Security Policy" in message.text
                else None
            ),
        )
        self.page.goto("/console/")
        assert "/console/login" in self.page.url  # not signed in yet: sent to sign in
        self.page.fill("input[name=token]", served.tokens[role])
        self.page.click("button[type=submit]")
        self.page.wait_for_url(re.compile(r"/console/$"))

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def text(self) -> str:
        return str(self.page.inner_text("main"))

    def close(self) -> None:
        self.context.close()


def demo_incident(served: Served) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for incident in served.get("/api/v1/incidents?limit=50").json():
            if f"host:{HOST}" in incident["entities"]:
                return incident  # type: ignore[no-any-return]
        time.sleep(0.5)
    raise AssertionError("the demo made no incident")


def pending_step(served: Served) -> tuple[str, str]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for step in served.get("/api/v1/runs/pending").json():
            if step.get("state") == "waiting" and step.get("action") == "firewall.isolate":
                return step["run_id"], step["step"]
        time.sleep(0.5)
    raise AssertionError(f"no step waits for approval: {served.get('/api/v1/runs').json()}")


def test_an_analysts_day_in_the_console(served: Served, browser: Any) -> None:
    incident = demo_incident(served)
    run_id, step_id = pending_step(served)
    tab = Analyst(browser, served, "admin")
    page = tab.page

    # the overview: the incident is open, the pipeline's stages are listed
    page.wait_for_selector("#live")
    text = tab.text()
    assert "Open incidents" in text and "Pipeline" in text and "detect" in text
    tab.shot("1-overview")

    # the incident list: the demo's incident, open it
    page.click("nav >> text=Incidents")
    page.wait_for_url(re.compile(r"/console/incidents"))
    row = page.locator(f"a[href='/console/incidents/{incident['id']}']").first
    assert row.count() == 1
    tab.shot("2-incidents")
    row.click()
    page.wait_for_url(re.compile(rf"/console/incidents/{incident['id']}$"))
    text = tab.text()
    assert HOST in text
    for tactic in ("credential", "lateral", "exfiltration"):
        assert tactic in text.lower(), tactic
    timeline = page.locator(".timeline li")
    assert timeline.count() >= 10
    assert page.locator(".graph[data-graph]").count() >= 1
    tab.shot("3-incident")

    # follow the timeline to its LSASS alert
    lsass = page.locator(".timeline li", has_text=re.compile("lsass", re.I)).first
    lsass.locator("a[href^='/console/alerts/']").first.click()
    page.wait_for_url(re.compile(r"/console/alerts/[^/?]+$"))
    assert "lsass" in tab.text().lower()
    tab.shot("4-alert")

    # pivot from the alert to a hunt over the stored events of its host
    page.locator("a[href^='/console/hunt?']").first.click()
    page.wait_for_url(re.compile(r"/console/hunt\?"))
    page.wait_for_selector("table.results, .results table, table.grid")
    assert HOST.split(".")[0].lower() in tab.text().lower()
    tab.shot("5-hunt")

    # a responder approves the workstation's isolation, which was waiting for a person
    responder = Analyst(browser, served, "responder")
    responder.page.goto(f"/console/incidents/{incident['id']}")
    approve = responder.page.locator(
        f"form[action$='/runs/{run_id}/steps/{step_id}/decision'] button", has_text="Approve"
    )
    assert approve.count() == 1
    responder.shot("6-approval")
    approve.click()
    step = decided(served, run_id, step_id)
    assert step["decided"] == "approved" and "responder" in step["decided_by"]
    responder.page.goto(f"/console/incidents/{incident['id']}")
    assert "approved" in responder.text().lower()
    responder.close()

    # the ATT&CK coverage: the rules' techniques in the matrix, T1003 among them
    page.click("nav >> text=Coverage")
    page.wait_for_url(re.compile(r"/console/coverage"))
    matrix = page.locator(".matrix")
    assert matrix.count() == 1
    assert "credential access" in matrix.inner_text().lower()
    assert page.locator(".matrix .technique", has_text="T1003").count() >= 1
    tab.shot("7-coverage")
    assert not tab.problems, tab.problems
    tab.close()


def test_the_guards_hold_in_the_browser(served: Served, browser: Any) -> None:
    incident = demo_incident(served)
    run_id, step_id = pending_step_any(served)

    # a viewer sees the run but is offered no approval, and a forged one is refused
    viewer = Analyst(browser, served, "viewer")
    viewer.page.goto(f"/console/incidents/{incident['id']}")
    assert viewer.page.locator("button", has_text="Approve").count() == 0
    csrf = viewer.page.locator("input[name=csrf]").first.get_attribute("value")
    forged = viewer.page.request.post(
        f"/console/incidents/{incident['id']}/runs/{run_id}/steps/{step_id}/decision",
        form={"csrf": csrf, "decision": "approve"},
    )
    assert forged.status == 403
    viewer.close()

    # a post without the session's anti-forgery value is refused, whoever sends it
    admin = Analyst(browser, served, "admin")
    bare = admin.page.request.post(
        f"/console/incidents/{incident['id']}/notes", form={"text": "forged note"}
    )
    assert bare.status == 403
    assert "forged note" not in served.get(f"/api/v1/incidents/{incident['id']}").text

    # a hostile command line is text on the page, and no script of it ran
    admin.page.goto("/console/alerts?host=pc-hostile")
    admin.page.locator("a[href^='/console/alerts/']").first.click()
    admin.page.wait_for_url(re.compile(r"/console/alerts/[^/?]+$"))
    assert "<script>window.__owned = 1</script>" in admin.text()
    assert admin.page.evaluate("typeof window.__owned") == "undefined"
    assert admin.page.locator("main img[src=x]").count() == 0
    admin.shot("8-hostile-alert")
    assert not admin.problems, admin.problems
    admin.close()


def pending_step_any(served: Served) -> tuple[str, str]:
    """A step of the demo's runs, waiting or already decided (the first test may have
    approved it): the forged approval must be refused either way."""
    for run in served.get("/api/v1/runs?limit=100").json():
        for step in served.get(f"/api/v1/runs/{run['id']}").json().get("steps", []):
            if step["action"] == "firewall.isolate":
                return run["id"], step["step"]
    raise AssertionError("no isolation run")


def decided(served: Served, run_id: str, step_id: str) -> dict[str, Any]:
    """The step once a decision is recorded on it (or as it is after 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        steps = served.get(f"/api/v1/runs/{run_id}").json()["steps"]
        step = next(s for s in steps if s["step"] == step_id and s["phase"] == "do")
        if step.get("decided") or time.monotonic() > deadline:
            return step  # type: ignore[no-any-return]
        time.sleep(0.3)
