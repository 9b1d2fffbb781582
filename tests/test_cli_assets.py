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
    assert "refused defused_et_local_includer.xml: refused: the XML declares a DTD" in text
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
    assert user["sources"] == ["aws-iam:example.json"]
    assert {e["kind"] for e in user["edges_out"]} >= {"has_policy"}
    missing = run_cli("assets", "show", "host:nowhere", "--data-dir", data)
    assert missing.exit_code == 2 and "no asset 'host:nowhere'" in missing.output
