"""`vigil risk report` on the imported scanner samples and the IAM export: every asset ranked
with its reasons (checked by hand against the Trivy file: the image whose worst finding is
glibc's CVE-2019-1010022, CVSS 9.8), and the roadmap derived from them: patch that package,
remove the IAM actions the privesc users escalate by, add the detections the rules lack;
written as Markdown, HTML and JSON."""

from __future__ import annotations

import json


def test_risk_report_ranks_assets_with_reasons_and_derives_the_roadmap(
    run_cli, tmp_path, need_data
) -> None:
    data, out = tmp_path / "data", tmp_path / "report"
    run_cli("assets", "import", need_data("asset_vuln"), "--data-dir", data)  # one refused
    trivy = need_data("asset_vuln", "defectdojo-scanner-samples", "trivy")
    legacy = json.loads((trivy / "legacy_many_vulns.json").read_text())
    found = [v for result in legacy for v in result.get("Vulnerabilities") or []]
    (libc,) = [v for v in found if (v["VulnerabilityID"], v["PkgName"]) == ("CVE-2019-1010022",
                                                                            "libc6")]  # fmt: skip
    assert (libc["InstalledVersion"], libc["CVSS"]["nvd"]["V3Score"]) == ("2.28-10", 9.8)

    done = run_cli("risk", "report", "--out", out, "--data-dir", data)
    assert done.exit_code == 0, done.output
    report = json.loads((out / "risk.json").read_text())
    assets = report["assets"]
    assert [a["score"] for a in assets] == sorted((a["score"] for a in assets), reverse=True)
    assert all(a["reasons"] for a in assets[:50])
    image = next(a for a in assets if a["id"] == "container:test-image:latest")
    assert any("worst CVE-2019-1010022 (CVSS 9.8) in libc6@2.28-10" in r for r in image["reasons"])
    assert image["factors"]["vulnerability"] == 1.0 + 9.8 / 5
    privesc4 = next(a for a in assets if a["id"].endswith(":user/privesc4-CreateAccessKey-user"))
    assert any(r.startswith("can make itself administrator") for r in privesc4["reasons"])
    # a vulnerable image outranks a host nothing is known against
    plain = next(a for a in assets if a["id"].startswith("host:") and len(a["reasons"]) == 1)
    assert image["score"] > plain["score"]

    steps = {s["action"]: s for s in report["roadmap"]}
    assert "patch libc6@2.28-10 (CVE-2019-1010022, CVSS 9.8)" in steps
    assert any(a.startswith("remove iam:CreateAccessKey from") and "privesc4" in a
               for a in steps)  # fmt: skip
    assert {s["kind"] for s in report["roadmap"]} >= {"patch", "permissions", "detection",
                                                      "telemetry"}  # fmt: skip
    weights = [s["weight"] for s in report["roadmap"]]
    assert weights == sorted(weights, reverse=True)
    markdown = (out / "risk.md").read_text()
    assert "## Roadmap" in markdown and "container:test-image:latest" in markdown
    page = (out / "risk.html").read_text()
    assert page.startswith("<!doctype html>") and "<script" not in page and "<svg" in page


def test_an_empty_inventory_says_so(run_cli, tmp_path) -> None:
    done = run_cli("risk", "report", "--out", tmp_path / "r", "--data-dir", tmp_path / "d")
    assert done.exit_code == 2 and "the inventory is empty" in done.output
