"""The assets page on a real service: a real nmap scan, the AWS IAM example and a CMDB marking
a crown jewel imported, a flow seen in telemetry making a path from an internet-exposed host
to the jewel; the inventory lists the scanned host, the attack-path graph's data holds the
path's nodes (the jewel and the start marked), an asset's page shows its blast radius and
its path, and hostile names are shown as text."""

from __future__ import annotations

import json
import re
from itertools import pairwise
from urllib.parse import quote

import pytest

from vigil.assets import Inventory

CMDB = (
    b"hostname,ip,owner,criticality,exposure\n"
    b"db1,10.0.0.9,<script>alert('owner')</script>,crown-jewel,no\n"
    b"gw,10.0.0.66,netops,,yes\n"
    b"\"<script>alert('host')</script>\",10.0.0.66,,,yes\n"
)
PATH = ["host:gw", "address:10.0.0.66", "host:10.0.0.66", "address:10.0.0.9", "host:db1"]


def graph_of(page: str, block: str) -> dict:
    found = re.search(rf'<script type="application/json" id="{block}">(.*?)</script>', page, re.S)
    assert found, f"no graph {block}"
    return json.loads(found.group(1))


@pytest.fixture
def inventory(console, need_data):
    """The scan, the IAM export, the CMDB and a telemetry flow, as the API imports them."""
    service = console.service
    nmap = need_data("asset_vuln", "nmap-xml-libnmap") / "2_hosts.xml"
    iam = need_data("asset_vuln", "aws-iam-authorization-details") / "example.json"
    assert service.import_assets(nmap.read_bytes(), "2_hosts.xml")["format"] == "nmap"
    assert service.import_assets(iam.read_bytes(), "example.json")["nodes_new"]
    assert service.import_assets(CMDB, "cmdb.csv")["nodes_new"]
    seen = Inventory("telemetry")
    stranger = seen.node("host", "10.0.0.66")
    seen.edge("has_address", stranger, seen.node("address", "10.0.0.66"))
    seen.edge("flow", stranger, seen.node("address", "10.0.0.9"), port=5432)
    service.streams["relationships"].publish([seen.to_bytes()])  # as the detect stage does
    assert service.runners["assets"].drain(10)
    return console


def test_inventory_lists_the_scanned_host_and_filters(inventory) -> None:
    inventory.sign_in("viewer")
    page = inventory.get("/console/assets?kind=host")
    assert page.status_code == 200
    assert 'href="/console/assets/host:scanme.nmap.org"' in page.text
    assert "host:db1" in page.text and "crown jewel" in page.text
    iam = inventory.get("/console/assets", params={"search": "privesc1-CreateNewPolicyVersion"})
    assert "privesc1-CreateNewPolicyVersion-user" in iam.text
    assert "scanme.nmap.org" not in iam.text.split('id="inventory"')[1]
    unmanaged = inventory.get("/console/assets?kind=host&managed=no").text
    unmanaged = unmanaged.split('id="inventory"')[1]
    assert "host:10.0.0.66" in unmanaged and "host:db1" not in unmanaged
    # paged: the next page starts where this one ended
    first = inventory.get("/console/assets").text
    assert 'rel="next"' in first and "offset=50" in first


def test_the_attack_path_graph_holds_the_path_to_the_jewel(inventory) -> None:
    inventory.sign_in("analyst")
    page = inventory.get("/console/assets").text
    graph = graph_of(page, "attack-paths")
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert set(PATH) <= set(nodes)
    assert "jewel" in nodes["host:db1"]["classes"]
    assert "start" in nodes["host:gw"]["classes"]
    assert nodes["host:gw"]["href"] == "/console/assets/host:gw"
    marked = {(e["source"], e["target"]) for e in graph["edges"] if "path" in e["classes"]}
    assert set(pairwise(PATH)) <= marked
    assert 'class="graph" data-graph="attack-paths"' in page
    assert "Choke points" in page and "host:10.0.0.66" in page


def test_an_asset_page_shows_its_blast_radius_and_its_path(inventory) -> None:
    inventory.sign_in("viewer")
    page = inventory.get("/console/assets/host:gw")
    assert page.status_code == 200
    text = page.text
    assert "Blast radius" in text and "netops" in text
    listed = r'<a href="/console/assets/([^"]+)">[^<]+</a>(?:[^<]|<span[^>]*>[^<]*</span>)*'
    rows = re.findall(listed + r'</td><td class="num">(\d+)</td>', text)
    assert ("host:db1", "4") in rows  # gw → its address → 10.0.0.66 → db1's → db1
    graph = graph_of(text, "blast-radius")
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert "focus" in nodes["host:gw"]["classes"] and "jewel" in nodes["host:db1"]["classes"]
    assert any("path" in e["classes"] for e in graph["edges"])
    assert "has_address" in text  # its edges out
    # an ARN (slashes in the id) opens too, and an unknown asset is a page saying so
    user = inventory.get("/console/assets", params={"search": "user/privesc1-"}).text
    (arn,) = set(re.findall(r'href="/console/assets/(user:arn[^"]+)"', user))
    shown = inventory.get(f"/console/assets/{arn}")
    assert shown.status_code == 200 and "privesc1-CreateNewPolicyVersion-user" in shown.text
    missing = inventory.get("/console/assets/host:nowhere")
    assert missing.status_code == 404 and "no asset" in missing.text


def test_hostile_names_are_text_and_cannot_leave_the_graph_block(inventory) -> None:
    inventory.sign_in("viewer")
    page = inventory.get("/console/assets").text
    assert "<script>alert(" not in page
    assert "&lt;script&gt;alert(&#39;host&#39;)&lt;/script&gt;" in page
    graph = graph_of(page, "attack-paths")  # the JSON block still parses whole
    assert "host:<script>alert('host')</script>" in {n["id"] for n in graph["nodes"]}
    hostile = inventory.get("/console/assets/" + quote("host:<script>alert('host')</script>"))
    assert hostile.status_code == 200 and "<script>alert(" not in hostile.text
    db1 = inventory.get("/console/assets/host:db1").text
    assert "&lt;script&gt;alert(&#39;owner&#39;)&lt;/script&gt;" in db1
    assert "<script>alert(" not in db1


def test_signed_out_the_pages_lead_to_sign_in(console) -> None:
    for path in ("/console/assets", "/console/assets/host:db1"):
        signed_out = console.get(path, follow_redirects=False)
        assert signed_out.status_code == 303 and "/console/login" in signed_out.headers["location"]
