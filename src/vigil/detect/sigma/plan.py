"""The detection plan: rules compiled once into routing, a multi-pattern prefilter and exact tests.

Building a plan parses and compiles every rule (seconds for thousands of rules); the plan is
plain data, so it is cached on disk and a later run with the same rules loads it at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import hyperscan
import orjson

from vigil.detect.sigma.atoms import Atom, Literal
from vigil.detect.sigma.compiler import (
    AtomTable,
    Node,
    RuleMeta,
    Variant,
    compile_rules,
)
from vigil.detect.sigma.correlation import CorrelationSpec, compile_correlations
from vigil.detect.sigma.loader import RuleProblem, RuleSet
from vigil.detect.sigma.logsource import LogsourceMap, RuleSource

# The prefilter buffer holds `SEG <field id> VAL <case-folded value>` per value and ends with SEG.
# All ASCII, so that for the usual all-ASCII event the buffer is an ASCII string, which Python
# case-folds and encodes at memory speed. (Hyperscan's pure-literal API cannot take NUL.) A value
# that itself holds SEG or VAL is caught and neutralised when the buffer is built.
SEG = "\x1e"
VAL = "\x1f"
# Field ids: two characters that case folding leaves alone.
_ID_CHARS = "0123456789abcdefghijklmnopqrstuvwxyz!#$%&()*+,-./:;<=>?@[]^_`{|}"
OTHER_FIELD = "~~"  # fields no rule names, present only for keyword searches
# Text that says little about an event because most events of its kind carry it: system paths,
# extensions, registry roots. A literal is judged by what is left without it.
COMMON_TEXT = re.compile(
    rb"c:\\windows\\(?:system32|syswow64)\\?|c:\\windows\\?|c:\\program files(?: \(x86\))?\\"
    rb"|:?\\windows\\(?:system32|syswow64)\\?|\\windows\\|\\(?:system32|syswow64)\\?"
    rb"|c:\\users\\|c:\\programdata\\"
    # the processes behind most process events on any Windows host
    rb"|\\(?:cmd|powershell|conhost|svchost)\.exe"
    rb"|\\registry\\machine\\|\\registry\\user\\|hklm\\|hkcu\\|hku\\"
    rb"|\\?software\\microsoft\\windows(?: nt)?\\currentversion\\|\\?software\\microsoft\\"
    rb"|(?:ntdll|kernelbase|kernel32|wow64|wow64win|wow64cpu)\.dll\+?|\.exe|\.dll|\.sys"
)
# A cover with more common literals than this is worse than testing the rule on every event.
MAX_COMMON_IN_COVER = 2


@dataclass
class Plan:
    """Everything matching needs, as plain picklable data."""

    rules: list[RuleMeta]
    variants: list[Variant]
    atoms: list[Atom]
    atom_literal: list[int | None]  # the literal every match of the atom holds
    atom_gate: list[int | None]  # that literal when the prefilter looks for it (a cover literal)
    literals: list[bytes]
    field_ids: dict[str, str]
    covers: list[tuple[int, ...] | None]
    variant_fields: list[tuple[str | None, ...]]
    correlations: list[CorrelationSpec]
    problems: list[RuleProblem]
    files: int
    # Rules are grouped by logsource; each group has its own prefilter databases (serialised
    # Hyperscan), one over the looked-at field values and one over all values for keywords,
    # so an event is only scanned for literals its own rules can use.
    groups: list[RuleSource] = field(default_factory=list)
    variant_group: list[int] = field(default_factory=list)
    group_databases: list[tuple[bytes | None, bytes | None]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


def _field_id(index: int) -> str:
    base = len(_ID_CHARS)
    if index >= base * base:
        raise ValueError("too many distinct fields in the rule set")
    return _ID_CHARS[index // base] + _ID_CHARS[index % base]


def _literal_bytes(literal: Literal, field_ids: dict[str, str]) -> bytes:
    text = literal.text
    if literal.field is None:
        # keywords are looked for in the event serialised as JSON (see engine), so in their
        # JSON-escaped form; escaping maps each character on its own, keeping substrings
        return orjson.dumps(text)[1:-1]
    if literal.anchored:
        text = SEG + field_ids[literal.field] + VAL + text
    if literal.terminated:
        text += SEG
    return encode(text)


def _holds_separator(literal: Literal) -> bool:
    """A field literal holding SEG or VAL could be found across two values of the buffer (whose
    values come in no set order); its atom is tested directly instead."""
    return literal.field is not None and (SEG in literal.text or VAL in literal.text)


def encode(text: str) -> bytes:
    return text.encode("utf-8")


def _cost(literal: bytes, routing_ids: set[bytes]) -> float:
    """How often a literal is expected in events (for choosing between covers). Very short
    text, numbers and values of the fields routing already decided (Channel, EventID, ...)
    are common; long and non-ASCII text is rare."""
    core = literal.replace(b"\x1e", b"").replace(b"\x1f", b"")
    anchored = literal.startswith(b"\x1e")
    if anchored:  # strip the two-character field id
        if literal[1:3] in routing_ids:
            return 20.0
        core = core[2:]
    if not core.isascii():
        return 0.01
    if len(core) <= 2 or core in (b"true", b"false") or (core.isdigit() and len(core) <= 4):
        return 1.0
    informative = len(COMMON_TEXT.sub(b"", core))
    if informative <= 2:
        return 1.0
    return (0.5 if anchored else 1.0) / (1 + informative)


def _common(cost: float) -> bool:
    return cost >= 1.0


def _cover(node: Node, atom_literal: list[int | None], cost: list[float]) -> tuple[int, ...] | None:
    """Literals of which at least one is present whenever the tree is true (None: no such set)."""
    kind = node[0]
    if kind == "atom":
        lit = atom_literal[node[1]]
        return None if lit is None else (lit,)
    if kind == "or":
        union: set[int] = set()
        for child in node[1]:
            sub = _cover(child, atom_literal, cost)
            if sub is None:
                return None
            union.update(sub)
        return tuple(sorted(union))
    if kind == "and":
        best: tuple[int, ...] | None = None
        best_cost = 0.0
        for child in node[1]:
            sub = _cover(child, atom_literal, cost)
            if sub is None:
                continue
            total = sum(cost[i] for i in sub)
            if best is None or total < best_cost:
                best, best_cost = sub, total
        return best
    if kind == "const" and node[1] is False:
        return ()
    return None  # not, const true


def _gated_atoms(node: Node, gate: list[int | None]) -> Iterator[int]:
    if node[0] == "atom":
        if gate[node[1]] is not None:
            yield node[1]
    elif node[0] in ("and", "or"):
        for child in node[1]:
            yield from _gated_atoms(child, gate)
    elif node[0] == "not":
        yield from _gated_atoms(node[1], gate)


def _fields(node: Node, atoms: list[Atom], gate: list[int | None], out: set[str | None]) -> None:
    if node[0] == "atom":
        if gate[node[1]] is not None:
            out.add(atoms[node[1]].field)
    elif node[0] in ("and", "or"):
        for child in node[1]:
            _fields(child, atoms, gate, out)
    elif node[0] == "not":
        _fields(node[1], atoms, gate, out)


def build(
    ruleset: RuleSet, logsources: LogsourceMap, placeholders: dict[str, list[str]] | None = None
) -> Plan:
    atoms = AtomTable()
    metas, variants, problems = compile_rules(ruleset.rules, logsources, atoms, placeholders)
    correlations, corr_problems = compile_correlations(ruleset.correlations, metas)
    problems = [*ruleset.problems, *problems, *corr_problems]

    field_ids: dict[str, str] = {}
    for atom in atoms.atoms:
        if atom.literal is not None and atom.literal.field is not None:
            name = atom.literal.field
            if name not in field_ids:
                field_ids[name] = _field_id(len(field_ids))
    literal_index: dict[bytes, int] = {}
    literals: list[bytes] = []
    atom_literal: list[int | None] = []
    for atom in atoms.atoms:
        if atom.literal is None or _holds_separator(atom.literal):
            atom_literal.append(None)
            continue
        data = _literal_bytes(atom.literal, field_ids)
        if data not in literal_index:
            literal_index[data] = len(literals)
            literals.append(data)
        atom_literal.append(literal_index[data])
    routing_ids = {
        encode(field_ids[name])
        for pmap in logsources.products.values()
        for name in pmap.key_fields
        if name in field_ids
    }
    cost = [_cost(lit, routing_ids) for lit in literals]
    covers = [_cover(v.tree, atom_literal, cost) for v in variants]
    # A cover made of common literals costs every event a prefilter hit; testing such a rule
    # on each event of its logsource is cheaper.
    covers = [
        c if c is None or sum(_common(cost[i]) for i in c) <= MAX_COMMON_IN_COVER else None
        for c in covers
    ]
    # The prefilter looks only for cover literals: they pick candidate rules, and atoms with
    # those literals get a free first check. Other atoms are tested directly.
    scanned = {lit for cover in covers if cover for lit in cover}
    atom_gate = [lit if lit in scanned else None for lit in atom_literal]
    variant_fields = []
    for variant in variants:
        names: set[str | None] = set()
        _fields(variant.tree, atoms.atoms, atom_gate, names)
        variant_fields.append(tuple(sorted(names, key=lambda n: (n is None, n or ""))))
    plan = Plan(
        rules=metas,
        variants=variants,
        atoms=atoms.atoms,
        atom_literal=atom_literal,
        atom_gate=atom_gate,
        literals=literals,
        field_ids=field_ids,
        covers=covers,
        variant_fields=variant_fields,
        correlations=correlations,
        problems=problems,
        files=ruleset.files,
    )
    group_index: dict[RuleSource, int] = {}
    group_literals: list[tuple[set[int], set[int]]] = []
    for variant in variants:
        source = metas[variant.rule].logsource
        if source not in group_index:
            group_index[source] = len(plan.groups)
            plan.groups.append(source)
            group_literals.append((set(), set()))
        group = group_index[source]
        plan.variant_group.append(group)
        # every gated atom's literal, not just the cover's: a gate is only sound if the
        # literal is looked for wherever the atom is tested
        on_fields, on_keywords = group_literals[group]
        for atom_index in _gated_atoms(variant.tree, atom_gate):
            gate = atom_gate[atom_index]
            assert gate is not None
            (on_keywords if atoms.atoms[atom_index].field is None else on_fields).add(gate)
    plan.group_databases = [
        (
            compile_database({i: literals[i] for i in sorted(on_fields)}),
            compile_database({i: literals[i] for i in sorted(on_keywords)}),
        )
        for on_fields, on_keywords in group_literals
    ]
    plan.stats = {
        "atoms": len(atoms.atoms),
        "literals": len(literals),
        "scanned_literals": len(scanned),
        "groups": len(plan.groups),
        "variants": len(variants),
        "uncovered_variants": sum(1 for c in covers if c is None),
    }
    return plan


def compile_database(literals: dict[int, bytes]) -> bytes | None:
    if not literals:
        return None
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(
        expressions=list(literals.values()),
        ids=list(literals),
        elements=len(literals),
        flags=hyperscan.HS_FLAG_SINGLEMATCH,
        literal=True,
    )
    return hyperscan.dumpb(database)
