"""The hunt page: SQL and Sigma hunts show their rows or the error that stopped them, saved
hunts are kept and deleted, and a saved hunt's notebook keeps its queries (with what they
found) and notes in order, the same notebook the API serves."""

from __future__ import annotations

import html
import re
from urllib.parse import quote

import orjson
import pytest
from console_client import Browser
from markupsafe import escape

SIGMA = """\
title: Net user
logsource: {product: windows, category: process_creation}
detection:
    selection: {Image|endswith: '\\\\net.exe'}
    condition: selection
level: medium
"""


def process(host: str, image: str, command: str, minute: int) -> bytes:
    return orjson.dumps(
        {
            "EventID": 1,
            "Channel": "Microsoft-Windows-Sysmon/Operational",
            "Hostname": host,
            "User": "CORP\\dave",
            "UtcTime": f"2026-11-28 11:{minute:02d}:00.000",
            "Image": image,
            "CommandLine": command,
        }
    )


@pytest.fixture
def hunting(console: Browser) -> Browser:
    """Events stored by the console's service: ws9 ran net.exe twice and a script-laden
    command once; ws8 ran notepad."""
    console.service.ingest(
        [
            process("ws9", "C:\\Windows\\System32\\net.exe", "net user admin /domain", 1),
            process("ws9", "C:\\Windows\\System32\\net.exe", "net group /domain", 2),
            process("ws9", "C:\\Windows\\cmd.exe", "cmd /c echo <script>alert(1)</script>", 3),
            process("ws8", "C:\\Windows\\notepad.exe", "notepad", 4),
        ],
        source="test",
    )
    assert console.service.drain(30)
    return console


def cells(page: str) -> list[list[str]]:
    """The result table's rows, as text."""
    body = page.split('class="grid hunt-result"')[-1].split("<tbody>")[1].split("</tbody>")[0]
    return [
        [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


def test_a_sql_hunt_shows_its_rows(hunting: Browser) -> None:
    hunting.sign_in("analyst")
    query = (
        "SELECT host_name, process_command_line FROM events WHERE host_name = 'ws9' ORDER BY time"
    )
    page = hunting.get("/console/hunt?sql=" + quote(query))
    assert page.status_code == 200, page.text
    assert cells(page.text) == [
        ["ws9", "net user admin /domain"],
        ["ws9", "net group /domain"],
        ["ws9", "cmd /c echo <script>alert(1)</script>"],
    ]
    assert "3 rows" in page.text
    assert (
        "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "<script>alert(1)" not in page.text
    )
    assert str(escape(query)) in page.text  # the form keeps the query


def test_a_bad_or_refused_query_shows_why(hunting: Browser) -> None:
    hunting.sign_in("analyst")
    bad = hunting.get("/console/hunt?sql=" + quote("SELECT no_such_column FROM events"))
    assert bad.status_code == 400
    assert "SQL:" in bad.text and "no_such_column" in bad.text
    refused = hunting.get("/console/hunt?sql=" + quote("DELETE FROM events"))
    assert refused.status_code == 400 and "a hunt is one SELECT" in refused.text


def test_a_sigma_hunt_shows_its_detections(hunting: Browser) -> None:
    hunting.sign_in("analyst")
    page = hunting.post("/console/hunt/sigma", {"rule": SIGMA, "since": ""})
    assert page.status_code == 200, page.text
    rows = cells(page.text)
    assert len(rows) == 2 and all(r[1] == "Net user" and r[3] == "ws9" for r in rows)
    broken = hunting.post("/console/hunt/sigma", {"rule": "title: x\n", "since": ""})
    assert broken.status_code == 400 and "the rule cannot be used" in broken.text


def test_hunting_needs_the_hunt_permission(hunting: Browser) -> None:
    hunting.sign_in("viewer")
    assert hunting.get("/console/hunt").status_code == 403
    assert hunting.post("/console/hunt/sigma", {"rule": SIGMA}).status_code == 403
    hunting.sign_in("responder")
    assert hunting.get("/console/hunt?sql=" + quote("SELECT 1")).status_code == 403


def test_a_notebook_keeps_queries_with_their_results_and_notes_in_order(
    hunting: Browser,
) -> None:
    hunting.sign_in("analyst")
    query = "SELECT host_name, process_command_line FROM events WHERE host_name = 'ws9'"
    saved = hunting.post(
        "/console/hunt/saved", {"name": "net-use", "query": query, "every_seconds": "600"}
    )
    assert saved.status_code == 303 and saved.headers["location"] == "/console/hunt/net-use"
    assert "net-use" in hunting.get("/console/hunt").text  # listed with the saved hunts
    ran = hunting.post(
        "/console/hunt/net-use/run",
        {"kind": "sql", "text": query + " AND process_command_line LIKE 'net %'"},
    )
    assert ran.status_code == 303
    noted = hunting.post("/console/hunt/net-use/note", {"text": "two net.exe runs on ws9"})
    assert noted.status_code == 303
    failed = hunting.post("/console/hunt/net-use/run", {"kind": "sql", "text": "SELECT nope"})
    assert failed.status_code == 303  # kept as tried, with its error
    page = hunting.get("/console/hunt/net-use").text
    query_at = page.index("LIKE &#39;net %&#39;")
    note_at = page.index("two net.exe runs on ws9")
    error_at = page.index("SQL:")
    assert query_at < note_at < error_at  # in the order they were added
    assert cells(page[query_at:note_at]) == [
        ["ws9", "net user admin /domain"],
        ["ws9", "net group /domain"],
    ]
    assert "2 rows" in page[query_at:note_at]
    # the API serves the same notebook
    headers = {"Authorization": f"Bearer {hunting.tokens['analyst']}"}
    served = hunting.client.get("/api/v1/hunts/saved/net-use/notebook", headers=headers).json()
    kinds = [(e["kind"], e["author"]) for e in served["notebook"]]
    assert kinds == [("sql", "analyst-user"), ("note", "analyst-user"), ("sql", "analyst-user")]
    first = served["notebook"][0]["result"]
    assert first["count"] == 2 and first["columns"] == ["host_name", "process_command_line"]
    assert "error" in served["notebook"][2]["result"]
    # a viewer may not write in it, nor read it (hunts:run)
    hunting.sign_in("viewer")
    assert hunting.post("/console/hunt/net-use/note", {"text": "x"}).status_code == 403
    assert hunting.get("/console/hunt/net-use").status_code == 403


def test_a_saved_hunt_is_deleted_with_its_notebook(hunting: Browser) -> None:
    hunting.sign_in("analyst")
    hunting.post("/console/hunt/saved", {"name": "gone", "query": "SELECT 1 AS one"})
    hunting.post("/console/hunt/gone/note", {"text": "soon gone"})
    assert hunting.post("/console/hunt/gone/delete").status_code == 303
    assert "gone" not in hunting.get("/console/hunt").text
    assert hunting.get("/console/hunt/gone").status_code == 404
    assert hunting.service.hunts.notebook("gone") == []
    refused = hunting.post("/console/hunt/saved", {"name": "bad name!", "query": "SELECT 1"})
    assert refused.status_code == 400 and "name" in refused.text
    wrong = hunting.post("/console/hunt/saved", {"name": "wrong", "query": "SELECT nope"})
    assert wrong.status_code == 400 and "SQL:" in wrong.text
