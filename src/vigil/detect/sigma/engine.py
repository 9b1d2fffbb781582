"""Running a plan over events: route, prefilter (Hyperscan), then exact tests of candidates."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import hyperscan
import orjson

from vigil.detect.sigma.compiler import Node
from vigil.detect.sigma.evaluate import EventView, Test, atom_test, node_test, texts_of
from vigil.detect.sigma.folding import fold
from vigil.detect.sigma.logsource import KEY_TYPES, EventClass, LogsourceMap
from vigil.detect.sigma.plan import OTHER_FIELD, SEG, VAL, Plan
from vigil.events import Event


@dataclass(slots=True)
class Route:
    """What matching does for one class of event (same product, channel, event id, ...)."""

    variants: tuple[int, ...]
    prefixes: dict[str, str]  # field -> "SEG <id> VAL" for fields the prefilter must see
    field_scans: tuple[Any, ...]  # Hyperscan databases to run over those field values
    keyword_scans: tuple[Any, ...]  # databases to run over every value (keyword rules)
    by_literal: dict[int, tuple[int, ...]]  # literal id -> variants it makes candidates
    always: tuple[int, ...]  # variants with no literal cover: tested on every event


@dataclass(slots=True)
class Match:
    """A variant whose condition held on an event."""

    event: Event
    rule: int
    variant: int
    matched_fields: dict[str, Any]
    fieldmap: tuple[tuple[str, str], ...] = ()

    def rule_fields(self) -> dict[str, Any]:
        """The event's fields, plus each renamed field under the rule's name for it (so a
        correlation grouping by `Image` groups Security 4688 events by NewProcessName)."""
        fields = self.event.fields
        if not self.fieldmap:
            return fields
        extra = {rule: fields[event] for rule, event in self.fieldmap if event in fields}
        return {**fields, **extra}


class Engine:
    """Matches events against a compiled plan. Not thread-safe (one Hyperscan scratch)."""

    def __init__(self, plan: Plan, logsources: LogsourceMap) -> None:
        self.plan = plan
        self.logsources = logsources
        # Tests are built on first use: a scan of one kind of log touches a fraction of rules.
        self.atom_tests = _AtomTests(plan)
        self.variant_tests: list[Test | None] = [None] * len(plan.variants)
        self.routes: dict[EventClass, Route] = {}
        self.routes_built = 0
        self._routes_by_key: dict[tuple[Any, ...], Route] = {}
        self._key_fields = {name: pmap.key_fields for name, pmap in logsources.products.items()}
        self._variants_of_group: list[list[int]] = [[] for _ in plan.groups]
        for index, group in enumerate(plan.variant_group):
            self._variants_of_group[group].append(index)
        self._group_databases: dict[int, tuple[Any, Any]] = {}
        self._routes_by_variants: dict[tuple[int, ...], Route] = {}
        self._routing_fields = frozenset(f for fields in self._key_fields.values() for f in fields)
        self._outlines: list[Node | None] = [None] * len(plan.variants)
        self._outlines_of_route: dict[tuple[int, ...], list[tuple[Node, list[int]]]] = {}
        self._atom_values: dict[tuple[int, Any], bool] = {}
        self._ungated_tests: dict[int, Test] = {}
        self._positives: dict[int, tuple[int, ...]] = {}
        self.counters = {"events": 0, "routed": 0, "candidates": 0, "matches": 0}

    @staticmethod
    def _on_match(present: set[int]) -> Any:
        """The Hyperscan callback of one `match` call: collects the ids of literals seen."""
        add = present.add

        def on_match(literal: int, start: int, end: int, flags: int, context: Any) -> None:
            add(literal)

        return on_match

    def variant_test(self, index: int) -> Test:
        test = self.variant_tests[index]
        if test is None:
            plan = self.plan
            # the cheapest children first: literal-gated atoms fail fast
            tree = _ordered(plan.variants[index].tree, plan.atom_gate)
            test = node_test(tree, self.atom_tests, plan.atoms, plan.atom_gate)
            self.variant_tests[index] = test
        return test

    def group_databases(self, group: int) -> tuple[Any, Any]:
        found = self._group_databases.get(group)
        if found is None:
            on_fields, on_keywords = self.plan.group_databases[group]
            found = (_load(on_fields), _load(on_keywords))
            self._group_databases[group] = found
        return found

    def route(self, event_class: EventClass) -> Route:
        found = self.routes.get(event_class)
        if found is None:
            found = self._build_route(event_class)
            self.routes[event_class] = found
        return found

    def _build_route(self, event_class: EventClass) -> Route:
        plan = self.plan
        chosen: list[int] = []
        for group, source in enumerate(plan.groups):
            fieldmap = source.fieldmap(event_class)
            if fieldmap is None:
                continue
            for variant_index in self._variants_of_group[group]:
                if plan.variants[variant_index].fieldmap == fieldmap:
                    chosen.append(variant_index)
        chosen.sort()
        return self._route_of(tuple(chosen))

    def _route_of(self, chosen: tuple[int, ...]) -> Route:
        """The route that tests these variants (sorted); routes with the same variants are one."""
        found = self._routes_by_variants.get(chosen)
        if found is not None:
            return found
        plan = self.plan
        prefixes: dict[str, str] = {}
        by_literal: dict[int, list[int]] = {}
        always: list[int] = []
        databases = [
            self.group_databases(g) for g in sorted({plan.variant_group[v] for v in chosen})
        ]
        for variant_index in chosen:
            for name in plan.variant_fields[variant_index]:
                if name is not None and name not in prefixes:
                    prefixes[name] = SEG + plan.field_ids.get(name, OTHER_FIELD) + VAL
            cover = plan.covers[variant_index]
            if cover is None:
                always.append(variant_index)
            else:
                for literal in cover:
                    by_literal.setdefault(literal, []).append(variant_index)
        for variant_index in chosen:
            self.variant_test(variant_index)
        self.routes_built += 1
        found = Route(
            variants=chosen,
            prefixes=prefixes,
            field_scans=tuple(on_fields for on_fields, _ in databases if on_fields),
            keyword_scans=tuple(on_keywords for _, on_keywords in databases if on_keywords),
            by_literal={k: tuple(v) for k, v in by_literal.items()},
            always=tuple(always),
        )
        self._routes_by_variants[chosen] = found
        return found

    def _narrowed(self, route: Route, known: dict[str, Any]) -> Route:
        """The route without the variants that cannot hold given the values of the routing
        fields (`EventID: 4738` on a 4624 event): every event with these values takes it."""
        outlines = self._outlines_of_route.get(route.variants)
        if outlines is None:
            grouped: dict[Node, list[int]] = {}
            for variant_index in route.variants:
                outline = self._outline(variant_index)
                if outline is not _UNKNOWN:
                    grouped.setdefault(outline, []).append(variant_index)
            outlines = list(grouped.items())
            self._outlines_of_route[route.variants] = outlines
        dead: set[int] = set()
        view = EventView(known, set())  # atoms of routing fields read only their own field
        for outline, variants in outlines:
            if self._settled(outline, view) is False:
                dead.update(variants)
        if not dead:
            return route
        return self._route_of(tuple(v for v in route.variants if v not in dead))

    def _outline(self, variant_index: int) -> Node:
        """The variant's condition as far as routing fields decide it: atoms on other fields
        become `_UNKNOWN` (`_UNKNOWN` itself when no routing field is read). Rules share few
        outlines (`EventID: 4688 and ...`), so each is settled once per route and values."""
        found = self._outlines[variant_index]
        if found is None:
            found = self._outline_of(self.plan.variants[variant_index].tree)
            self._outlines[variant_index] = found
        return found

    def _outline_of(self, node: Node) -> Node:
        kind = node[0]
        if kind == "atom":
            atom = self.plan.atoms[node[1]]
            routing = atom.field in self._routing_fields and atom.kind in _ONE_FIELD_KINDS
            return node if routing else _UNKNOWN
        if kind == "not":
            inner = self._outline_of(node[1])
            return _UNKNOWN if inner is _UNKNOWN else ("not", inner)
        if kind in ("and", "or"):
            children = [self._outline_of(child) for child in node[1]]
            kept = tuple(child for child in children if child is not _UNKNOWN)
            if not kept:
                return _UNKNOWN
            if len(kept) < len(children):
                kept += (_UNKNOWN,)
            return kept[0] if len(kept) == 1 else (kind, kept)
        return node  # const

    def _settled(self, node: Node, view: EventView) -> bool | None:
        """The value of an outline given the routing fields' values: True or False when they
        decide it, None when other fields matter. Atoms are judged by their exact test (no
        prefilter gate), which is what a gated atom also comes to."""
        kind = node[0]
        if kind == "atom":
            atom = self.plan.atoms[node[1]]
            value = view.fields.get(atom.field)  # type: ignore[arg-type]
            if value is None:
                return None
            key = (node[1], value)
            found = self._atom_values.get(key)
            if found is None:
                test = self._ungated_tests.get(node[1])
                if test is None:
                    test = self._ungated_tests[node[1]] = atom_test(atom, None)
                found = bool(test(view))
                self._atom_values[key] = found
            return found
        if kind == "const":
            return bool(node[1])
        if kind == "not":
            inner = self._settled(node[1], view)
            return None if inner is None else not inner
        if kind == "unknown":
            return None
        decided = kind == "or"  # the child value that decides the whole: True for or
        result: bool | None = not decided
        for child in node[1]:
            value = self._settled(child, view)
            if value is decided:
                return decided
            if value is None:
                result = None
        return result

    def route_for(self, event: Event) -> Route:
        """The route of an event, cached on the fields routing looks at (`LogsourceMap.key`,
        whose usual case, a known product and plain values, is inlined here)."""
        key_fields = self._key_fields.get(event.product)  # type: ignore[arg-type]
        plain = False
        if key_fields is None:
            key = self.logsources.key(event)
        else:
            values = tuple(map(event.fields.get, key_fields))
            plain = KEY_TYPES.issuperset(map(type, values))
            if plain:
                key = (event.product, event.service, event.category, event.dataset, *values)
            else:
                key = self.logsources.key(event)
        found = self._routes_by_key.get(key)
        if found is None:
            found = self.route(self.logsources.classify(event))
            if plain and key_fields is not None:
                # every event of this key holds these very values: narrow the route on them
                known = {n: v for n, v in zip(key_fields, values, strict=True) if v is not None}
                found = self._narrowed(found, known)
            self._routes_by_key[key] = found
        return found

    def match(self, events: Iterable[Event]) -> Iterator[Match]:
        """Every (event, rule) whose condition holds, in event order."""
        route_for = self.route_for
        present: set[int] = set()
        on_match = self._on_match(present)
        tests = self.variant_tests  # built with the route
        variants = self.plan.variants
        counters = self.counters
        seen = routed = tried = 0
        try:
            for event in events:
                seen += 1
                route = route_for(event)
                if not route.variants:
                    continue
                routed += 1
                fields = event.fields
                present.clear()
                if route.field_scans:
                    buffer = _prefilter_buffer(fields, route.prefixes)
                    for database in route.field_scans:
                        database.scan(buffer, match_event_handler=on_match)
                if route.keyword_scans:
                    buffer = _keyword_buffer(event)
                    for database in route.keyword_scans:
                        database.scan(buffer, match_event_handler=on_match)
                ordered: Sequence[int] = route.always
                if present:
                    hits = [hit for hit in map(route.by_literal.get, present) if hit]
                    if hits:
                        if len(hits) == 1 and not ordered:
                            ordered = hits[0]
                        else:
                            ordered = sorted(set(ordered).union(*hits))
                if not ordered:
                    continue
                tried += len(ordered)
                view = EventView(fields, present)
                for variant_index in ordered:
                    if tests[variant_index](view):  # type: ignore[misc]
                        counters["matches"] += 1
                        variant = variants[variant_index]
                        yield Match(
                            event,
                            variant.rule,
                            variant_index,
                            self.matched_fields(variant_index, view),
                            variant.fieldmap,
                        )
        finally:
            counters["events"] += seen
            counters["routed"] += routed
            counters["candidates"] += tried

    def matched_fields(self, variant_index: int, view: EventView) -> dict[str, Any]:
        """The fields whose values made the rule true (positive atoms that hold)."""
        out: dict[str, Any] = {}
        atoms = self.plan.atoms
        positives = self._positives.get(variant_index)
        if positives is None:
            positives = tuple(_positive_atoms(self.plan.variants[variant_index].tree))
            self._positives[variant_index] = positives
        for atom_index in positives:
            atom = atoms[atom_index]
            if not self.atom_tests[atom_index](view):
                continue
            if atom.field is not None:
                if atom.field in view.fields:
                    out[atom.field] = view.fields[atom.field]
            else:
                out.update(_keyword_fields(atom.args, view))
        return out


def _keyword_fields(args: tuple[Any, ...], view: EventView) -> dict[str, Any]:
    """Which fields hold a keyword (for the report only)."""
    mode, pattern = args[0], args[1]
    found: dict[str, Any] = {}
    if mode != "has":
        return found
    for name, value in view.fields.items():
        for text in texts_of(value) or ():
            if str(pattern) in fold(text):
                found[name] = value
                break
    return found


class _AtomTests:
    """Atom tests by index, each built the first time it is asked for."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.built: dict[int, Test] = {}

    def __getitem__(self, index: int) -> Test:
        test = self.built.get(index)
        if test is None:
            test = atom_test(self.plan.atoms[index], self.plan.atom_gate[index])
            self.built[index] = test
        return test


def _load(data: bytes | None) -> Any:
    if data is None:
        return None
    database = hyperscan.loadb(data, hyperscan.HS_MODE_BLOCK)
    database.scratch = hyperscan.Scratch(database)
    return database


_NUMBERS = frozenset((int, float, bool))
_ABSENT: Any = object()


def _prefilter_buffer(fields: dict[str, Any], prefixes: dict[str, str]) -> bytes:
    """`SEG <field id> VAL <value>` for each value the route's rules look at, folded.

    This runs once per event, so it walks the shorter list: the fields the route looks at (a
    few, once routing values have settled what they can) or the event's. Values come in that
    list's order, which is of no consequence: no literal holds a separator, so none can span
    two values (see plan). Values that hold a separator character or a lone surrogate
    themselves take the careful path."""
    parts: list[str] = []
    append = parts.append
    if len(prefixes) <= len(fields):
        get = fields.get
        for name, prefix in prefixes.items():
            value = get(name, _ABSENT)
            if type(value) is str:
                append(prefix)
                append(value)
            elif value is not _ABSENT:
                _other_value(parts, prefix, value)
    else:
        lookup = prefixes.get
        for name, value in fields.items():
            looked = lookup(name)
            if looked is None:
                continue
            if type(value) is str:
                append(looked)
                append(value)
            else:
                _other_value(parts, looked, value)
    append(SEG)
    joined = "".join(parts)
    values = len(parts) // 2
    # Each prefix holds one SEG and one VAL: any more came from a value.
    if joined.count(SEG) == values + 1 and joined.count(VAL) == values:
        try:
            return fold(joined).encode("utf-8")
        except UnicodeEncodeError:  # a value holds a lone surrogate
            pass
    return _sanitised(fields, prefixes)


def _other_value(parts: list[str], prefix: str, value: Any) -> None:
    """A value that is no str: a number as text; nulls give none, each item of a list one."""
    if type(value) in _NUMBERS:
        parts.append(prefix)
        parts.append(str(value))
        return
    for text in texts_of(value) or ():
        parts.append(prefix)
        parts.append(text)


def _keyword_buffer(event: Event) -> bytes:
    """The whole event as JSON, folded: what keyword literals (JSON-escaped) search.

    The record's own JSON text when there is one: keyword literals are made only of characters
    no JSON writer escapes (see atoms), so however it was written the text holds them. Else the
    fields written by orjson. Field names and JSON syntax around the values only add text, which
    can cost a prefilter hit but never hide a value."""
    raw = event.raw
    if type(raw) is str:
        return (raw.lower() if raw.isascii() else fold(raw)).encode("utf-8", "replace")
    if type(raw) is bytes:
        if raw.isascii():
            return raw.lower()
        return fold(raw.decode("utf-8", "replace")).encode("utf-8")
    try:
        data = orjson.dumps(event.fields, default=str)
    except (TypeError, orjson.JSONEncodeError):  # an int beyond 64 bits, a key that is no str
        data = json.dumps(event.fields, default=str, ensure_ascii=False).encode("utf-8", "replace")
    if data.isascii():
        return data.lower()
    return fold(data.decode("utf-8", "replace")).encode("utf-8")


def _sanitised(fields: dict[str, Any], prefixes: dict[str, str]) -> bytes:
    """The slow, careful buffer: values stripped of separator characters and lone surrogates."""
    out = []
    for name, value in fields.items():
        prefix = prefixes.get(name)
        if prefix is None:
            continue
        for text in texts_of(value) or ():
            clean = text.replace(SEG, "\ufffd").replace(VAL, "\ufffd")  # cannot forge a field
            out.append(prefix + clean.encode("utf-8", "replace").decode("utf-8"))
    out.append(SEG)
    return fold("".join(out)).encode("utf-8")


# Atom kinds whose value depends on their own field alone (not `ref`, which reads two fields).
_ONE_FIELD_KINDS = frozenset(("str", "re", "cidr", "cmp", "null", "exists", "bool", "time"))


# What a condition's outline holds for the parts routing fields do not decide.
_UNKNOWN: Node = ("unknown",)


def _positive_atoms(node: Node, negated: bool = False) -> Iterator[int]:
    kind = node[0]
    if kind == "atom":
        if not negated:
            yield node[1]
    elif kind == "not":
        yield from _positive_atoms(node[1], not negated)
    elif kind in ("and", "or"):
        for child in node[1]:
            yield from _positive_atoms(child, negated)


def _weight(node: Node, atom_literal: list[int | None]) -> int:
    kind = node[0]
    if kind == "atom":
        return 1 if atom_literal[node[1]] is not None else 8
    if kind == "not":
        return _weight(node[1], atom_literal) + 1
    if kind in ("and", "or"):
        return sum(_weight(c, atom_literal) for c in node[1])
    return 0


def _ordered(node: Node, atom_literal: list[int | None]) -> Node:
    kind = node[0]
    if kind == "not":
        return ("not", _ordered(node[1], atom_literal))
    if kind in ("and", "or"):
        children = [_ordered(c, atom_literal) for c in node[1]]
        children.sort(key=lambda c: _weight(c, atom_literal))
        return (kind, tuple(children))
    return node
