"""The ATT&CK Enterprise matrix as Vigil covers it: each technique with the loaded rules that
name it or one of its sub-techniques, and what an exercise made of it (tested, detected,
missed), under its tactics in kill-chain order; and an exercise's gaps with their cause.

    found = matrix(loaded.plan.rules, results["by_technique"])
    found["tactics"][0]["techniques"]       # ["T1595", ...] (the columns' cells, by name)
    found["techniques"]["T1003"]["state"]   # "detected", "missed", "partly", "rule" or "none"

A technique's cell stands for it and its sub-techniques: its rules are theirs together, and
its exercise figures their sums. An exercise entry that names a tactic (a scenario that
expects a tactic only) is counted on the tactic's column; one that names nothing of this
ATT&CK release is listed apart (`unplaced`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from vigil.intel.attack import TECHNIQUE_ID, AttackKB, RuleMeta, Technique, rule_techniques

# A cell's colour: an exercise's verdict first, else whether a rule names it
STATES = ("detected", "partly", "missed", "rule", "none")


def state(tested: int, detected: int, rules: int) -> str:
    if tested:
        return "detected" if detected >= tested else "missed" if detected == 0 else "partly"
    return "rule" if rules else "none"


def matrix(
    rules: Iterable[RuleMeta],
    tested: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    everything: bool = False,
    kb: AttackKB | None = None,
) -> dict[str, Any]:
    """The matrix of the techniques a rule names or the exercise tested (`everything`: every
    active technique). `tested` is an exercise's `by_technique` (technique id or tactic →
    {"tested", "detected", ...})."""
    kb = kb or AttackKB.load()
    named = rule_techniques(rules, kb=kb)
    scored: dict[str, tuple[int, int]] = {}
    by_tactic: dict[str, list[int]] = {}
    unplaced: list[dict[str, Any]] = []
    shortnames = {t.shortname for t in kb.tactics}
    for key, row in (tested or {}).items():
        figures = (int(row.get("tested", 0)), int(row.get("detected", 0)))
        ident, shortname = key.strip().upper(), key.strip().lower().replace("_", "-")
        if TECHNIQUE_ID.fullmatch(ident) and kb.active(ident):
            scored[ident] = figures
        elif shortname in shortnames:
            totals = by_tactic.setdefault(shortname, [0, 0])
            totals[0], totals[1] = totals[0] + figures[0], totals[1] + figures[1]
        else:
            unplaced.append({"key": key, "tested": figures[0], "detected": figures[1]})
    cells: dict[str, dict[str, Any]] = {}
    for technique in kb.techniques:
        if technique.parent is not None:
            continue
        family = (technique.id, *kb.subtechniques(technique.id))
        if everything or any(i in named or i in scored for i in family):
            cells[technique.id] = _cell(kb, technique, family, named, scored)
    columns = []
    for tactic in kb.tactics:
        totals = by_tactic.get(tactic.shortname, [0, 0])
        columns.append(
            {
                "id": tactic.id,
                "shortname": tactic.shortname,
                "name": tactic.name,
                "tested": totals[0],
                "detected": totals[1],
                "techniques": sorted(
                    (i for i, c in cells.items() if tactic.shortname in c["tactics"]),
                    key=lambda i: cells[i]["name"].casefold(),
                ),
            }
        )
    parents = [t for t in kb.techniques if t.parent is None]
    states = [c["state"] for c in cells.values()]
    return {
        "attack": kb.version,
        "tactics": columns,
        "techniques": cells,
        "unplaced": unplaced,
        "counts": {
            "techniques": len(parents),
            "with_rules": sum(1 for c in cells.values() if c["rules"]),
            "tested": sum(1 for c in cells.values() if c["tested"]),
            "detected": states.count("detected"),
            "partly": states.count("partly"),
            "missed": states.count("missed"),
            "rules": len({r.rule_id for found in named.values() for r in found}),
        },
    }


def _cell(
    kb: AttackKB,
    technique: Technique,
    family: tuple[str, ...],
    named: Mapping[str, list[RuleMeta]],
    scored: Mapping[str, tuple[int, int]],
) -> dict[str, Any]:
    rules: dict[str, dict[str, Any]] = {}
    subtechniques = []
    for ident in family:
        for rule in named.get(ident, ()):
            entry = rules.setdefault(
                rule.rule_id, {"rule_id": rule.rule_id, "title": rule.title, "techniques": []}
            )
            entry["techniques"].append(ident)
        if ident != technique.id and (ident in named or ident in scored):
            tested, detected = scored.get(ident, (0, 0))
            subtechniques.append(
                {
                    "id": ident,
                    "name": kb.technique(ident).name,
                    "rules": len(named.get(ident, ())),
                    "tested": tested,
                    "detected": detected,
                    "state": state(tested, detected, len(named.get(ident, ()))),
                }
            )
    tested = sum(scored.get(i, (0, 0))[0] for i in family)
    detected = sum(scored.get(i, (0, 0))[1] for i in family)
    return {
        "id": technique.id,
        "name": technique.name,
        "tactics": list(technique.tactics),
        "state": state(tested, detected, len(rules)),
        "rules": sorted(rules.values(), key=lambda r: (r["title"] or r["rule_id"]).casefold()),
        "tested": tested,
        "detected": detected,
        "subtechniques": subtechniques,
    }


def gaps(found: Iterable[Mapping[str, Any]], *, kb: AttackKB | None = None) -> list[dict[str, Any]]:
    """An exercise's gaps (as `vigil.exercise.run.gaps` writes them) with the technique's
    name and the cause in a word: `no rule` (none loaded names it) or `not fired` (rules name
    it but none fired: their log source is missing, or the behaviour differs)."""
    kb = kb or AttackKB.load()
    out = []
    for gap in found:
        key = str(gap.get("technique", ""))
        technique = kb.active(key) if TECHNIQUE_ID.fullmatch(key.upper()) else None
        out.append(
            {
                **gap,
                "name": technique.name if technique is not None else key,
                "cause": "no rule" if not gap.get("rules") else "not fired",
            }
        )
    return out


__all__ = ["STATES", "gaps", "matrix", "state"]
