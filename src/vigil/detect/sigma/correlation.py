"""Sigma correlation rules: event_count, value_count, value_sum, value_avg, temporal and
temporal_ordered over sliding windows per group-by key, chained correlations included."""

from __future__ import annotations

import operator
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sigma.correlations import (
    CorrelationConditionAND,
    CorrelationConditionNOT,
    CorrelationConditionOR,
    SigmaCorrelationRule,
    SigmaExtendedCorrelationCondition,
    SigmaRuleReference,
)

from vigil.detect.sigma.loader import RANGE_KEY, RuleProblem, identity, rule_path

SUPPORTED = ("event_count", "value_count", "value_sum", "value_avg", "temporal", "temporal_ordered")
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "eq": operator.eq,
    "neq": operator.ne,
}
# Conditions a growing window can only start to meet, never stop meeting: they fire at once.
MONOTONE = {"gt", "gte"}


@dataclass(frozen=True, slots=True)
class CorrelationSpec:
    """A correlation rule as plain data. `inputs` are ("rule", index) or ("corr", index)."""

    rule_id: str
    title: str
    level: str
    status: str
    tags: tuple[str, ...]
    path: str
    name: str | None
    type: str
    inputs: tuple[tuple[str, int], ...]
    input_names: tuple[tuple[str, ...], ...]  # every name each input is known by
    group_by: tuple[str, ...]
    aliases: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]  # alias -> (input name, field)
    timespan: float
    conditions: tuple[tuple[str, float], ...]
    value_fields: tuple[str, ...]
    expression: Any = None  # extended temporal condition, nested tuples
    generate: bool = False
    output: bool = True


def _names(rule: Any) -> tuple[str, ...]:
    names = []
    if getattr(rule, "id", None):
        names.append(str(rule.id))
    if getattr(rule, "name", None):
        names.append(rule.name)
    return tuple(names)


def _expression(item: Any) -> Any:
    if isinstance(item, SigmaRuleReference):
        return ("ref", item.reference)
    if isinstance(item, CorrelationConditionNOT):
        return ("not", _expression(item.args[0]))
    if isinstance(item, CorrelationConditionAND | CorrelationConditionOR):
        kind = "and" if isinstance(item, CorrelationConditionAND) else "or"
        return (kind, *[_expression(a) for a in item.args])
    raise ValueError(f"unsupported correlation condition element {type(item).__name__}")


def compile_correlations(
    rules: Sequence[SigmaCorrelationRule], metas: Sequence[Any]
) -> tuple[list[CorrelationSpec], list[RuleProblem]]:
    """Correlation specs in dependency order; base rules are found among `metas`."""
    by_name: dict[str, tuple[str, int]] = {}
    for index, meta in enumerate(metas):
        by_name[meta.rule_id] = ("rule", index)
        if meta.name:
            by_name[meta.name] = ("rule", index)
    specs: list[CorrelationSpec] = []
    problems: list[RuleProblem] = []
    pending = list(rules)
    while pending:
        progressed = False
        for rule in list(pending):
            refs = [r.reference for r in (rule.rules or [])]
            if not all(ref in by_name for ref in refs):
                continue
            pending.remove(rule)
            progressed = True
            try:
                spec = _spec(rule, refs, by_name)
            except ValueError as exc:
                problems.append(RuleProblem(rule_path(rule), str(exc), str(rule.id), rule.title))
                continue
            for name in _names(rule):
                by_name[name] = ("corr", len(specs))
            specs.append(spec)
        if not progressed:
            break
    for rule in pending:
        missing = [r.reference for r in (rule.rules or []) if r.reference not in by_name]
        problems.append(
            RuleProblem(
                rule_path(rule),
                "references rules that could not be used: " + ", ".join(missing),
                str(rule.id),
                rule.title,
            )
        )
    return specs, problems


def _spec(
    rule: SigmaCorrelationRule, refs: list[str], by_name: dict[str, tuple[str, int]]
) -> CorrelationSpec:
    kind = str(rule.type)
    if kind not in SUPPORTED:
        raise ValueError(
            f"correlation type {kind} is not supported (supported: " + ", ".join(SUPPORTED) + ")"
        )
    condition = rule.condition
    conditions: list[tuple[str, float]] = []
    value_fields: tuple[str, ...] = ()
    expression = None
    if isinstance(condition, SigmaExtendedCorrelationCondition):
        expression = _expression(condition.parsed)
        refs = refs or sorted(set(condition.get_referenced_rules()))
    elif condition is not None:
        extra = (rule.custom_attributes or {}).get(RANGE_KEY)
        if isinstance(extra, dict):
            conditions = [(op, float(v)) for op, v in extra.items() if op in OPERATORS]
        else:
            conditions = [(condition.op.name.lower(), float(condition.count))]
        if condition.fieldref:
            value_fields = tuple(
                [condition.fieldref] if isinstance(condition.fieldref, str) else condition.fieldref
            )
    if kind in ("value_count", "value_sum", "value_avg") and not value_fields:
        raise ValueError(f"{kind} needs `field` in its condition")
    if not refs:
        raise ValueError("correlation names no rules")
    inputs = []
    names = []
    for ref in refs:
        if ref not in by_name:
            raise ValueError(f"references unknown rule {ref}")
        inputs.append(by_name[ref])
        names.append(tuple(n for n, target in by_name.items() if target == by_name[ref]))
    if kind in ("temporal", "temporal_ordered") and not conditions and expression is None:
        conditions = [("gte", float(len(inputs)))]
    aliases = tuple(
        (a.alias, tuple((ref.reference, fld) for ref, fld in a.mapping.items()))
        for a in (rule.aliases.aliases.values() if rule.aliases else [])
    )
    return CorrelationSpec(
        **identity(rule),
        type=kind,
        inputs=tuple(inputs),
        input_names=tuple(names),
        group_by=tuple(rule.group_by or ()),
        aliases=aliases,
        timespan=float(rule.timespan.seconds),
        conditions=tuple(conditions),
        value_fields=value_fields,
        expression=expression,
        generate=bool(rule.generate),
        output=bool(getattr(rule, "_output", True)),
    )


@dataclass(slots=True)
class Hit:
    """One input to a correlation: a rule match or a fired correlation."""

    time: float
    source: tuple[str, int]
    fields: dict[str, Any]
    refs: tuple[Any, ...]  # what produced it (event references), passed through to output


@dataclass(slots=True)
class Fired:
    """A correlation that met its condition: the window, the group and the hits in it."""

    spec_index: int
    spec: CorrelationSpec
    group: dict[str, Any]
    first: float
    last: float
    value: float
    hits: list[Hit]


def _chained(fired: Fired) -> Hit:
    """A correlation that fired, as a hit for correlations built on it."""
    return Hit(
        fired.last,
        ("corr", fired.spec_index),
        fired.group,
        tuple(r for h in fired.hits for r in h.refs),
    )


@dataclass
class _Window:
    items: deque[tuple[int, Hit]] = field(default_factory=deque)


class CorrelationEngine:
    """Feeds rule matches in time order; yields correlations as they fire.

    State is bounded by the rules' timespans: a window's hits older than its timespan are
    dropped as its group sees new hits, and every so often (once event time has moved on by
    the shortest timespan) windows that time has left behind are closed: judged if their
    condition is judged on closing, dropped otherwise. A group seen once does not stay in
    memory for the rest of a stream."""

    def __init__(self, specs: Sequence[CorrelationSpec]) -> None:
        self.specs = list(specs)
        self.listeners: dict[tuple[str, int], list[tuple[int, int]]] = {}
        for index, spec in enumerate(self.specs):
            for position, source in enumerate(spec.inputs):
                self.listeners.setdefault(source, []).append((index, position))
        self.windows: dict[tuple[int, tuple[Any, ...]], _Window] = {}
        self._sweep_every = max(1.0, min((s.timespan for s in self.specs), default=1.0))
        self._swept_at: float | None = None

    # --- kept state (so that windows span a restart) --------------------------------------

    def state(self) -> dict[str, Any]:
        """The open windows as plain data (JSON), by correlation rule id, so that a restart
        with the same rules takes them up (`restore`)."""
        return {
            "swept_at": self._swept_at,
            "windows": [
                {
                    "rule": self.specs[spec_index].rule_id,
                    "key": list(key),
                    "items": [[p, h.time, h.fields, list(h.refs)] for p, h in window.items],
                }
                for (spec_index, key), window in self.windows.items()
                if window.items
            ],
        }

    def restore(self, state: dict[str, Any]) -> int:
        """Take up windows kept by `state`; those of rules no longer loaded are dropped.
        Windows taken up."""
        index = {spec.rule_id: i for i, spec in enumerate(self.specs)}
        self.windows.clear()
        self._swept_at = state.get("swept_at")
        for item in state.get("windows", ()):
            spec_index = index.get(item["rule"])
            if spec_index is None:
                continue
            inputs = len(self.specs[spec_index].inputs)
            window = _Window()
            for position, at, fields, refs in item["items"]:
                if 0 <= position < inputs:
                    refs = tuple(tuple(r) if isinstance(r, list) else r for r in refs)
                    window.items.append((position, Hit(at, ("kept", -1), fields, refs)))
            if window.items:
                self.windows[(spec_index, tuple(item["key"]))] = window
        return len(self.windows)

    def wants(self, rule_index: int) -> bool:
        return ("rule", rule_index) in self.listeners

    def feed(self, hit: Hit) -> Iterator[Fired]:
        queue = [hit]
        if self._swept_at is None:
            self._swept_at = hit.time
        elif hit.time - self._swept_at >= self._sweep_every:
            self._swept_at = hit.time
            for fired in self._sweep(hit.time):
                yield fired
                queue.append(_chained(fired))
        while queue:
            current = queue.pop()
            for spec_index, position in self.listeners.get(current.source, ()):
                for fired in self._feed_one(spec_index, position, current):
                    yield fired
                    queue.append(_chained(fired))

    def _sweep(self, now: float) -> Iterator[Fired]:
        """Close the windows whose last chance to fire is before `now`."""
        for (spec_index, key), window in list(self.windows.items()):
            spec = self.specs[spec_index]
            items = window.items
            if _monotone(spec):
                if not items or items[-1][1].time < now - spec.timespan:
                    del self.windows[(spec_index, key)]
            elif not items or now > items[0][1].time + spec.timespan:
                fired = self._judge(spec_index, key, list(items)) if items else None
                del self.windows[(spec_index, key)]
                if fired:
                    yield fired

    def finish(self) -> Iterator[Fired]:
        """End of input: windows still open are judged on what they hold."""
        for (spec_index, key), window in list(self.windows.items()):
            spec = self.specs[spec_index]
            if window.items and not _monotone(spec):
                fired = self._judge(spec_index, key, list(window.items))
                if fired:
                    yield fired
        self.windows.clear()

    def _group(self, spec: CorrelationSpec, position: int, hit: Hit) -> tuple[Any, ...] | None:
        names = spec.input_names[position]
        key = []
        for name in spec.group_by:
            source_field = name
            for alias, mapping in spec.aliases:
                if alias == name:
                    for rule_name, fld in mapping:
                        if rule_name in names:
                            source_field = fld
            value = hit.fields.get(source_field)
            if value is None:
                value = hit.fields.get(name)
            if value is None:
                return None  # events without the group-by fields do not group
            key.append(value if isinstance(value, str | int | float) else str(value))
        return tuple(key)

    def _feed_one(self, spec_index: int, position: int, hit: Hit) -> Iterator[Fired]:
        spec = self.specs[spec_index]
        key = self._group(spec, position, hit)
        if key is None:
            return
        window = self.windows.setdefault((spec_index, key), _Window())
        items = window.items
        if _monotone(spec):
            while items and items[0][1].time < hit.time - spec.timespan:
                items.popleft()
            items.append((position, hit))
            fired = self._judge(spec_index, key, list(items))
            if fired:
                items.clear()
                yield fired
            return
        # Non-monotone conditions (upper bounds, eq): windows from their first hit, judged
        # once they close.
        if items and hit.time > items[0][1].time + spec.timespan:
            fired = self._judge(spec_index, key, list(items))
            items.clear()
            if fired:
                yield fired
        items.append((position, hit))

    def _judge(
        self, spec_index: int, key: tuple[Any, ...], items: list[tuple[int, Hit]]
    ) -> Fired | None:
        spec = self.specs[spec_index]
        hits = [h for _, h in items]
        value = _measure(spec, items)
        if value is None:
            return None
        if spec.expression is not None:
            present = {name for p, _ in items for name in spec.input_names[p]}
            if not _evaluate(spec.expression, present):
                return None
            if spec.type == "temporal_ordered" and not _in_order(spec, items):
                return None
        elif not all(OPERATORS[op](value, bound) for op, bound in spec.conditions):
            return None
        group = dict(zip(spec.group_by, key, strict=True))
        return Fired(spec_index, spec, group, hits[0].time, hits[-1].time, value, hits)


def _monotone(spec: CorrelationSpec) -> bool:
    if spec.expression is not None:
        return True
    return all(op in MONOTONE for op, _ in spec.conditions)


def _measure(spec: CorrelationSpec, items: list[tuple[int, Hit]]) -> float | None:
    kind = spec.type
    if kind == "event_count":
        return float(len(items))
    if kind == "value_count":
        values = set()
        for _, hit in items:
            value = tuple(hit.fields.get(f) for f in spec.value_fields)
            if all(v is not None for v in value):
                values.add(tuple(str(v) for v in value))
        return float(len(values))
    if kind in ("value_sum", "value_avg"):
        numbers = []
        for _, hit in items:
            try:
                numbers.append(float(hit.fields.get(spec.value_fields[0])))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                continue
        if not numbers:
            return None
        return sum(numbers) if kind == "value_sum" else sum(numbers) / len(numbers)
    if kind == "temporal":
        return float(len({position for position, _ in items}))
    # temporal_ordered: the longest prefix of the input list seen in order
    return float(_ordered_prefix(len(spec.inputs), items))


def _ordered_prefix(count: int, items: list[tuple[int, Hit]]) -> int:
    wanted = 0
    for position, _ in sorted(items, key=lambda item: item[1].time):
        if wanted < count and position == wanted:
            wanted += 1
    return wanted


def _in_order(spec: CorrelationSpec, items: list[tuple[int, Hit]]) -> bool:
    return _ordered_prefix(len(spec.inputs), items) == len(spec.inputs)


def _evaluate(expression: Any, present: set[str]) -> bool:
    kind = expression[0]
    if kind == "ref":
        return expression[1] in present
    if kind == "not":
        return not _evaluate(expression[1], present)
    results = [_evaluate(e, present) for e in expression[1:]]
    return all(results) if kind == "and" else any(results)
