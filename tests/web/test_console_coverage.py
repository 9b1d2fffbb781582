"""The coverage page on a real service with Vigil's own rules: the ATT&CK matrix colours a
technique a starter rule names (T1003) as "rule"; exercise results reported over the API
(shaped exactly as `vigil exercise run` writes them) turn it "detected" and a technique no
rule names "missed", with the gap and its cause; the exercise history and a run's page; the
risk register of an imported inventory; who may report; everything escaped."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator

import pytest
from console_client import Browser, browser
from markupsafe import escape

from vigil.config import Settings
from vigil.exercise.run import Outcome, Result, gaps
from vigil.serve.service import Service
from vigil.web.server import build_app

CMDB = b"hostname,ip,owner,criticality,exposure\ndb1,10.0.0.9,finance,crown-jewel,yes\n"
SCRIPT = "<script>alert('x')</script>"
COMSVCS = "LSASS Memory Dumped With comsvcs MiniDump"  # a starter rule tagged t1003.001


@pytest.fixture
def console(tmp_path) -> Iterator[Browser]:
    """A real service with Vigil's own rules (no detection workers) and its console."""
    service = Service(
        Settings(data_dir=tmp_path, indicators=False, starter_rules=True, pipeline={"workers": 0})
    )
    made = browser(build_app(service), service)
    with made.client:
        yield made


def results(service: Service, *, name: str = "LSASS dumped by comsvcs") -> dict:
    """An exercise's results.json as `vigil exercise run` writes it: T1003 detected, T1486
    (no rule names it) and T1490 (a rule does, it did not fire) missed."""
    result = Result("http://vigil.test:8400", time.time() - 60, time.time() - 10)
    result.outcomes = [
        Outcome("lsass", name, ["T1003"], [], records=3, detected=True, time_to_detect_s=1.5,
                passed=True, rules=[COMSVCS]),
        Outcome("ransom", "files encrypted", ["T1486"], [], records=2),
        Outcome("shadows", "shadow copies deleted", ["T1490"], [], records=1),
    ]  # fmt: skip
    result.gaps = gaps(result, service.rules())
    return json.loads(json.dumps(result.as_dict()))


def report(console: Browser, doc: dict, role: str = "admin"):
    return console.client.post(
        "/api/v1/exercises",
        json=doc,
        headers={"Authorization": f"Bearer {console.tokens[role]}"},
    )


def cell(page: str, technique: str) -> str:
    """The class of a technique's cell in the matrix."""
    found = re.search(rf'class="technique ([a-z]+)" data-technique="{technique}"', page)
    assert found, f"{technique} is not on the matrix"
    return found.group(1)


def test_the_matrix_shows_what_the_starter_rules_cover(console) -> None:
    console.sign_in("viewer")  # a viewer reads the page
    page = console.get("/console/coverage")
    assert page.status_code == 200, page.text
    assert cell(page.text, "T1003") == "rule"
    title = re.search(r'data-technique="T1003" href="[^"]+" title="([^"]+)"', page.text)
    assert title and COMSVCS in html.unescape(title.group(1))
    assert "OS Credential Dumping" in page.text
    # the columns are the tactics in kill-chain order
    columns = re.findall(r'<h3 title="(TA\d{4})">', page.text)
    assert columns[:3] == ["TA0043", "TA0042", "TA0001"] and len(columns) == 14
    assert columns.index("TA0006") < columns.index("TA0040")  # credential access, impact
    with_rules = re.search(r'id="with-rules">(\d+)', page.text)
    assert with_rules and int(with_rules.group(1)) > 20
    # every technique on demand: those neither named nor tested are blank, and only there
    everything = console.get("/console/coverage?all=true").text
    blank = re.findall(r'class="technique none" data-technique="(T\d{4})"', everything)
    assert len(blank) > 100 and cell(everything, "T1003") == "rule"
    assert f'data-technique="{blank[0]}"' not in page.text
    assert "No exercise reported yet" in page.text
    # a technique's detail: its rules, each a pivot to its alerts
    detail = console.get("/console/coverage?technique=T1003")
    assert 'id="technique"' in detail.text and COMSVCS in detail.text
    assert "/console/alerts?rule=de527558-506f-5b37-997a-23961786e4ae" in detail.text


def test_reported_results_show_detected_missed_and_the_gaps_with_their_cause(console) -> None:
    doc = results(console.service)
    reply = report(console, doc)
    assert reply.status_code == 201, reply.text
    console.sign_in("viewer")
    page = console.get("/console/coverage").text
    assert cell(page, "T1003") == "detected"
    assert cell(page, "T1486") == "missed"
    assert cell(page, "T1490") == "missed"
    assert re.search(r'id="detected">1<', page) and re.search(r'id="missed">2<', page)
    gaps_part = page[page.index('id="gaps"') :]
    ransom = re.search(r"T1486</span> Data Encrypted for Impact.*?</tr>", gaps_part, re.S)
    assert ransom and "no rule loaded" in ransom.group(0)
    assert "no rule loaded names T1486: one is missing" in ransom.group(0)
    shadows = re.search(r"T1490</span> Inhibit System Recovery.*?</tr>", gaps_part, re.S)
    assert shadows and "rule did not fire" in shadows.group(0)
    assert "windows/process_creation" in shadows.group(0)  # the log source its rule reads
    assert "exercise against http://vigil.test:8400" in page  # the latest exercise
    # the history: one run, its MTTD drawn; the run's own page with its scenarios
    exercises = console.get("/console/coverage/exercises").text
    assert "<svg" in exercises and "1.5 s" in exercises
    run_id = reply.json()["id"]
    assert f"/console/coverage/exercises/{run_id}" in exercises
    run = console.get(f"/console/coverage/exercises/{run_id}").text
    assert "LSASS dumped by comsvcs" in run and "shadow copies deleted" in run
    assert COMSVCS in run and "passed" in run
    assert console.get("/console/coverage/exercises/nope").status_code == 404
    # a later run is the latest: the matrix follows it
    later = results(console.service)
    later["by_technique"]["T1003"]["detected"] = 0
    assert report(console, later).status_code == 201
    assert cell(console.get("/console/coverage").text, "T1003") == "missed"
    history = console.get("/console/coverage/exercises").text
    assert history.count("/console/coverage/exercises/") >= 2


def test_the_risk_register_and_roadmap_show_an_imported_asset(console) -> None:
    console.service.import_assets(CMDB, "cmdb.csv")
    console.sign_in("viewer")
    page = console.get("/console/coverage/risk")
    assert page.status_code == 200, page.text
    register = page.text[page.text.index('id="register"') : page.text.index('id="roadmap"')]
    assert "/console/assets/host%3Adb1" in register and "crown jewel" in register
    assert "internet-exposed" in register
    roadmap = page.text[page.text.index('id="roadmap"') :]
    assert "add detection for" in roadmap and "host:db1" in roadmap


def test_who_may_report_results_and_a_viewer_reads(console) -> None:
    doc = results(console.service)
    for role in ("viewer", "responder", "ingest"):
        assert report(console, doc, role).status_code == 403, role
    assert report(console, doc, "analyst").status_code == 201
    # the console's upload: refused to a viewer, taken from an analyst
    upload = {"results": ("results.json", json.dumps(doc).encode(), "application/json")}
    console.sign_in("viewer")
    page = console.get("/console/coverage/exercises").text
    assert 'name="results"' not in page  # no upload form for a role that may not
    refused = console.client.post(
        "/console/coverage/exercises",
        data={"csrf": console.csrf},
        files=upload,
        follow_redirects=False,
    )
    assert refused.status_code == 403
    console.sign_in("analyst")
    assert 'name="results"' in console.get("/console/coverage/exercises").text
    forged = console.client.post(
        "/console/coverage/exercises", files=upload, follow_redirects=False
    )
    assert forged.status_code == 403  # no anti-forgery value
    taken = console.client.post(
        "/console/coverage/exercises",
        data={"csrf": console.csrf, "name": "from CI"},
        files=upload,
        follow_redirects=False,
    )
    assert taken.status_code == 303, taken.text
    shown = console.get(taken.headers["location"])
    assert "from CI" in shown.text and "analyst-user" in shown.text
    broken = console.client.post(
        "/console/coverage/exercises",
        data={"csrf": console.csrf},
        files={"results": ("results.json", b'{"url": 1}', "application/json")},
        follow_redirects=False,
    )
    assert broken.status_code == 400 and "results.json" in broken.text
    assert console.service.exercise_runs.count() == 2


def test_what_results_name_is_shown_as_text(console) -> None:
    doc = results(console.service, name=SCRIPT)
    doc["url"] = SCRIPT
    doc["gaps"][0]["why"] = SCRIPT
    doc["by_technique"]["T1003"]["rules"] = [SCRIPT]
    doc["scenarios"][0]["rules"] = [f'"><img src=x onerror=alert(1)>{SCRIPT}']
    assert report(console, doc).status_code == 201
    console.sign_in("viewer")
    run_id = console.service.exercise_runs.latest()["id"]
    for path in (
        "/console/coverage",
        "/console/coverage/exercises",
        f"/console/coverage/exercises/{run_id}",
        f"/console/coverage?technique=T1003&x={SCRIPT}",
    ):
        page = console.get(path, params={"name": SCRIPT})
        assert page.status_code == 200, (path, page.text)
        assert SCRIPT not in page.text and "<img" not in page.text, path
        assert " style=" not in page.text, path
    shown = console.get(f"/console/coverage/exercises/{run_id}").text
    assert str(escape(SCRIPT)) in shown and "&#34;&gt;&lt;img src=x" in shown
