"""Anchore Grype JSON reports into the inventory: the scanned source, the packages it runs and
the vulnerabilities they have.

- The source (`source.target`): an image → `container`, keyed by what the user asked for
  (`userInput`), else its first tag, digest or image id; a directory or file →
  `application`, keyed by its path. The distro becomes its `os`.
- Each matched artifact → `software` `<name>@<version>` (its locations kept as `paths`),
  `runs` from the source.
- Each match → `vulnerability` and `vulnerable_to` from the software, with the fixed
  versions and the fix state. A GitHub advisory (GHSA) that has a related CVE is keyed by the
  CVE, the GHSA kept in `aliases`; the same CVE matched on several paths or packages is one
  vulnerability with one edge from each package.
- CVSS from the vulnerability's own ratings and its related ones (NVD's): v3 first, NVD's
  before the others, then v2, then v4 (`findings.best_cvss`).
"""

from __future__ import annotations

import re
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

FORMAT = "grype"

# source.type → the node the scanned source is
SOURCES = {"image": "container", "directory": "application", "file": "application"}
# What an image's key is taken from, in order (first non-empty)
IMAGE_KEYS = ("userInput", "tags", "repoDigests", "imageID")
_GRYPE = re.compile(rb'"name"\s*:\s*"grype"')
_NVD_SOURCES = frozenset({"nvd", "nvd@nist.gov"})


def sniff(name: str, head: bytes) -> bool:
    if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] != b"{" or b'"matches"' not in head:
        return False
    return (
        b'"matchDetails"' in head
        or b'"relatedVulnerabilities"' in head
        or _GRYPE.search(head) is not None
    )


def read(data: bytes, name: str) -> Inventory:
    """The source, packages and vulnerabilities of a Grype report."""
    document = load_json(data, name, "Grype")
    if not isinstance(document, dict) or "matches" not in document:
        raise InputError(f"{name}: not a Grype report (no matches)")
    inventory = Inventory(name)
    inventory.report.format = FORMAT
    findings = Findings(inventory)
    source = _source(inventory, document, name)
    for index, match in enumerate(items(document.get("matches"), inventory, "matches")):
        inventory.report.records_read += 1
        _match(findings, source, match, f"matches[{index}]")
    return findings.finish()


def _source(inventory: Inventory, document: dict[str, Any], name: str) -> Node:
    source = document.get("source")
    source = source if isinstance(source, dict) else {}
    target = source.get("target")
    kind = SOURCES.get(text(source.get("type")) or "", "application")
    key = None
    if isinstance(target, dict):
        for field in IMAGE_KEYS:
            value = target.get(field)
            key = text(value[0] if isinstance(value, list) and value else value)
            if key:
                break
    else:
        key = text(target)
    if not key:
        inventory.report.warn("source", "the report names no target: keyed by its file name")
        key = name
    distro = document.get("distro")
    os = (
        " ".join(filter(None, (text(distro.get("name")), text(distro.get("version")))))
        if isinstance(distro, dict)
        else None
    )
    return inventory.node(
        kind,
        key,
        source_type=text(source.get("type")),
        image_id=text(target.get("imageID")) if isinstance(target, dict) else None,
        os=os or None,
    )


def _match(findings: Findings, source: Node, match: Any, where: str) -> None:
    report = findings.inventory.report
    if not isinstance(match, dict):
        report.reject(where, "a match that is not an object")
        return
    vulnerability, artifact = match.get("vulnerability"), match.get("artifact")
    if not isinstance(vulnerability, dict) or not text(vulnerability.get("id")):
        report.reject(where, "a match without a vulnerability id")
        return
    if not isinstance(artifact, dict) or not text(artifact.get("name")):
        report.reject(where, "a match without an artifact name")
        return
    related = [
        r
        for r in items(match.get("relatedVulnerabilities"), findings.inventory, where)
        if isinstance(r, dict)
    ]
    software = findings.software(
        source,
        text(artifact.get("name")) or "",
        text(artifact.get("version")),
        paths=[
            text(location.get("path"))
            for location in items(artifact.get("locations"), findings.inventory, where)
            if isinstance(location, dict)
        ],
        type=text(artifact.get("type")),
        language=text(artifact.get("language")),
        purl=text(artifact.get("purl")),
    )
    given = text(vulnerability.get("id")) or ""
    cve = next(
        (
            i
            for i in map(text, (r.get("id") for r in related))
            if i and i.upper().startswith("CVE-")
        ),
        None,
    )
    key, aliases = (cve, [given]) if cve and not given.upper().startswith("CVE-") else (given, [])
    fix = vulnerability.get("fix")
    fix = fix if isinstance(fix, dict) else {}
    fixed = ", ".join(
        v for v in map(text, items(fix.get("versions"), findings.inventory, where)) if v
    )
    ratings = [r for rated in (vulnerability, *related) for r in _ratings(rated)]
    made = findings.vulnerability(
        key,
        where,
        vulnerability.get("severity"),
        fixed_version=fixed or None,
        url=text(vulnerability.get("dataSource")),
        aliases=aliases,
        **best_cvss(ratings),
    )
    findings.affects(software, made, fixed_version=fixed or None, status=text(fix.get("state")))


def _ratings(vulnerability: dict[str, Any]) -> list[Cvss]:
    """A vulnerability's CVSS ratings (NVD's when its source or namespace is NVD)."""
    nvd_namespace = (text(vulnerability.get("namespace")) or "").startswith("nvd")
    out = []
    ratings = vulnerability.get("cvss")
    for rating in ratings if isinstance(ratings, list) else ():
        if not isinstance(rating, dict):
            continue
        metrics = rating.get("metrics")
        value = score(metrics.get("baseScore")) if isinstance(metrics, dict) else None
        if value is None:
            continue
        source = text(rating.get("source")) or ""
        vector = text(rating.get("vector"))
        version = text(rating.get("version")) or vector_version(vector, "")
        out.append(Cvss(source, version, value, vector, nvd_namespace or source in _NVD_SOURCES))
    return out
