"""`vigil assets import|list|show` on the real scanner and IAM samples: every asset source
under the folder is imported and its counts shown; files no importer reads are passed over
by name; the nmap file that declares entities is refused as such (exit 1), nothing
expanded; what was imported is listed and shown with its relationships."""

from __future__ import annotations

import json


def test_import_list_and_show_the_samples(run_cli, tmp_path, need_data) -> None:
    folder = need_data("asset_vuln")
    data = tmp_path / "data"
    done = run_cli("assets", "import", folder, "--data-dir", data)
    assert done.exit_code == 1, done.output  # one hostile file among them
    text = " ".join(done.output.split())
    assert (
        "refused nmap-xml-libnmap/defused_et_local_includer.xml: refused: the XML declares a DTD"
        in text
    )
    assert "nothing was expanded" in text
    assert "passed over" in text and "nmap-xml-libnmap/SOURCE.txt" in text
    for name in ("aws-iam", "grype", "masscan", "nmap", "openvas", "trivy", "wazuh"):
        assert f" {name} " in text
    listed = run_cli("assets", "list", "--kind", "host", "--json", "--limit", "1000",
                     "--data-dir", data)  # fmt: skip
    assert listed.exit_code == 0, listed.output
    hosts = {node["id"]: node for node in json.loads(listed.output)}
    assert len(hosts) > 10 and "host:scanme.nmap.org" in hosts
    users = json.loads(run_cli("assets", "list", "--kind", "user", "--search", "/privesc1-",
                               "--json", "--data-dir", data).output)  # fmt: skip
    (privesc1,) = users
    shown = run_cli("assets", "show", privesc1["id"], "--json", "--data-dir", data)
    assert shown.exit_code == 0, shown.output
    user = json.loads(shown.output)
    assert user["name"] == "privesc1-CreateNewPolicyVersion-user"
    assert user["sources"] == ["aws-iam:aws-iam-authorization-details/example.json"]
    assert {e["kind"] for e in user["edges_out"]} >= {"has_policy"}
    missing = run_cli("assets", "show", "host:nowhere", "--data-dir", data)
    assert missing.exit_code == 2 and "no asset 'host:nowhere'" in missing.output


def test_paths_and_blast_radius_from_the_command_line(run_cli, tmp_path, need_data) -> None:
    """masscan saw 172.29.0.3; the CMDB names it `edge-gw`, a crown jewel: the path from the
    scanned host to the CMDB's goes through their shared address."""
    data = tmp_path / "data"
    masscan = need_data("asset_vuln", "defectdojo-scanner-samples", "masscan")
    assert run_cli("assets", "import", masscan, "--data-dir", data).exit_code == 0
    cmdb = tmp_path / "cmdb.csv"
    cmdb.write_text("hostname,ip,criticality,exposure\nedge-gw,172.29.0.3,crown-jewel,no\n")
    assert run_cli("assets", "import", cmdb, "--data-dir", data).exit_code == 0
    found = run_cli("assets", "paths", "--from", "host:172.29.0.3", "--json", "--data-dir", data)
    assert found.exit_code == 0, found.output
    (path,) = json.loads(found.output)["paths"]
    assert path["nodes"] == ["host:172.29.0.3", "address:172.29.0.3", "host:edge-gw"]
    shown = run_cli("assets", "paths", "--from", "host:172.29.0.3", "--data-dir", data)
    assert "host:edge-gw" in shown.output and "has_address" in shown.output
    reach = run_cli("assets", "blast-radius", "host:edge-gw", "--json", "--data-dir", data)
    assert json.loads(reach.output) == {"address:172.29.0.3": 1, "host:172.29.0.3": 2}
    # the scanned web service gives its host, and so the crown jewel
    web = run_cli("assets", "blast-radius", "service:172.29.0.3:tcp/80", "--json",
                  "--data-dir", data)  # fmt: skip
    assert json.loads(web.output)["host:edge-gw"] == 3
    none = run_cli("assets", "paths", "--data-dir", data)  # nothing marked exposed
    assert none.exit_code == 2 and "no starting points" in none.output


def test_privilege_escalation_from_the_imported_iam_export(run_cli, tmp_path, need_data):
    """The IAM export goes through the store and back: the query gives what it gives on the
    file itself (553 paths), privesc1's first by the method it is named for."""
    from vigil.assets import aws_iam
    from vigil.assets.privesc import find_escalations

    folder = need_data("asset_vuln", "aws-iam-authorization-details")
    data = tmp_path / "data"
    assert run_cli("assets", "import", folder / "example.json", "--data-dir", data).exit_code == 0
    done = run_cli("assets", "privesc", "--json", "--data-dir", data)
    assert done.exit_code == 0, done.output
    found = json.loads(done.output)
    direct = find_escalations(aws_iam.read((folder / "example.json").read_bytes(), "x"))
    assert found["findings"] == [f.as_dict() for f in direct.findings]
    assert len(found["findings"]) == 553
    (first,) = [
        f
        for f in found["findings"]
        if f["principal"].endswith("/privesc1-CreateNewPolicyVersion-user")
    ]
    assert first["method"] == "CreateNewPolicyVersion"
    assert first["steps"][0]["action"] == "iam:CreatePolicyVersion"
    only = run_cli(
        "assets", "privesc", "--principal", "user/privesc1-", "--json", "--data-dir", data
    )
    assert {f["principal"] for f in json.loads(only.output)["findings"]} == {first["principal"]}
    table = run_cli("assets", "privesc", "--principal", "privesc1-", "--data-dir", data)
    assert table.exit_code == 0 and "Privilege escalation" in table.output
