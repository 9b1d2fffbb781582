"""Trivy JSON reports into the inventory: the scanned artifact, the packages it runs and the
vulnerabilities they have.

Three shapes are read: SchemaVersion 2 (`{ArtifactName, ArtifactType, Metadata, Results}`),
the legacy top-level list of results, and `trivy k8s` reports (`{ClusterName,
Vulnerabilities, Misconfigurations}` or `{ClusterName, Resources}`), each resource with its
own results.

- The artifact: an image → `container`, keyed by its reference (ArtifactName, else its tag,
  else the image its OS packages came from, else its digest or id); a folder, repository or
  SBOM → `application` (a relative name such as "." is replaced by the report's file name);
  a VM → `host`; a Kubernetes resource → `cloud_resource` keyed
  `<cluster>/<namespace>/<Kind>/<name>`. Its failed misconfigurations and its secrets are
  counted on it (`misconfigurations`, `secrets`), not made nodes.
- Each package → `software` `<name>@<installed version>`, `runs` from the artifact.
- Each finding → `vulnerability` (its id, lower case) and `vulnerable_to` from the package
  with the fixed version and Trivy's status. A finding the vendor marks `not_affected` says
  the package is *not* vulnerable: it makes no vulnerability and no edge (counted in a
  warning).
- CVSS (`findings.best_cvss`): NVD's v3 score, else another vendor's v3 (the severity's
  source first), else v2, else v4; a v4 score is kept as `cvss4` as well.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from vigil.assets.findings import (
    Cvss,
    Findings,
    best_cvss,
    items,
    load_json,
    score,
    text,
    vector_version,
)
from vigil.assets.model import Inventory, Node
from vigil.errors import InputError

FORMAT = "trivy"

# ArtifactType → the node the scanned artifact is
ARTIFACTS = {
    "container_image": "container",
    "filesystem": "application",
    "repository": "application",
    "rootfs": "application",
    "cyclonedx": "application",
    "spdx": "application",
    "vm": "host",
}
# The OS family of an os-pkgs result (its Type) → the type of its packages
OS_PACKAGES = {
    **dict.fromkeys(("debian", "ubuntu"), "deb"),
    **dict.fromkeys(("alpine", "wolfi", "chainguard"), "apk"),
    **dict.fromkeys(
        (
            "redhat",
            "centos",
            "rocky",
            "alma",
            "amazon",
            "oracle",
            "fedora",
            "photon",
            "cbl-mariner",
            "azurelinux",
            "suse linux enterprise server",
            "opensuse.leap",
            "opensuse.tumbleweed",
        ),
        "rpm",
    ),
}
# Status a vendor gives a finding that says the package is not vulnerable after all
NOT_VULNERABLE = frozenset({"not_affected"})
# A misconfiguration counted unless it passed or is an accepted exception
NOT_FAILED = frozenset({"PASS", "EXCEPTION"})
# CVSS fields of a Trivy rating: prefix → the version when the vector does not say
RATINGS = {"V3": "3", "V2": "2.0", "V40": "4.0"}
# "debian:10.4 (debian 10.4)": the image an os-pkgs result came from, and its OS
_OS_TARGET = re.compile(r"(?P<ref>.+?) \((?P<os>[^()]+)\)")
_RELATIVE = frozenset({".", "./", "..", "../"})


def sniff(name: str, head: bytes) -> bool:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start == b"[":
        return b'"Target"' in head and b'"Vulnerabilities"' in head
    if start != b"{":
        return False
    if b'"SchemaVersion"' in head and b'"ArtifactName"' in head:
        return True
    return b'"ClusterName"' in head and any(
        part in head for part in (b'"Resources"', b'"Vulnerabilities"', b'"Misconfigurations"')
    )


def read(data: bytes, name: str) -> Inventory:
    """The artifact(s), packages and vulnerabilities of a Trivy report."""
    document = load_json(data, name, "Trivy")
    inventory = Inventory(name)
    inventory.report.format = FORMAT
    report = _Report(Findings(inventory), name)
    if isinstance(document, list):
        report.legacy(document)
    elif isinstance(document, dict) and "ClusterName" in document:
        report.kubernetes(document)
    elif isinstance(document, dict) and ("Results" in document or "SchemaVersion" in document):
        report.artifact(document)
    else:
        raise InputError(
            f"{name}: not a Trivy report (no Results, no ClusterName, not a list of results)"
        )
    return report.finish()


class _Report:
    def __init__(self, findings: Findings, name: str) -> None:
        self.findings = findings
        self.inventory = findings.inventory
        self.name = name
        self.misconfigurations: Counter[str] = Counter()
        self.secrets: Counter[str] = Counter()
        self.not_affected: list[str] = []

    # --- the three shapes ---------------------------------------------------------------

    def artifact(self, document: dict[str, Any]) -> None:
        """SchemaVersion 2: one artifact and its results."""
        meta = document.get("Metadata")
        meta = meta if isinstance(meta, dict) else {}
        results = items(document.get("Results"), self.inventory, "Results")
        given = text(document.get("ArtifactType"))
        kind = ARTIFACTS.get(given or "")
        if kind is None:
            kind = "container" if meta.get("ImageID") or meta.get("RepoTags") else "application"
        key = self._key(kind, document, meta, results)
        os = meta.get("OS")
        node = self.inventory.node(
            kind,
            key.lower() if kind == "host" else key,
            artifact_type=given,
            image_id=text(meta.get("ImageID")),
            os=" ".join(filter(None, (text(os.get("Family")), text(os.get("Name")))))
            if isinstance(os, dict)
            else None,
        )
        self.results(node, results, "Results")

    def legacy(self, results: list[Any]) -> None:
        """The legacy list of results: the artifact is the image its OS packages came
        from, else an application named after the report's file."""
        for result in results:
            found = (
                _OS_TARGET.fullmatch(text(result.get("Target")) or "")
                if isinstance(result, dict)
                else None
            )
            if found:
                node = self.inventory.node("container", found["ref"], os=found["os"])
                break
        else:
            node = self.inventory.node("application", self.name)
        self.results(node, results, "")

    def kubernetes(self, document: dict[str, Any]) -> None:
        """A `trivy k8s` report: each resource a cloud_resource with its own results (one
        resource may be listed under both Vulnerabilities and Misconfigurations)."""
        cluster = text(document.get("ClusterName"))
        for section in ("Resources", "Vulnerabilities", "Misconfigurations"):
            for index, resource in enumerate(items(document.get(section), self.inventory, section)):
                where = f"{section}[{index}]"
                if not isinstance(resource, dict):
                    self.inventory.report.reject(where, "a resource that is not an object")
                    continue
                kind, resource_name = text(resource.get("Kind")), text(resource.get("Name"))
                if not kind or not resource_name:
                    self.inventory.report.reject(where, "a resource without Kind or Name")
                    continue
                namespace = text(resource.get("Namespace"))
                results = items(resource.get("Results"), self.inventory, f"{where}.Results")
                images = {
                    found["ref"]
                    for result in results
                    if isinstance(result, dict)
                    and (found := _OS_TARGET.fullmatch(text(result.get("Target")) or ""))
                }
                node = self.inventory.node(
                    "cloud_resource",
                    "/".join(filter(None, (cluster, namespace, kind, resource_name))),
                    name=f"{kind}/{resource_name}",
                    cluster=cluster,
                    namespace=namespace,
                    resource_kind=kind,
                    images=sorted(images) or None,
                )
                self.results(node, results, f"{where}.Results")

    # --- results, packages, findings ------------------------------------------------------

    def results(self, artifact: Node, results: list[Any], where: str) -> None:
        report = self.inventory.report
        self.misconfigurations.setdefault(artifact.id, 0)
        for index, result in enumerate(results):
            here = f"{where}[{index}]"
            if not isinstance(result, dict):
                report.reject(here, "a result that is not an object")
                continue
            package_type = _package_type(result)
            for number, package in enumerate(
                items(result.get("Packages"), self.inventory, f"{here}.Packages")
            ):
                report.records_read += 1
                self.package(artifact, package, package_type, f"{here}.Packages[{number}]")
            for number, finding in enumerate(
                items(result.get("Vulnerabilities"), self.inventory, f"{here}.Vulnerabilities")
            ):
                report.records_read += 1
                self.finding(artifact, finding, package_type, f"{here}.Vulnerabilities[{number}]")
            misconfigurations = items(
                result.get("Misconfigurations"), self.inventory, f"{here}.Misconfigurations"
            )
            secrets = items(result.get("Secrets"), self.inventory, f"{here}.Secrets")
            report.records_read += len(misconfigurations) + len(secrets)
            self.misconfigurations[artifact.id] += sum(
                1
                for m in misconfigurations
                if not (isinstance(m, dict) and text(m.get("Status")) in NOT_FAILED)
            )
            self.secrets[artifact.id] += len(secrets)

    def package(self, artifact: Node, package: Any, package_type: str | None, where: str) -> None:
        """A package of a result's `Packages` (listed with --list-all-pkgs)."""
        if not isinstance(package, dict) or not text(package.get("Name")):
            self.inventory.report.reject(where, "a package without a Name")
            return
        version = text(package.get("Version"))
        if version:
            epoch, release = text(package.get("Epoch")), text(package.get("Release"))
            version = f"{epoch}:{version}" if epoch and epoch != "0" else version
            version = f"{version}-{release}" if release else version
        self.findings.software(
            artifact,
            text(package.get("Name")) or "",
            version,
            type=package_type,
            purl=_purl(package.get("Identifier")),
            paths=[text(package.get("FilePath"))],
        )

    def finding(self, artifact: Node, finding: Any, package_type: str | None, where: str) -> None:
        report = self.inventory.report
        if not isinstance(finding, dict):
            report.reject(where, "a vulnerability that is not an object")
            return
        vuln_id, product = text(finding.get("VulnerabilityID")), text(finding.get("PkgName"))
        if not vuln_id or not product:
            report.reject(where, "a vulnerability without VulnerabilityID or PkgName")
            return
        ref = text(finding.get("Ref"))
        software = self.findings.software(
            artifact,
            product,
            text(finding.get("InstalledVersion")),
            type=package_type,
            purl=_purl(finding.get("PkgIdentifier"))
            or (ref if ref and ref.startswith("pkg:") else None),
            paths=[text(finding.get("PkgPath"))],
        )
        status = text(finding.get("Status"))
        if status in NOT_VULNERABLE:
            self.not_affected.append(where)
            return
        fixed = text(finding.get("FixedVersion"))
        vendor_ids = [
            i for i in map(text, items(finding.get("VendorIDs"), self.inventory, where)) if i
        ]
        vulnerability = self.findings.vulnerability(
            vuln_id,
            where,
            finding.get("Severity"),
            title=text(finding.get("Title")),
            fixed_version=fixed,
            url=text(finding.get("PrimaryURL")),
            published=text(finding.get("PublishedDate")),
            aliases=[i for i in vendor_ids if i.upper().startswith("GHSA-")],
            advisories=[i for i in vendor_ids if not i.upper().startswith("GHSA-")] or None,
            **best_cvss(_ratings(finding.get("CVSS"), text(finding.get("SeveritySource")))),
        )
        self.findings.affects(software, vulnerability, fixed_version=fixed, status=status)

    # --- keys and the end -----------------------------------------------------------------

    def _key(
        self, kind: str, document: dict[str, Any], meta: dict[str, Any], results: list[Any]
    ) -> str:
        """The artifact's key: its name; for an image, else a tag, the image its OS
        packages came from, a digest, its id; else the report's file name."""
        candidates = [document.get("ArtifactName")]
        if kind == "container":
            candidates += items(meta.get("RepoTags"), self.inventory, "Metadata.RepoTags")
            candidates += [
                found["ref"]
                for result in results
                if isinstance(result, dict)
                and (found := _OS_TARGET.fullmatch(text(result.get("Target")) or ""))
            ]
            candidates += items(meta.get("RepoDigests"), self.inventory, "Metadata.RepoDigests")
            candidates.append(meta.get("ImageID"))
        for candidate in map(text, candidates):
            if candidate and candidate not in _RELATIVE:
                return candidate
        self.inventory.report.warn(
            None,
            f"the artifact's name ({text(document.get('ArtifactName'))!r}) does not say "
            f"which it is: keyed by the report's file name",
        )
        return self.name

    def finish(self) -> Inventory:
        for node_id, count in self.misconfigurations.items():
            node = self.inventory.nodes[node_id]
            node.attrs["misconfigurations"] = count
            node.attrs["secrets"] = self.secrets[node_id]
        if self.not_affected:
            count = len(self.not_affected)
            self.inventory.report.warn(
                self.not_affected[0],
                f"{count} finding{'s' if count != 1 else ''} the vendor marks not_affected: "
                "no vulnerable_to edge made",
            )
        return self.findings.finish()


def _package_type(result: dict[str, Any]) -> str | None:
    given = text(result.get("Type"))
    return OS_PACKAGES.get(given.lower(), given) if given else None


def _purl(identifier: Any) -> str | None:
    return text(identifier.get("PURL")) if isinstance(identifier, dict) else None


def _ratings(cvss: Any, preferred: str | None) -> list[Cvss]:
    """A finding's CVSS ratings, the severity's source first, then the rest as given."""
    if not isinstance(cvss, dict):
        return []
    out = []
    for source in sorted(cvss, key=lambda s: s != preferred):
        rating = cvss[source]
        if not isinstance(rating, dict):
            continue
        for prefix, default in RATINGS.items():
            value = score(rating.get(f"{prefix}Score"))
            if value is not None:
                vector = text(rating.get(f"{prefix}Vector"))
                version = default if prefix == "V2" else vector_version(vector, default)
                out.append(Cvss(source, version, value, vector, source == "nvd"))
    return out
