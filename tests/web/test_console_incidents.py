"""The incidents pages on the demo intrusion run through a real service (starter rules, the
workstation a crown jewel so that its containment waits for a person): the list filters,
sorts and pages; the incident shows its alerts' timeline in time order, its ATT&CK stages,
its entity graph and asset context; an analyst works the case from the page; a responder
approves the waiting isolation (the run goes on) and undoes a run; viewers, analysts and
forged posts are refused and change nothing; an event's `<script>` is text."""

from __future__ import annotations

import html
import io
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from console_client import Browser, browser

from vigil.config import Settings
from vigil.correlate import AlertIn
from vigil.demo import HOST, duration, records
from vigil.serve.pipeline import JSON
from vigil.serve.service import Service
from vigil.web.server import build_app

CMDB = f"hostname,criticality\n{HOST},crown-jewel\n".encode()
HOSTILE = "<script>alert(1)</script>"


def hostile_event(at: float) -> bytes:
    """A whoami (a starter rule's) whose command line carries a script."""
    return json.dumps(
        {
            "EventID": 1,
            "Channel": "Microsoft-Windows-Sysmon/Operational",
            "Hostname": "pc-hostile",
            "UtcTime": time.strftime("%Y-%m-%d %H:%M:%S.000", time.gmtime(at)),
            "Image": "C:\\Windows\\System32\\whoami.exe",
            "CommandLine": f"whoami /priv {HOSTILE}",
            "User": "CORP\\mallory",
        }
    ).encode()


@pytest.fixture
def demo(tmp_path) -> Iterator[Browser]:
    """The demo intrusion and a hostile whoami, detected, correlated and responded to."""
    settings = Settings.model_validate(
        {
            "data_dir": tmp_path,
            "indicators": False,
            "pipeline": {"workers": 0},
            "respond": {"dry_run": True, "firewall": {"hosts": {HOST: []}}},
        }
    )
    service = Service(settings)
    service.import_assets(CMDB, "cmdb.csv")
    made = browser(build_app(service), service)
    with made.client:  # the service runs: its stages and the responder's workers
        start = time.time() - duration() - 60
        service.events_out.publish(JSON, "demo", [*records(start), hostile_event(start)])
        assert service.drain(60)
        assert service.responder.idle(30)
        yield made


def intrusion(console: Browser) -> dict[str, Any]:
    (found,) = console.service.incident_store.ranked(entity=f"host:{HOST}")
    return found  # type: ignore[no-any-return]


def waiting(console: Browser) -> tuple[str, str]:
    [step] = console.service.responder.pending()
    return step["run_id"], step["step"]


def settle(console: Browser, run_id: str, *states: str) -> dict[str, Any]:
    responder = console.service.responder
    deadline = time.monotonic() + 30
    while (run := responder.run(run_id))["state"] not in states and time.monotonic() < deadline:
        time.sleep(0.05)
    return run  # type: ignore[no-any-return]


def test_the_list_shows_filters_sorts_and_pages_incidents(demo) -> None:
    demo.sign_in("viewer")
    incident = intrusion(demo)
    page = demo.get("/console/incidents")
    assert page.status_code == 200, page.text
    row = re.search(rf'href="/console/incidents/{incident["id"]}".*?</tr>', page.text, re.S)
    assert row and "level-critical" in row.group(0) and "host:" + HOST in row.group(0)
    assert page.text.index(incident["id"]) < page.text.index("pc-hostile")  # riskiest first

    # filters: an entity, a level, a status (open is neither resolved nor false positive)
    only = demo.get("/console/incidents", params={"entity": "host:pc-hostile"}).text
    assert "pc-hostile" in only and incident["id"] not in only
    assert incident["id"] in demo.get("/console/incidents?level=critical").text
    assert incident["id"] not in demo.get("/console/incidents?level=low").text
    demo.service.incident_store.set_status(incident["id"], "false_positive", "test")
    assert incident["id"] not in demo.get("/console/incidents?status=open").text
    closed = demo.get("/console/incidents?status=false_positive").text
    assert incident["id"] in closed and "pc-hostile" not in closed
    demo.service.incident_store.assign(incident["id"], "rita", "test")
    mine = demo.get("/console/incidents?assignee=rita").text
    assert incident["id"] in mine and "pc-hostile" not in mine

    # sorted by alerts, fewest first: the one-alert incident before the intrusion
    fewest = demo.get("/console/incidents?sort=alerts&order=asc").text
    assert fewest.index("pc-hostile") < fewest.index(incident["id"])
    assert demo.get("/console/incidents?sort=nonsense").status_code == 400

    # paged through any number: 120 more incidents, 50 a page, previous / next
    stage, total = demo.service.incidents, demo.service.incident_store.count() + 120
    now = time.time()
    for n in range(120):
        stage.feed([AlertIn(id=f"p-{n}", time=now + n * 7200, rule="r", title="r",
                            entities=(("host", f"pager-{n:03d}"),))])  # fmt: skip
    first = demo.get("/console/incidents?sort=opened&order=desc").text
    assert "pager-119" in first and "pager-070" in first and "pager-069" not in first
    assert 'rel="next"' in first and 'rel="prev"' not in first and f"of {total}" in first
    second = demo.get("/console/incidents?sort=opened&order=desc&offset=50").text
    assert "pager-069" in second and "pager-119" not in second and 'rel="prev"' in second
    last = demo.get("/console/incidents?sort=opened&order=desc&offset=100").text
    assert "pager-000" in last and 'rel="next"' not in last and f"101–{total} of {total}" in last


def test_the_incident_shows_its_timeline_stages_graph_and_assets(demo) -> None:
    demo.sign_in("viewer")
    incident = intrusion(demo)
    page = demo.get(f"/console/incidents/{incident['id']}")
    assert page.status_code == 200, page.text
    text = page.text
    assert "level-critical" in text and "MTTD" in text

    # the timeline: its alerts in time order, each with its layer, rule and pivots
    timeline = text[text.index('class="timeline alerts"') : text.index("Entity graph")]
    rows = re.findall(r'<li class="alert">(.*?)</li>', timeline, re.S)
    assert len(rows) == incident["alerts"] == 22
    times = [re.search(r'class="when"[^>]*>([^<]+)<', row).group(1) for row in rows]
    assert times == sorted(times)
    titles = [html.unescape(re.search(r'class="rule"[^>]*>([^<]+)<', r).group(1)) for r in rows]
    assert titles[0] == "Outlook Saves a Macro-Enabled Office Attachment"
    assert "LSASS Memory Dumped With comsvcs MiniDump" in titles
    assert "CloudTrail Logging Stopped or Deleted" in titles
    lsass = rows[titles.index("LSASS Memory Dumped With comsvcs MiniDump")]
    assert "windows / process_creation" in lsass and 'href="/console/alerts/' in lsass
    assert 'href="/console/alerts?rule=' in lsass
    assert f'href="/console/alerts?host={HOST}"' in lsass
    assert 'href="/console/alerts?user=jdoe"' in lsass
    assert "comsvcs" in lsass  # a key field of its event, as text

    # the ATT&CK stages in the order they were first seen
    stages = re.findall(r'<li class="stage">([^<]+)</li>', text)
    assert [s.replace(" ", "-") for s in stages] == incident["tactics"]
    assert stages.index("credential access") < stages.index("exfiltration")

    # the graph's data: the incident, its alerts, the entities they name
    block = re.search(r'<script type="application/json" id="incident-graph">(.*?)</script>',
                      text, re.S)  # fmt: skip
    assert block and 'data-graph="incident-graph"' in text
    graph = json.loads(html.unescape(block.group(1)))
    kinds = [n["kind"] for n in graph["nodes"]]
    assert kinds.count("incident") == 1 and kinds.count("alert") == 22
    host = next(n for n in graph["nodes"] if n["id"] == f"host:{HOST}")
    assert host["classes"] == ["jewel"] and host["href"] == f"/console/alerts?host={HOST}"
    assert any(e["target"] == f"host:{HOST}" for e in graph["edges"])

    # what the inventory says of the workstation; the containment waiting for approval
    assert "crown jewel" in text and "contain-credential-dumping" in text
    assert "approval first" in text
    assert "Approve" not in text  # a viewer is offered no decision


def test_an_analyst_works_the_case_from_the_page(demo) -> None:
    demo.sign_in("analyst")
    incident = intrusion(demo)
    url = f"/console/incidents/{incident['id']}"
    page = demo.get(url).text
    assert f'action="{url}/status"' in page and '<option value="triaged">' in page
    assert "Approve" not in page and "Undo this run" not in page  # not the analyst's to do

    assert demo.post(f"{url}/status", {"status": "triaged", "note": "looked"}).status_code == 303
    assert demo.post(f"{url}/assignee", {"assignee": "alice"}).status_code == 303
    assert (
        demo.post(f"{url}/notes", {"text": "jdoe confirmed <b>no</b> invoice"}).status_code == 303
    )
    assert demo.post(f"{url}/tasks", {"title": "image ws-fin-07"}).status_code == 303
    evidence = demo.post(
        f"{url}/evidence", files={"file": ("mail.eml", io.BytesIO(b"From: x"), "message/rfc822")}
    )
    assert evidence.status_code == 303, evidence.text

    page = demo.get(url).text
    assert "status-triaged" in page and "new → triaged" in page and "looked" in page
    assert "alice" in page and "assigned to alice" in page
    assert "jdoe confirmed &lt;b&gt;no&lt;/b&gt; invoice" in page
    assert "image ws-fin-07" in page and "mail.eml" in page
    # a triaged case goes on to contained, resolved or false positive, no longer to triaged
    assert '<option value="contained">' in page and '<option value="triaged">' not in page
    [task] = demo.service.incident_store.tasks(incident["id"])
    assert demo.post(f"{url}/tasks/{task['id']}/done").status_code == 303
    assert demo.service.incident_store.tasks(incident["id"])[0]["done"] is True
    assert "Mark done" not in demo.get(url).text
    link = re.search(rf'href="({url}/evidence/[0-9a-f]{{64}}\?name=mail.eml)"', page)
    assert link and demo.get(html.unescape(link.group(1))).content == b"From: x"

    # a status the case cannot reach, and an unknown one, are refused and change nothing
    assert demo.post(f"{url}/status", {"status": "new"}).status_code == 409
    assert demo.post(f"{url}/status", {"status": "nope"}).status_code == 400
    assert demo.service.incident_store.get(incident["id"])["status"] == "triaged"
    assert demo.post("/console/incidents/INC-none/notes", {"text": "x"}).status_code == 404


def test_viewers_and_forged_posts_are_refused_and_change_nothing(demo) -> None:
    incident = intrusion(demo)
    url = f"/console/incidents/{incident['id']}"
    run_id, step_id = waiting(demo)
    store = demo.service.incident_store
    before = store.get(incident["id"])

    demo.sign_in("viewer")
    assert "Add note" not in demo.get(url).text  # no form offered
    for path, data in (
        ("status", {"status": "triaged"}),
        ("assignee", {"assignee": "mallory"}),
        ("notes", {"text": "a viewer's note"}),
        ("tasks", {"title": "a viewer's task"}),
        (f"runs/{run_id}/steps/{step_id}/decision", {"decision": "approve"}),
        (f"runs/{run_id}/undo", {}),
    ):
        assert demo.post(f"{url}/{path}", data).status_code == 403, path
    assert demo.post(f"{url}/evidence", files={"file": ("x", b"x")}).status_code == 403

    # signed in as an analyst, but without the session's anti-forgery value
    demo.sign_in("analyst")
    bare = demo.client.post(f"{url}/notes", data={"text": "forged"}, follow_redirects=False)
    assert bare.status_code == 403
    wrong = demo.client.post(
        f"{url}/notes", data={"text": "forged", "csrf": "x" * 43}, follow_redirects=False
    )
    assert wrong.status_code == 403
    # an analyst may work the case but not decide on a playbook's step
    decision = f"{url}/runs/{run_id}/steps/{step_id}/decision"
    assert demo.post(decision, {"decision": "approve"}).status_code == 403

    after = store.get(incident["id"])
    assert (after["status"], after["assignee"], after["timeline"]) == (
        before["status"], before["assignee"], before["timeline"],
    )  # fmt: skip
    assert demo.service.responder.run(run_id)["steps"][0]["state"] == "waiting"


def test_a_responder_approves_the_waiting_step_and_undoes_the_run(demo) -> None:
    incident = intrusion(demo)
    url = f"/console/incidents/{incident['id']}"
    run_id, step_id = waiting(demo)
    demo.sign_in("responder")
    page = demo.get(url).text
    action = f'action="{url}/runs/{run_id}/steps/{step_id}/decision"'
    assert action in page and ">Approve</button>" in page and ">Deny</button>" in page

    approved = demo.post(f"{url}/runs/{run_id}/steps/{step_id}/decision", {"decision": "approve"})
    assert approved.status_code == 303 and approved.headers["location"].startswith(url)
    run = settle(demo, run_id, "done", "failed")
    assert run["state"] == "done"  # the run went on: the isolation was carried out (dry run)
    step = next(s for s in run["steps"] if s["step"] == step_id)
    assert (step["state"], step["decided"]) == ("done", "approved")
    assert step["decided_by"] == "token:responder-user"
    page = demo.get(url).text
    assert "approved by token:responder-user" in page and action not in page
    # decided once: a second approval is a conflict
    again = demo.post(f"{url}/runs/{run_id}/steps/{step_id}/decision", {"decision": "approve"})
    assert again.status_code == 409

    assert "Undo this run" in page
    assert demo.post(f"{url}/runs/{run_id}/undo").status_code == 303
    run = settle(demo, run_id, "undone", "failed")
    assert run["state"] == "undone" and run["undo"][0]["action"] == "firewall.release"
    page = demo.get(url).text
    assert "undo isolate" in page and "state-undone" in page and "Undo this run" not in page


def test_a_script_in_an_event_is_shown_as_text(demo) -> None:
    demo.sign_in("analyst")
    (found,) = demo.service.incident_store.ranked(entity="host:pc-hostile")
    page = demo.get(f"/console/incidents/{found['id']}").text
    assert "whoami /priv &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert HOSTILE not in page
    listed = demo.get("/console/incidents").text
    assert HOSTILE not in listed


def test_the_api_lists_with_the_same_filters_and_shows_the_same_detail(demo) -> None:
    incident = intrusion(demo)
    headers = {"Authorization": f"Bearer {demo.tokens['viewer']}"}
    api = demo.client

    def listed(**params: Any) -> list[str]:
        reply = api.get("/api/v1/incidents", params=params, headers=headers)
        assert reply.status_code == 200, reply.text
        return [i["id"] for i in reply.json()]

    assert listed(entity=f"host:{HOST}") == [incident["id"]]
    assert incident["id"] not in listed(level="low")
    assert listed(sort="alerts", order="asc")[-1] == incident["id"]
    assert listed(status="open", limit=1) == [incident["id"]]
    assert api.get("/api/v1/incidents?sort=x", headers=headers).status_code == 422
    assert api.get("/api/v1/incidents?status=x", headers=headers).status_code == 400
    detail = api.get(f"/api/v1/incidents/{incident['id']}", headers=headers).json()
    assert detail == json.loads(json.dumps(demo.service.incident(incident["id"])))
    lsass = next(a for a in detail["alerts_detail"] if "LSASS" in a["rule_title"])
    assert lsass["layer"] == "windows / process_creation"
    assert {("host", HOST), ("user", "jdoe")} <= {tuple(e) for e in lsass["entities"]}
    [run] = detail["runs"]
    assert run["playbook"] == "contain-credential-dumping" and run["steps"][0]["state"] == "waiting"
    assert detail["assets"][f"host:{HOST}"]["crown_jewel"] is True
