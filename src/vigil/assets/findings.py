"""What the package scanners' importers (Trivy, Grype, Wazuh) share: the report read as JSON,
text cleaned, severities put in Vigil's words, the best CVSS score chosen, and packages and
their vulnerabilities made the same way whoever found them (one `vulnerable_to` edge per
package and vulnerability, however often the report repeats the pair)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from vigil.assets.model import Inventory, Node
from vigil.errors import InputError
from vigil.events.records import LEVELS

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_BOM = b"\xef\xbb\xbf"

# A scanner's severity (lower case) → Vigil's word: the alert levels, plus "unknown" for a
# finding the scanner has not rated. A value not here is kept as given and warned about.
SEVERITIES: dict[str, str] = {
    **{level: level for level in LEVELS},
    "info": "informational",
    "none": "informational",
    "negligible": "informational",  # Grype: Debian's "unimportant"
    "moderate": "medium",  # GitHub advisories
    "important": "high",  # Red Hat
    "unknown": "unknown",
}


def load_json(data: bytes, name: str, what: str) -> Any:
    """The document; InputError naming the file when it is not JSON."""
    try:
        return orjson.loads(data.removeprefix(_BOM))
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{name}: not {what} JSON: {exc}") from exc


def text(value: Any) -> str | None:
    """A string from a report, control characters (a NUL in a version, say) made one space;
    None when blank or not a scalar."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        return None
    return _CONTROL.sub(" ", value).strip() or None


def score(value: Any) -> float | None:
    """A CVSS score above 0 and at most 10; None otherwise (scanners write 0 for "none")."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and 0.0 < number <= 10.0 else None


class Cvss(NamedTuple):
    """One CVSS rating a report gives: who rated, which version ("3.1", "2.0", "4.0")."""

    source: str
    version: str
    score: float
    vector: str | None
    nvd: bool


# Which rating is the vulnerability's `cvss`: version 3 first, then 2, then 4 (kept apart
# as `cvss4` as well); within a version NVD's, then the others in the order the report gave.
_VERSION_RANK = {"3": 0, "2": 1, "4": 2}


def best_cvss(ratings: Iterable[Cvss]) -> dict[str, Any]:
    """The vulnerability's CVSS attributes: cvss, cvss_version, cvss_vector, cvss_source,
    and cvss4 when a version 4 score is there."""
    ranked = sorted(
        (r for r in ratings if r.version[:1] in _VERSION_RANK),
        key=lambda r: (_VERSION_RANK[r.version[:1]], not r.nvd),
    )
    if not ranked:
        return {}
    best = ranked[0]
    four = next((r for r in ranked if r.version.startswith("4")), None)
    return {
        "cvss": best.score,
        "cvss_version": best.version,
        "cvss_vector": best.vector,
        "cvss_source": best.source,
        "cvss4": four.score if four else None,
    }


def vector_version(vector: str | None, default: str) -> str:
    """ "3.1" from "CVSS:3.1/AV:N/...", else the default."""
    if vector and vector.startswith("CVSS:"):
        return vector[5:].split("/", 1)[0]
    return default


@dataclass
class Findings:
    """One report's packages and vulnerabilities, gathered into its inventory; `finish` adds
    the `vulnerable_to` edges and the report's warnings."""

    inventory: Inventory
    _affects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    _odd: dict[str, list[Any]] = field(default_factory=dict)  # severity → [count, first where]

    def software(
        self,
        runner: Node | None,
        product: str,
        version: str | None,
        paths: Iterable[str | None] = (),
        **attrs: Any,
    ) -> Node:
        """The software `<product>@<version>` (lower case; the product alone when the
        version is unknown), run by `runner` when there is one; `paths` (where it was
        found) add to those known."""
        key = f"{product}@{version}" if version else product
        made = self.inventory.node(
            "software",
            key.lower(),
            name=f"{product} {version}" if version else product,
            product=product,
            version=version,
            **attrs,
        )
        found = {p for p in paths if p}
        if found:
            made.attrs["paths"] = sorted(found.union(made.attrs.get("paths", ())))
        if runner is not None:
            self.inventory.edge("runs", runner, made)
        return made

    def vulnerability(
        self,
        vuln_id: str,
        where: int | str,
        severity: Any,
        aliases: Iterable[str] = (),
        **attrs: Any,
    ) -> Node:
        """The vulnerability keyed by its id (lower case), its severity in Vigil's words (a
        value Vigil does not know is kept as given, and warned about once in `finish`);
        `aliases` (other ids of it, lower case) add to those known."""
        given = text(severity)
        word = SEVERITIES.get(given.lower()) if given else None
        if given and word is None:
            seen = self._odd.setdefault(given, [0, where])
            seen[0] += 1
        made = self.inventory.node(
            "vulnerability", vuln_id.lower(), name=vuln_id, severity=word or given, **attrs
        )
        found = {a.lower() for a in aliases}
        if found:
            made.attrs["aliases"] = sorted(found.union(made.attrs.get("aliases", ())))
        return made

    def affects(self, software: Node, vulnerability: Node, **attrs: Any) -> None:
        """`software` is vulnerable to `vulnerability`: one edge per pair; a fixed version
        seen again with another value is added to it ("1.2.4, 2.0.1")."""
        attrs = {k: v for k, v in attrs.items() if v is not None}
        known = self._affects.setdefault((software.id, vulnerability.id), attrs)
        if known is attrs:
            return
        for name, value in attrs.items():
            before = known.get(name)
            if before is None:
                known[name] = value
            elif name == "fixed_version" and value not in before.split(", "):
                known[name] = f"{before}, {value}"

    def finish(self) -> Inventory:
        for (src, dst), attrs in self._affects.items():
            self.inventory.edge("vulnerable_to", src, dst, **attrs)
        known = ", ".join(dict.fromkeys(SEVERITIES.values()))
        for given, (count, where) in self._odd.items():
            self.inventory.report.warn(
                where,
                f"severity {given!r} is not one Vigil knows ({known}): kept as given on "
                f"{count} finding{'s' if count != 1 else ''}",
            )
        return self.inventory


def items(value: Any, inventory: Inventory, where: str) -> list[Any]:
    """A report's list: empty when absent or null; set aside (and empty) when not a list."""
    if isinstance(value, list):
        return value
    if value is not None:
        inventory.report.reject(where, f"not a list but {type(value).__name__}")
    return []
