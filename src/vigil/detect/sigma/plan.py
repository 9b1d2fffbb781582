"""The detection plan: rules compiled once into routing, a multi-pattern prefilter and exact tests.

Building a plan parses and compiles every rule (seconds for thousands of rules); the plan is
plain data, so it is cached on disk and a later run with the same rules loads it at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import hyperscan

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
from vigil.detect.sigma.logsource import LogsourceMap

# The prefilter buffer holds `SEG <field id> VAL <case-folded value>` per value and ends with SEG.
# SEG and VAL become the bytes 0xFF and 0xFE, which never occur in UTF-8 text (lone surrogates
# encoded with "surrogateescape"); Hyperscan's pure-literal API cannot take NUL bytes.
SEG = "\udcff"
VAL = "\udcfe"
# Field ids: private-use characters, which case folding leaves alone.
_ID_BASE = 0xE000
_ID_LIMIT = 0xF8FF
OTHER_FIELD = chr(_ID_LIMIT)  # fields no rule names, present only for keyword searches


@dataclass
class Plan:
    """Everything matching needs, as plain picklable data."""

    rules: list[RuleMeta]
    variants: list[Variant]
    atoms: list[Atom]
    atom_literal: list[int | None]
    literals: list[bytes]
    field_ids: dict[str, str]
    covers: list[tuple[int, ...] | None]
    variant_fields: list[tuple[str | None, ...]]
    correlations: list[CorrelationSpec]
    problems: list[RuleProblem]
    files: int
    database: bytes | None = None
    stats: dict[str, Any] = field(default_factory=dict)


def _literal_bytes(literal: Literal, field_ids: dict[str, str]) -> bytes:
    text = literal.text
    if literal.anchored and literal.field is not None:
        text = SEG + field_ids[literal.field] + VAL + text
    if literal.terminated:
        text += SEG
    return encode(text)


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _cost(literal: bytes) -> float:
    """How often a literal is expected in events: short, numeric or boolean text is common."""
    core = literal.replace(b"\xff", b"").replace(b"\xfe", b"")
    if literal.startswith(b"\xff"):  # strip the private-use field id (3 bytes in UTF-8)
        core = core[3:]
    if not core or core.isdigit() or core in (b"true", b"false", b"-"):
        return 1.0
    bonus = 0.5 if literal.startswith(b"\xff") else 1.0
    return bonus / (1 + len(core))


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


def _fields(node: Node, atoms: list[Atom], atom_literal: list[int | None], out: set[str | None]) -> None:
    if node[0] == "atom":
        if atom_literal[node[1]] is not None:
            out.add(atoms[node[1]].field)
    elif node[0] in ("and", "or"):
        for child in node[1]:
            _fields(child, atoms, atom_literal, out)
    elif node[0] == "not":
        _fields(node[1], atoms, atom_literal, out)


def build(ruleset: RuleSet, logsources: LogsourceMap,
          placeholders: dict[str, list[str]] | None = None) -> Plan:
    atoms = AtomTable()
    metas, variants, problems = compile_rules(ruleset.rules, logsources, atoms, placeholders)
    correlations, corr_problems = compile_correlations(ruleset.correlations, metas)
    problems = [*ruleset.problems, *problems, *corr_problems]

    field_ids: dict[str, str] = {}
    for atom in atoms.atoms:
        if atom.literal is not None and atom.literal.field is not None:
            name = atom.literal.field
            if name not in field_ids:
                if _ID_BASE + len(field_ids) >= _ID_LIMIT:
                    raise ValueError("too many distinct fields in the rule set")
                field_ids[name] = chr(_ID_BASE + len(field_ids))
    literal_index: dict[bytes, int] = {}
    literals: list[bytes] = []
    atom_literal: list[int | None] = []
    for atom in atoms.atoms:
        if atom.literal is None:
            atom_literal.append(None)
            continue
        data = _literal_bytes(atom.literal, field_ids)
        if data not in literal_index:
            literal_index[data] = len(literals)
            literals.append(data)
        atom_literal.append(literal_index[data])
    cost = [_cost(lit) for lit in literals]
    covers = [_cover(v.tree, atom_literal, cost) for v in variants]
    variant_fields = []
    for variant in variants:
        names: set[str | None] = set()
        _fields(variant.tree, atoms.atoms, atom_literal, names)
        variant_fields.append(tuple(sorted(names, key=lambda n: (n is None, n or ""))))
    plan = Plan(
        rules=metas,
        variants=variants,
        atoms=atoms.atoms,
        atom_literal=atom_literal,
        literals=literals,
        field_ids=field_ids,
        covers=covers,
        variant_fields=variant_fields,
        correlations=correlations,
        problems=problems,
        files=ruleset.files,
    )
    plan.database = compile_database(literals)
    plan.stats = {
        "atoms": len(atoms.atoms),
        "literals": len(literals),
        "variants": len(variants),
        "uncovered_variants": sum(1 for c in covers if c is None),
    }
    return plan


def compile_database(literals: list[bytes]) -> bytes | None:
    if not literals:
        return None
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(
        expressions=literals,
        ids=list(range(len(literals))),
        elements=len(literals),
        flags=hyperscan.HS_FLAG_SINGLEMATCH,
        literal=True,
    )
    return hyperscan.dumpb(database)  # type: ignore[no-any-return]
