"""The package scanners' importers (Trivy, Grype, Wazuh) on the DefectDojo sample reports,
their counts checked against a plain-json parse done here; osquery results and CSV
inventories on small documents written here."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vigil.assets import csv_inventory, grype, osquery, trivy, wazuh
from vigil.assets.model import Inventory
from vigil.errors import InputError

MINE = {"trivy": trivy, "anchore_grype": grype, "wazuh": wazuh}


@pytest.fixture(scope="module")
def samples(need_data: Callable[..., Path]) -> Path:
    return need_data("asset_vuln", "defectdojo-scanner-samples")


def imported(samples: Path, folder: str, file: str) -> Inventory:
    path = samples / folder / file
    return MINE[folder].read(path.read_bytes(), path.name)


def node(inventory: Inventory, node_id: str) -> dict[str, Any]:
    assert node_id in inventory.nodes, f"{node_id} not in {sorted(inventory.nodes)}"
    return inventory.nodes[node_id].attrs


def edge_attrs(inventory: Inventory, kind: str, src: str, dst: str) -> dict[str, Any]:
    found = [e for e in inventory.edges if (e.kind, e.src, e.dst) == (kind, src, dst)]
    assert len(found) == 1, f"{kind} {src} → {dst}: {found}"
    return dict(found[0].attrs)


def clean(value: str) -> str:
    """What the importers do to text: control characters made one space."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", value).strip()


def counts(inventory: Inventory) -> tuple[int, int, int]:
    return (
        inventory.count("software"),
        inventory.count("vulnerability"),
        inventory.edge_count("vulnerable_to"),
    )


# --- independent parses: what each file holds, read with plain json ----------------------


def trivy_expected(doc: Any) -> tuple[int, int, int]:
    if isinstance(doc, list):
        groups = [doc]
    elif "ClusterName" in doc:
        groups = [
            resource.get("Results") or []
            for section in ("Resources", "Vulnerabilities", "Misconfigurations")
            for resource in doc.get(section) or []
        ]
    else:
        groups = [doc.get("Results") or []]
    software, vulns, pairs = set(), set(), set()
    for results in groups:
        for result in results:
            for package in result.get("Packages") or []:
                software.add(f"{package['Name']}@{package['Version']}".lower())
            for finding in result.get("Vulnerabilities") or []:
                key = f"{finding['PkgName']}@{finding['InstalledVersion']}".lower()
                software.add(key)
                if finding.get("Status") == "not_affected":
                    continue
                vulns.add(finding["VulnerabilityID"].lower())
                pairs.add((key, finding["VulnerabilityID"].lower()))
    return len(software), len(vulns), len(pairs)


def grype_expected(doc: Any) -> tuple[int, int, int]:
    software, vulns, pairs = set(), set(), set()
    for match in doc["matches"]:
        artifact, vulnerability = match["artifact"], match["vulnerability"]
        key = clean(f"{artifact['name']}@{artifact['version']}").lower()
        vuln_id = vulnerability["id"]
        cves = [r["id"] for r in match.get("relatedVulnerabilities") or [] if r["id"][:4] == "CVE-"]
        if not vuln_id.startswith("CVE-") and cves:
            vuln_id = cves[0]
        software.add(key)
        vulns.add(vuln_id.lower())
        pairs.add((key, vuln_id.lower()))
    return len(software), len(vulns), len(pairs)


def wazuh_expected(doc: Any) -> tuple[int, int, int]:
    if "data" in doc:
        found = [(i["name"], i["version"], i["cve"]) for i in doc["data"]["affected_items"]]
    else:
        found = [
            (
                h["_source"]["package"]["name"],
                h["_source"]["package"]["version"],
                h["_source"]["vulnerability"]["id"],
            )
            for h in doc["hits"]["hits"]
        ]
    pairs = {(f"{name}@{version}".lower(), cve.lower()) for name, version, cve in found}
    return len({s for s, _ in pairs}), len({v for _, v in pairs}), len(pairs)


EXPECTED = {"trivy": trivy_expected, "anchore_grype": grype_expected, "wazuh": wazuh_expected}


@pytest.mark.parametrize("folder", sorted(MINE))
def test_every_sample_imports_with_the_counts_a_plain_parse_gives(
    samples: Path, folder: str
) -> None:
    files = sorted((samples / folder).glob("*.json"))
    assert files, f"no samples in {samples / folder}"
    for path in files:
        data = path.read_bytes()
        inventory = MINE[folder].read(data, path.name)

        assert counts(inventory) == EXPECTED[folder](json.loads(data)), path.name
        assert inventory.report.records_rejected == 0, (path.name, inventory.report.rejects)
        assert inventory.report.format == MINE[folder].FORMAT
        # each file is told by its own importer's sniff, and by none of the others
        sniffed = [m.FORMAT for m in (trivy, grype, wazuh, osquery) if m.sniff(path.name, data)]
        assert sniffed == [MINE[folder].FORMAT], path.name
        assert not csv_inventory.sniff(path.name, data)


# --- Trivy --------------------------------------------------------------------------------


def test_trivy_kubernetes_report_makes_each_resource_a_cloud_resource(samples: Path) -> None:
    inventory = imported(samples, "trivy", "kubernetes.json")

    cluster = "arn:aws:eks:us-east-1:576036489467:cluster/monitoring-test-cluster"
    follower = f"cloud_resource:{cluster}/default/Deployment/redis-follower"
    attrs = node(inventory, follower)
    assert attrs["images"] == ["gcr.io/google_samples/gb-redis-follower:v2"]
    assert attrs["misconfigurations"] == 5  # the failed checks listed under Misconfigurations
    assert attrs["secrets"] == 0
    assert (
        node(inventory, f"cloud_resource:{cluster}/default/Service/redis-leader")[
            "misconfigurations"
        ]
        == 0
    )
    assert inventory.count("cloud_resource") == 4
    # CVE-2020-27350 on apt 1.8.2.1: NVD's v3 score, fixed in 1.8.2.2
    assert ("runs", follower, "software:apt@1.8.2.1") in {
        (e.kind, e.src, e.dst) for e in inventory.edges
    }
    vuln = node(inventory, "vulnerability:cve-2020-27350")
    assert (vuln["cvss"], vuln["cvss_source"], vuln["severity"]) == (5.7, "nvd", "medium")
    assert vuln["fixed_version"] == "1.8.2.2"
    assert edge_attrs(
        inventory, "vulnerable_to", "software:apt@1.8.2.1", "vulnerability:cve-2020-27350"
    ) == {"fixed_version": "1.8.2.2"}


def test_trivy_resources_report_counts_failed_checks(samples: Path) -> None:
    inventory = imported(samples, "trivy", "issue_9170.json")

    assert inventory.count("cloud_resource") == 13
    assert (
        node(inventory, "cloud_resource:minikube/default/StatefulSet/vault")["misconfigurations"]
        == 12
    )


def test_trivy_cvss_prefers_v3_and_keeps_v4_apart(samples: Path) -> None:
    inventory = imported(samples, "trivy", "cvssv4_severity_source.json")

    # CVE-2025-66614: GHSA rated it only in CVSS 4 (6.3), Red Hat in 3.1 (5.3)
    vuln = node(inventory, "vulnerability:cve-2025-66614")
    assert (vuln["cvss"], vuln["cvss_version"], vuln["cvss_source"]) == (5.3, "3.1", "redhat")
    assert vuln["cvss4"] == 6.3
    assert vuln["aliases"] == ["ghsa-fpj8-gq4v-p354"]
    assert vuln["fixed_version"] == "11.0.14, 10.1.49, 9.0.112"
    software = node(inventory, "software:org.apache.tomcat:tomcat-catalina@9.0.109")
    assert software["purl"] == "pkg:maven/org.apache.tomcat/tomcat-catalina@9.0.109"
    assert software["paths"] == ["catalina.jar"]
    assert "application:lib/catalina.jar" in inventory.nodes


def test_trivy_nvd_score_wins_over_the_severity_source(samples: Path) -> None:
    inventory = imported(samples, "trivy", "issue_9092.json")

    # CVE-2023-37920 in certifi 2022.5.18.1: ghsa (the severity's source) 7.5, NVD 9.8
    vuln = node(inventory, "vulnerability:cve-2023-37920")
    assert (vuln["cvss"], vuln["cvss_source"], vuln["severity"]) == (9.8, "nvd", "high")
    software = node(inventory, "software:certifi@2022.5.18.1")
    assert (software["version"], software["type"]) == ("2022.5.18.1", "pip")
    assert software["purl"] == "pkg:pypi/certifi@2022.5.18.1"
    assert node(inventory, "application:sbom.json")["artifact_type"] == "cyclonedx"


def test_trivy_legacy_list_keys_the_image_its_os_packages_came_from(samples: Path) -> None:
    inventory = imported(samples, "trivy", "legacy_many_vulns.json")

    assert node(inventory, "container:debian")["os"] == "debian 10.8"
    assert node(inventory, "software:apt@1.8.2.2")["type"] == "deb"
    # CVE-2011-3374: NVD v3 3.7 over its v2 4.3
    vuln = node(inventory, "vulnerability:cve-2011-3374")
    assert (vuln["cvss"], vuln["cvss_version"]) == (3.7, "3.1")


def test_trivy_not_affected_makes_no_edge_and_statuses_are_kept(samples: Path) -> None:
    inventory = imported(samples, "trivy", "all_statuses.json")

    # no ArtifactName, an empty tag: the image its OS packages came from
    image = node(inventory, "container:noppaknopsta/example-app:main-159")
    assert image["image_id"].startswith("sha256:22ae3921")
    assert "vulnerability:cve-2019-18276" not in inventory.nodes  # bash: not_affected
    assert any("not_affected" in w.reason for w in inventory.report.warnings)
    statuses = {dict(e.attrs).get("status") for e in inventory.edges if e.kind == "vulnerable_to"}
    assert statuses == {
        "unknown",
        "affected",
        "fixed",
        "under_investigation",
        "will_not_fix",
        "fix_deferred",
        "end_of_life",
    }


def test_trivy_misconfigurations_and_secrets_are_counted_not_nodes(samples: Path) -> None:
    inventory = imported(samples, "trivy", "misconfigurations_and_secrets.json")

    # ArtifactName "." says nothing: the application is keyed by the report's name
    app = node(inventory, "application:misconfigurations_and_secrets.json")
    assert (app["misconfigurations"], app["secrets"]) == (1, 2)
    assert inventory.report.warnings
    assert set(inventory.nodes) == {
        "application:misconfigurations_and_secrets.json",
        "software:urllib3@1.26.3",
        "vulnerability:cve-2021-33503",
        "vulnerability:cve-2021-28363",
    }
    assert edge_attrs(
        inventory, "vulnerable_to", "software:urllib3@1.26.3", "vulnerability:cve-2021-33503"
    ) == {"fixed_version": "1.26.5"}


# --- Grype --------------------------------------------------------------------------------


def test_grype_fix_and_cvss_from_the_sample(samples: Path) -> None:
    inventory = imported(samples, "anchore_grype", "fix_available.json")

    # the artifact's version holds a NUL ("17.0.10+7\u0000-J-ms8m"): made a space
    software = "software:java@17.0.10+7 -j-ms8m"
    assert node(inventory, software)["paths"] == ["/opt/java/openjdk/bin/java"]
    vuln = node(inventory, "vulnerability:cve-2009-3882")
    assert (vuln["cvss"], vuln["cvss_version"], vuln["severity"]) == (7.5, "2.0", "high")
    assert edge_attrs(inventory, "vulnerable_to", software, "vulnerability:cve-2009-3882") == {
        "fixed_version": "1.2.3",
        "status": "fixed",
    }
    assert node(inventory, "container:REDACTED")["os"] == "ubuntu 20.04"


def test_grype_same_cve_on_two_paths_is_one_vulnerability(samples: Path) -> None:
    inventory = imported(samples, "anchore_grype", "same_cve_different_paths.json")

    assert counts(inventory) == (1, 1, 1)
    assert node(inventory, "software:libc6@2.28-10")["paths"] == [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
    ]
    assert node(inventory, "vulnerability:cve-2021-33574")["severity"] == "critical"


def test_grype_no_vuln_still_names_the_image(samples: Path) -> None:
    inventory = imported(samples, "anchore_grype", "no_vuln.json")

    assert list(inventory.nodes) == ["container:busybox:latest"]


GHSA_MATCHES = {
    "matches": [
        {
            "vulnerability": {
                "id": "GHSA-xxxx-yyyy-zzzz",
                "namespace": "github:language:python",
                "severity": "High",
                "cvss": [{"version": "3.1", "source": "github", "metrics": {"baseScore": 7.1}}],
                "fix": {"versions": ["2.31.0"], "state": "fixed"},
            },
            "relatedVulnerabilities": [
                {
                    "id": "CVE-2023-32681",
                    "namespace": "nvd:cpe",
                    "cvss": [
                        {"version": "2.0", "source": "nvd@nist.gov", "metrics": {"baseScore": 5.0}},
                        {"version": "3.1", "source": "nvd@nist.gov", "metrics": {"baseScore": 6.1}},
                    ],
                }
            ],
            "artifact": {"name": "requests", "version": "2.28.1", "type": "python"},
        },
        {
            "vulnerability": {
                "id": "CVE-2023-32681",
                "namespace": "nvd:cpe",
                "severity": "Medium",
                "fix": {"versions": ["2.31.0"], "state": "fixed"},
            },
            "artifact": {"name": "requests", "version": "2.25.0", "type": "python"},
        },
        {"vulnerability": {"id": "CVE-2020-1"}, "artifact": {"version": "1"}},
    ],
    "source": {"type": "directory", "target": "/srv/app"},
    "descriptor": {"name": "grype"},
}


def test_grype_ghsa_is_keyed_by_its_cve_and_one_cve_has_an_edge_per_package() -> None:
    inventory = grype.read(json.dumps(GHSA_MATCHES).encode(), "app.json")

    vuln = node(inventory, "vulnerability:cve-2023-32681")
    assert vuln["aliases"] == ["ghsa-xxxx-yyyy-zzzz"]
    assert (vuln["cvss"], vuln["cvss_source"]) == (6.1, "nvd@nist.gov")  # NVD v3 over GitHub's
    assert "vulnerability:ghsa-xxxx-yyyy-zzzz" not in inventory.nodes
    assert counts(inventory) == (2, 1, 2)
    assert "application:/srv/app" in inventory.nodes
    assert [(p.record, p.reason) for p in inventory.report.rejects] == [
        ("matches[2]", "a match without an artifact name")
    ]
    assert inventory.report.records_read == 3


# --- Wazuh --------------------------------------------------------------------------------


def test_wazuh_47_finding_values(samples: Path) -> None:
    inventory = imported(samples, "wazuh", "v4-7_one_finding.json")

    software = node(inventory, "software:asdf@4.3.1")
    assert (software["version"], software["architecture"]) == ("4.3.1", "amd64")
    vuln = node(inventory, "vulnerability:cve-1234-123123")
    assert (vuln["cvss"], vuln["severity"]) == (5.5, "medium")  # cvss2 0 means none
    assert edge_attrs(
        inventory, "vulnerable_to", "software:asdf@4.3.1", "vulnerability:cve-1234-123123"
    ) == {"fixed_version": "4.3.2", "status": "fixed", "condition": "Package less than 4.3.2"}
    # the 4.7 API answer names no agent: no host, and a warning says so
    assert inventory.count("host") == 0
    assert any("no agent" in w.reason for w in inventory.report.warnings)


def test_wazuh_47_with_agent_makes_the_host(samples: Path) -> None:
    inventory = imported(samples, "wazuh", "v4-7_one_finding_with_endpoint.json")

    assert node(inventory, "host:agent-1")["ip"] == "111.111.111.111"
    edges = {(e.kind, e.src, e.dst) for e in inventory.edges}
    assert ("runs", "host:agent-1", "software:asdf@1") in edges
    assert ("has_address", "host:agent-1", "address:111.111.111.111") in edges


def test_wazuh_48_hosts_packages_and_scores(samples: Path) -> None:
    inventory = imported(samples, "wazuh", "v4-8_many_findings.json")

    assert {n.key for n in inventory.nodes.values() if n.kind == "host"} == {
        "myhost0",
        "myhost1",
    }
    host = node(inventory, "host:myhost0")
    assert host["os"] == "Ubuntu 24.04.2 LTS (Noble Numbat)"
    assert host["agent_id"] == "001"  # the first met; the file gives myhost0 six ids
    assert len(host["agent_ids"]) == 6
    vuln = node(inventory, "vulnerability:cve-2024-56180")
    assert (vuln["cvss"], vuln["cvss_version"], vuln["severity"]) == (9.8, "3.1", "critical")
    runs = {(e.src, e.dst) for e in inventory.edges if e.kind == "runs"}
    assert (
        "host:myhost1",
        "software:libheimbase1t64-heimdal@7.8.git20221117.28daf24+dfsg-5ubuntu3",
    ) in runs


def test_wazuh_abnormal_severity_is_kept_and_warned_not_rejected(samples: Path) -> None:
    inventory = imported(samples, "wazuh", "wazuh_abnormal_severity.json")

    assert node(inventory, "vulnerability:cve-2025-27558")["severity"] == "-"
    assert inventory.report.records_rejected == 0
    assert [w.reason for w in inventory.report.warnings] == [
        "severity '-' is not one Vigil knows (informational, low, medium, high, critical, "
        "unknown): kept as given on 1 finding"
    ]
    many = imported(samples, "wazuh", "v4-7_many_findings.json")
    assert node(many, "vulnerability:cve-yyyy-jfjieo")["severity"] == "Untriaged"


@pytest.mark.parametrize("module", [trivy, grype, wazuh])
def test_a_file_that_is_not_the_report_raises_naming_it(module: Any) -> None:
    with pytest.raises(InputError, match=r"bad\.json"):
        module.read(b"{not json", "bad.json")
    with pytest.raises(InputError, match=r"other\.json"):
        module.read(b'{"something": "else"}', "other.json")


def test_trivy_bad_records_are_set_aside_and_the_rest_read() -> None:
    doc = {
        "SchemaVersion": 2,
        "ArtifactName": "img:1",
        "ArtifactType": "container_image",
        "Results": [
            {
                "Target": "img:1 (alpine 3.18.0)",
                "Class": "os-pkgs",
                "Type": "alpine",
                "Vulnerabilities": [
                    {"PkgName": "musl", "InstalledVersion": "1.2.4-r0"},
                    "not an object",
                    {
                        "VulnerabilityID": "CVE-2023-0001",
                        "PkgName": "musl",
                        "InstalledVersion": "1.2.4-r0",
                        "Severity": "SEVERE",
                    },
                ],
            },
            7,
        ],
    }
    inventory = trivy.read(json.dumps(doc).encode(), "img.json")

    assert [p.record for p in inventory.report.rejects] == [
        "Results[0].Vulnerabilities[0]",
        "Results[0].Vulnerabilities[1]",
        "Results[1]",
    ]
    assert node(inventory, "software:musl@1.2.4-r0")["type"] == "apk"
    assert node(inventory, "vulnerability:cve-2023-0001")["severity"] == "SEVERE"
    assert "SEVERE" in inventory.report.warnings[0].reason


# --- osquery ------------------------------------------------------------------------------

# osqueryd's results log as its documentation shows it: one JSON object a line, column
# values as strings; differential ("columns" + action), snapshot and batched (diffResults).
OSQUERY_RESULTS = (
    '{"name":"system_info","hostIdentifier":"Web01.example.com",'
    '"calendarTime":"Tue Sep 30 17:37:30 2014 UTC","unixTime":"1412123850",'
    '"epoch":"0","counter":"0","numerics":false,'
    '"columns":{"hostname":"web01.example.com",'
    '"uuid":"4C4C4544-0042-3010-8052-B4C04F4E4C31","cpu_type":"x86_64",'
    '"cpu_brand":"Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz",'
    '"cpu_physical_cores":"2","cpu_logical_cores":"4","physical_memory":"8589934592",'
    '"hardware_vendor":"Amazon EC2","hardware_model":"t3.large",'
    '"hardware_serial":"ec2a1b2c3d"},"action":"added"}\n'
    '{"name":"os_version","hostIdentifier":"Web01.example.com",'
    '"calendarTime":"Tue Sep 30 17:37:30 2014 UTC","unixTime":"1412123850",'
    '"epoch":"0","counter":"0","numerics":false,"columns":{"name":"Ubuntu",'
    '"version":"22.04.3 LTS (Jammy Jellyfish)","major":"22","minor":"4","patch":"0",'
    '"build":"","platform":"ubuntu","platform_like":"debian","codename":"jammy",'
    '"arch":"x86_64"},"action":"added"}\n'
    '{"snapshot":[{"name":"openssl","version":"3.0.2-0ubuntu1.10","source":"",'
    '"size":"2072","arch":"amd64","revision":"0ubuntu1.10",'
    '"maintainer":"Ubuntu Developers"},{"name":"bash","version":"5.1-6ubuntu1",'
    '"arch":"amd64"},{"version":"1.0"}],"action":"snapshot",'
    '"name":"pack_inventory_deb_packages","hostIdentifier":"Web01.example.com",'
    '"calendarTime":"Tue Sep 30 17:37:30 2014 UTC","unixTime":"1412123850",'
    '"epoch":"0","counter":"0","numerics":false}\n'
    '{"name":"rpm_packages","hostIdentifier":"db01",'
    '"calendarTime":"Tue Sep 30 17:37:30 2014 UTC","unixTime":"1412123850",'
    '"epoch":"0","counter":"0","numerics":false,"columns":{"name":"openssl-libs",'
    '"version":"3.0.7","release":"24.el9","epoch":"1","arch":"x86_64",'
    '"vendor":"Red Hat, Inc."},"action":"added"}\n'
    '{"name":"python_packages","hostIdentifier":"db01",'
    '"calendarTime":"Tue Sep 30 17:37:30 2014 UTC","unixTime":"1412123850",'
    '"epoch":"0","counter":"0","numerics":false,"columns":{"name":"requests",'
    '"version":"2.28.1",'
    '"path":"/usr/lib/python3/dist-packages/requests-2.28.1.dist-info/"},'
    '"action":"added"}\n'
    '{"name":"programs","hostIdentifier":"WIN-7QF2",'
    '"calendarTime":"Tue Sep 30 17:37:30 2014 UTC","unixTime":"1412123850",'
    '"epoch":"0","counter":"0","numerics":false,'
    '"columns":{"name":"7-Zip 22.01 (x64)","version":"22.01",'
    '"install_location":"C:\\\\Program Files\\\\7-Zip\\\\","publisher":"Igor Pavlov"},'
    '"action":"added"}\n'
    '{"name":"users","hostIdentifier":"Web01.example.com",'
    '"calendarTime":"Tue Sep 30 17:37:30 2014 UTC","unixTime":"1412123850",'
    '"epoch":"0","counter":"0","numerics":false,"columns":{"uid":"0","gid":"0",'
    '"username":"root","description":"root","directory":"/root","shell":"/bin/bash"},'
    '"action":"added"}\n'
    '{"name":"users","hostIdentifier":"Web01.example.com",'
    '"calendarTime":"Tue Sep 30 17:37:30 2014 UTC","unixTime":"1412123850",'
    '"epoch":"0","counter":"0","numerics":false,"columns":{"uid":"1000","gid":"1000",'
    '"username":"alice","description":"","directory":"/home/alice",'
    '"shell":"/bin/zsh"},"action":"added"}\n'
    '{"diffResults":{"added":[{"pid":"812","port":"22","protocol":"6","family":"2",'
    '"address":"0.0.0.0","fd":"3","socket":"20501","path":""},{"pid":"812",'
    '"port":"22","protocol":"6","family":"10","address":"::","fd":"4",'
    '"socket":"20503","path":""},{"pid":"640","port":"5432","protocol":"6",'
    '"family":"2","address":"127.0.0.1","fd":"5","socket":"20600","path":""},'
    '{"pid":"300","port":"0","protocol":"0","family":"1","address":"",'
    '"path":"/run/systemd/notify"}],"removed":[{"pid":"700","port":"8080",'
    '"protocol":"6","family":"2","address":"0.0.0.0"}]},"name":"listening_ports",'
    '"hostIdentifier":"Web01.example.com",'
    '"calendarTime":"Tue Sep 30 17:37:30 2014 UTC","unixTime":"1412123850",'
    '"epoch":"0","counter":"1","numerics":false}\n'
    '{"snapshot":[{"interface":"lo","address":"127.0.0.1","mask":"255.0.0.0",'
    '"type":"unknown"},{"interface":"eth0","address":"10.0.0.5",'
    '"mask":"255.255.255.0","broadcast":"10.0.0.255","type":"dhcp"},'
    '{"interface":"eth0","address":"fe80::8ff:fe12:3456%eth0",'
    '"mask":"ffff:ffff:ffff:ffff::","type":"unknown"}],"action":"snapshot",'
    '"name":"interface_addresses","hostIdentifier":"Web01.example.com",'
    '"calendarTime":"Tue Sep 30 17:37:30 2014 UTC","unixTime":"1412123850",'
    '"epoch":"0","counter":"0","numerics":false}\n'
    '{"name":"processes","hostIdentifier":"Web01.example.com",'
    '"calendarTime":"Tue Sep 30 17:37:30 2014 UTC","unixTime":"1412123850",'
    '"epoch":"0","counter":"0","numerics":false,"columns":{"name":"osqueryd",'
    '"path":"/usr/local/bin/osqueryd","pid":"97830"},"action":"added"}\n'
    '{"name":"deb_packages","hostIdentifier":"Web01.example.com",'
    '"calendarTime":"Tue Sep 30 17:37:30 2014 UTC","unixTime":"1412123850",'
    '"epoch":"0","counter":"1","numerics":false,"columns":{"name":"telnet",'
    '"version":"0.17-44"},"action":"removed"}\n'
    "{this line is not json\n"
    '{"name":"users","calendarTime":"Tue Sep 30 17:37:30 2014 UTC",'
    '"columns":{"username":"bob"},"action":"added"}\n'
)


def test_osquery_results_log_builds_hosts_and_what_runs_on_them() -> None:
    data = OSQUERY_RESULTS.encode()
    assert osquery.sniff("osqueryd.results.log", data)
    assert not trivy.sniff("x", data) and not grype.sniff("x", data) and not wazuh.sniff("x", data)
    inventory = osquery.read(data, "osqueryd.results.log")

    host = node(inventory, "host:web01.example.com")
    assert inventory.nodes["host:web01.example.com"].name == "Web01.example.com"
    assert host["hostname"] == "web01.example.com"
    assert host["cpu"] == "Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz"
    assert (host["cpu_cores"], host["memory"]) == (2, 8589934592)
    assert (host["hardware_vendor"], host["hardware_model"]) == ("Amazon EC2", "t3.large")
    assert host["os"] == "Ubuntu 22.04.3 LTS (Jammy Jellyfish)"
    assert host["os_platform"] == "ubuntu"

    edges = {(e.kind, e.src, e.dst) for e in inventory.edges}
    # software: deb (from a pack query), rpm with epoch and release, python, Windows programs
    assert ("runs", "host:web01.example.com", "software:openssl@3.0.2-0ubuntu1.10") in edges
    assert ("runs", "host:web01.example.com", "software:bash@5.1-6ubuntu1") in edges
    assert node(inventory, "software:openssl@3.0.2-0ubuntu1.10")["type"] == "deb"
    assert ("runs", "host:db01", "software:openssl-libs@1:3.0.7-24.el9") in edges
    assert ("runs", "host:db01", "software:requests@2.28.1") in edges
    assert ("runs", "host:win-7qf2", "software:7-zip 22.01 (x64)@22.01") in edges
    assert "software:telnet@0.17-44" not in inventory.nodes  # a removed row
    assert inventory.count("software") == 5

    # users: local accounts keyed by host; uid 0 administers the host
    root = "user:web01.example.com\\root"
    assert node(inventory, root)["shell"] == "/bin/bash"
    assert ("admin_of", root, "host:web01.example.com") in edges
    assert "user:web01.example.com\\alice" in inventory.nodes
    assert not any(e.kind == "admin_of" and "alice" in e.src for e in inventory.edges)

    # services: ssh on both stacks is one service; postgres bound to loopback only
    ssh = node(inventory, "service:web01.example.com:tcp/22")
    assert (ssh["addresses"], ssh["local_only"]) == (["0.0.0.0", "::"], False)
    assert node(inventory, "service:web01.example.com:tcp/5432")["local_only"] is True
    assert ("exposes", "host:web01.example.com", "service:web01.example.com:tcp/22") in edges
    assert "service:web01.example.com:tcp/8080" not in inventory.nodes  # removed
    assert inventory.count("service") == 2  # the Unix socket is none

    # addresses: loopback and link-local left out
    assert [n.key for n in inventory.nodes.values() if n.kind == "address"] == ["10.0.0.5"]
    assert edge_attrs(inventory, "has_address", "host:web01.example.com", "address:10.0.0.5") == {
        "interface": "eth0"
    }

    report = inventory.report
    assert report.records_read == 14
    assert [(p.record, p.reason[:8]) for p in report.rejects] == [
        (3, "a deb_pa"),  # the package row without a name
        (13, "not JSON"),
        (14, "a result"),  # no hostIdentifier
    ]
    warnings = {p.reason for p in report.warnings}
    assert "query 'processes' names no table Vigil reads: 1 rows skipped" in warnings
    assert "rows marked removed: 2 (not imported)" in warnings


def test_osquery_file_with_no_result_raises_and_empty_file_is_empty() -> None:
    with pytest.raises(InputError, match=r"other\.log: not osquery results"):
        osquery.read(b'{"a": 1}\n{"b": 2}\n', "other.log")
    assert osquery.read(b"", "empty.log").nodes == {}


# --- CSV inventory ------------------------------------------------------------------------

CMDB = (
    "\ufeffHostname;IP Address;Asset Type;Owner;Criticality;Zone;OS;Tags;Internet-Facing;"
    "Environment;Description\n"
    """WEB01;10.0.0.5;server;alice;Crown-Jewel;dmz;Ubuntu 22.04;pci, web;yes;prod;storefront
;;;bob;low;;;;;;
db01;10.0.0.6 10.0.1.6;database;carol;3;core;;a;no;prod;
;10.0.0.7;;;5;;;;maybe;;
printer1;not-an-ip;Printer;;weird;;;;;;
;nope;;;;;;;;;
"""
)


def test_csv_rows_become_assets_with_a_small_criticality_vocabulary() -> None:
    data = CMDB.encode()
    assert csv_inventory.sniff("cmdb.csv", data)
    assert not csv_inventory.sniff("cmdb.txt", data)
    inventory = csv_inventory.read(data, "cmdb.csv")

    web = node(inventory, "host:web01")
    assert inventory.nodes["host:web01"].name == "WEB01"
    assert (web["criticality"], web["crown_jewel"]) == ("critical", True)
    assert (web["owner"], web["segment"], web["os"]) == ("alice", "dmz", "Ubuntu 22.04")
    assert (web["tags"], web["internet_exposed"], web["environment"]) == (
        ["pci", "web"],
        True,
        "prod",
    )
    assert web["asset_type"] == "server"

    db = node(inventory, "data_store:db01")
    assert (db["criticality"], db["crown_jewel"], db["internet_exposed"]) == (
        "medium",
        False,
        False,
    )
    edges = {(e.kind, e.src, e.dst) for e in inventory.edges}
    assert ("has_address", "data_store:db01", "address:10.0.1.6") in edges
    assert ("has_address", "host:web01", "address:10.0.0.5") in edges

    # a host known only by its address; 5 is the top of 1-5
    nameless = node(inventory, "host:10.0.0.7")
    assert (nameless["criticality"], nameless["crown_jewel"]) == ("critical", True)
    assert "internet_exposed" not in nameless  # "maybe" is not read

    assert node(inventory, "host:printer1")["asset_type"] == "Printer"

    report = inventory.report
    assert report.records_read == 6
    assert [(p.record, p.reason) for p in report.rejects] == [
        (3, "a row with neither a name nor an IP"),
        (7, "a row with neither a name nor an IP ('nope' is not an IP address)"),
    ]
    warned = [p.reason for p in report.warnings]
    assert "exposure 'maybe' is not yes or no: left out of 1 row" in warned
    assert "criticality 'weird' is not one Vigil reads: left out of 1 row" in warned
    assert "'not-an-ip' is not an IP address: left out of 1 row" in warned
    assert not any("nope" in reason for reason in warned)  # set aside, not warned twice


def test_csv_aliases_defaults_and_an_unknown_kind() -> None:
    data = (
        b"name,ip_address,type,criticality,exposure,tags\n"
        b"Payroll,10.1.1.1,application,1,true,hr;finance\n"
        b"kiosk-3,,robot,high,0,\n"
        b"lb1,10.1.1.9,,4,,\n"
    )
    inventory = csv_inventory.read(data, "assets.csv")

    app = node(inventory, "application:Payroll")
    assert (app["criticality"], app["crown_jewel"], app["tags"]) == (
        "minimal",
        False,
        ["hr", "finance"],
    )
    assert node(inventory, "host:kiosk-3")["criticality"] == "high"  # robot: read as a host
    assert node(inventory, "host:lb1")["criticality"] == "high"  # no kind: a host
    assert [p.reason for p in inventory.report.warnings] == [
        "kind 'robot' is not one Vigil knows: 1 row read as hosts"
    ]


def test_csv_without_a_naming_column_raises() -> None:
    assert not csv_inventory.sniff("x.csv", b"owner,zone\nalice,dmz\n")
    with pytest.raises(InputError, match=r"x\.csv: no name, hostname or ip column"):
        csv_inventory.read(b"owner,zone\nalice,dmz\n", "x.csv")
    with pytest.raises(InputError, match=r"empty\.csv: no header row"):
        csv_inventory.read(b"", "empty.csv")
