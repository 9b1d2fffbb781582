"""Compiling parsed Sigma rules into a plan: atoms, condition trees, covers, logsource variants."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sigma.conditions import (
    ConditionAND,
    ConditionIdentifier,
    ConditionNOT,
    ConditionOR,
    ConditionSelector,
)
from sigma.modifiers import SigmaWindowsDashModifier
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule
from sigma.types import SigmaExpansion, SigmaString

from vigil.detect.sigma.atoms import Atom, UnsupportedValue, value_atoms
from vigil.detect.sigma.loader import RuleProblem, identity
from vigil.detect.sigma.logsource import FieldMap, LogsourceMap, RuleSource

# A condition tree, as plain data: ("and", (nodes)), ("or", (nodes)), ("not", node),
# ("atom", atom index) or ("const", bool).
Node = tuple[Any, ...]
TRUE: Node = ("const", True)
FALSE: Node = ("const", False)


@dataclass(frozen=True, slots=True)
class RuleMeta:
    """What a detection reports about its rule."""

    rule_id: str
    title: str
    level: str
    status: str
    tags: tuple[str, ...]
    path: str
    logsource: RuleSource
    name: str | None = None
    output: bool = True  # False for rules only correlations use (generate: false)
    description: str = ""
    author: str = ""
    references: tuple[str, ...] = ()
    falsepositives: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Variant:
    """A rule under one set of field renames (e.g. Security 4688's NewProcessName for Image)."""

    rule: int
    fieldmap: FieldMap
    tree: Node


@dataclass
class AtomTable:
    """Atoms deduplicated across all rules."""

    atoms: list[Atom] = field(default_factory=list)
    index: dict[Atom, int] = field(default_factory=dict)

    def add(self, atom: Atom) -> int:
        found = self.index.get(atom)
        if found is None:
            found = len(self.atoms)
            self.atoms.append(atom)
            self.index[atom] = found
        return found


def _and(children: Sequence[Node]) -> Node:
    flat: list[Node] = []
    for child in children:
        if child == TRUE:
            continue
        if child == FALSE:
            return FALSE
        flat.extend(child[1] if child[0] == "and" else (child,))
    if not flat:
        return TRUE
    return flat[0] if len(flat) == 1 else ("and", tuple(flat))


def _or(children: Sequence[Node]) -> Node:
    flat: list[Node] = []
    for child in children:
        if child == FALSE:
            continue
        if child == TRUE:
            return TRUE
        flat.extend(child[1] if child[0] == "or" else (child,))
    if not flat:
        return FALSE
    return flat[0] if len(flat) == 1 else ("or", tuple(flat))


def _not(child: Node) -> Node:
    if child[0] == "const":
        return ("const", not child[1])
    if child[0] == "not":
        return child[1]  # type: ignore[no-any-return]
    return ("not", child)


class RuleCompiler:
    """Turns one pySigma rule into a condition tree over shared atoms."""

    def __init__(self, atoms: AtomTable, placeholders: dict[str, list[str]] | None = None):
        self.atoms = atoms
        self.placeholders = placeholders or {}

    def compile(self, rule: SigmaRule, rename: Callable[[str], str]) -> Node:
        detections = rule.detection.detections
        compiled: dict[str, Node] = {}

        def detection(name: str) -> Node:
            if name not in compiled:
                if name not in detections:
                    raise UnsupportedValue(f"condition names undefined detection {name!r}")
                compiled[name] = self._detection(detections[name], rename)
            return compiled[name]

        trees = []
        for condition in rule.detection.parsed_condition:
            raw = condition.parse(postprocess=False)
            trees.append(self._condition(raw, rule, detection))
        return _or(trees)

    def _condition(self, item: Any, rule: SigmaRule, detection: Callable[[str], Node]) -> Node:
        if isinstance(item, ConditionIdentifier):
            return detection(item.args[0])
        if isinstance(item, ConditionSelector):
            names = [c.args[0] for c in item.resolve_referenced_detections(rule.detection)]
            if not names:
                raise UnsupportedValue(f"selector {item.pattern!r} matches no detection")
            nodes = [detection(n) for n in names]
            return _and(nodes) if item.cond_class is ConditionAND else _or(nodes)
        if isinstance(item, ConditionAND):
            return _and([self._condition(a, rule, detection) for a in item.args])
        if isinstance(item, ConditionOR):
            return _or([self._condition(a, rule, detection) for a in item.args])
        if isinstance(item, ConditionNOT):
            return _not(self._condition(item.args[0], rule, detection))
        raise UnsupportedValue(f"unsupported condition element {type(item).__name__}")

    def _detection(self, det: SigmaDetection, rename: Callable[[str], str]) -> Node:
        children = []
        for item in det.detection_items:
            if isinstance(item, SigmaDetection):
                children.append(self._detection(item, rename))
            else:
                children.append(self._item(item, rename))
        return _and(children) if det.item_linking is ConditionAND else _or(children)

    def _item(self, item: SigmaDetectionItem, rename: Callable[[str], str]) -> Node:
        name = rename(item.field) if item.field is not None else None
        windash = SigmaWindowsDashModifier in item.modifiers
        values: list[Node] = []
        raw_values = item.value
        if not raw_values and name is not None:
            # `field: []` is pySigma's spelling of null
            from sigma.types import SigmaNull

            raw_values = [SigmaNull()]
        for value in raw_values:
            if isinstance(value, SigmaExpansion):
                if windash:
                    # windash: every dash character of the value matches any of the five, the
                    # specification's "all permutations"; one pattern instead of 5^n strings.
                    first = value.values[0]
                    expanded: Sequence[Any] = [first] if isinstance(first, SigmaString) else []
                    expanded = expanded or value.values
                else:
                    expanded = value.values
                atoms = [
                    a
                    for v in expanded
                    for a in value_atoms(name, v, windash=windash, placeholders=self.placeholders)
                ]
            else:
                atoms = value_atoms(name, value, windash=windash, placeholders=self.placeholders)
            # a field reference names a rule field too: rename it alike (4688: Image ->
            # NewProcessName on both sides of `Image|fieldref: ParentImage`)
            atoms = [_renamed_reference(a, rename) if a.kind == "ref" else a for a in atoms]
            values.append(_or([("atom", self.atoms.add(a)) for a in atoms]))
        node = _and(values) if item.value_linking is ConditionAND else _or(values)
        return _not(node) if item.negated else node


def _renamed_reference(atom: Atom, rename: Callable[[str], str]) -> Atom:
    other, mode = atom.args
    return Atom(atom.kind, atom.field, (rename(str(other)), mode), atom.literal, atom.exact)


def rule_meta(rule: SigmaRule, output: bool = True) -> RuleMeta:
    source = RuleSource(
        (rule.logsource.product or "").lower() or None,
        (rule.logsource.category or "").lower() or None,
        (rule.logsource.service or "").lower() or None,
    )
    return RuleMeta(
        **identity(rule),
        logsource=source,
        output=output,
        description=(rule.description or "").strip(),
        author=rule.author or "",
        references=tuple(rule.references or ()),
        falsepositives=tuple(rule.falsepositives or ()),
    )


def fieldmaps_for(source: RuleSource, logsources: LogsourceMap) -> list[FieldMap]:
    """The distinct field-rename sets under which a rule can apply; () always included."""
    return [(), *logsources.fieldmaps(source.product, source.category, source.service)]


def compile_rules(
    rules: Sequence[SigmaRule],
    logsources: LogsourceMap,
    atoms: AtomTable,
    placeholders: dict[str, list[str]] | None = None,
) -> tuple[list[RuleMeta], list[Variant], list[RuleProblem]]:
    compiler = RuleCompiler(atoms, placeholders)
    metas: list[RuleMeta] = []
    variants: list[Variant] = []
    problems: list[RuleProblem] = []
    for rule in rules:
        meta = rule_meta(rule, output=getattr(rule, "_output", True))
        try:
            built: list[tuple[FieldMap, Node]] = []
            for fieldmap in fieldmaps_for(meta.logsource, logsources):
                renames = dict(fieldmap)
                tree = compiler.compile(rule, lambda f, r=renames: r.get(f, f))  # type: ignore[misc]
                built.append((fieldmap, tree))
        except (UnsupportedValue, ValueError) as exc:
            problems.append(RuleProblem(meta.path, str(exc), meta.rule_id, meta.title))
            continue
        index = len(metas)
        metas.append(meta)
        variants.extend(Variant(index, fm, tree) for fm, tree in built)
    return metas, variants, problems
