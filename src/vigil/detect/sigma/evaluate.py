"""Exact evaluation of atoms and condition trees on one event (the per-event hot path)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
import re2

from vigil.detect.sigma.atoms import ANY, DASH, DASHES, MARKERS, ONE, Atom
from vigil.detect.sigma.compiler import Node
from vigil.detect.sigma.folding import fold
from vigil.detect.sigma.regex import compile_search, re2_predicate
from vigil.events.model import parse_time

Test = Callable[["EventView"], bool]


class TestSource(Protocol):
    """Atom tests by atom index."""

    def __getitem__(self, index: int) -> Test: ...


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_RE2_OPTIONS.dot_nl = True


def text_of(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is bool:
        return "true" if value else "false"
    if kind is int or kind is float:
        return str(value)
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def texts_of(value: Any) -> list[str] | None:
    """A field's values as strings; None when the field has no value (absent, null, [])."""
    if value is None:
        return None
    if type(value) is str:
        return [value]
    if type(value) is list:
        out = [text_of(v) for v in value if v is not None]
        return out or None
    return [text_of(value)]


_MISSING: Any = object()


class EventView:
    """One event as the evaluator sees it: fields, prefilter hits, memoised string forms.

    `fold(name)` gives the case-folded value: a str for a single value, a list for several,
    None when the field has no value; `name=None` means every value of every field."""

    __slots__ = ("fields", "folded_cache", "present", "text_cache")

    def __init__(self, fields: dict[str, Any], present: set[int]) -> None:
        self.fields = fields
        self.present = present
        self.text_cache: dict[str | None, list[str] | None] = {}
        self.folded_cache: dict[str | None, Any] = {}

    def texts(self, name: str | None) -> list[str] | None:
        cached: Any = self.text_cache.get(name, _MISSING)  # (a KeyError costs 5 times more)
        if cached is not _MISSING:
            return cached  # type: ignore[no-any-return]
        found: list[str] | None
        if name is None:  # every value of every field, for keyword searches
            found = [t for v in self.fields.values() for t in (texts_of(v) or ())]
        else:
            found = texts_of(self.fields.get(name))
        self.text_cache[name] = found
        return found

    def fold(self, name: str | None) -> Any:
        value = self.fields.get(name) if name is not None else _MISSING
        if type(value) is str:
            folded: Any = fold(value)
        else:
            texts = self.texts(name)
            folded = None if texts is None else [fold(t) for t in texts]
        self.folded_cache[name] = folded
        return folded

    def folded(self, name: str | None) -> list[str] | None:
        """The case-folded values as a list (None when there is none)."""
        value = self.folded_cache.get(name, _MISSING)
        if value is _MISSING:
            value = self.fold(name)
        return [value] if type(value) is str else value


def glob_regex(parts: tuple[str, ...]) -> str:
    out = []
    for part in parts:
        if part == ANY:
            out.append(".*")
        elif part == ONE:
            out.append(".")
        elif part == DASH:
            out.append("[" + "".join(f"\\x{{{ord(c):x}}}" for c in DASHES) + "]")
        else:
            out.append(re2.escape(part))
    return "".join(out)


def atom_test(atom: Atom, literal_id: int | None) -> Test:
    """The predicate for one atom; literal-gated atoms return False unless the prefilter saw
    their literal."""
    kind = atom.kind
    field = atom.field
    if kind in ("str", "kw"):
        inner = _string_test(atom)
    elif kind == "re":
        search, _ = compile_search(str(atom.args[0]), str(atom.args[1]))

        def inner(view: EventView) -> bool:
            values = view.texts(field)
            return values is not None and any(search(v) for v in values)

    elif kind == "cidr":
        inner = _cidr_test(field, str(atom.args[0]))
    elif kind == "cmp":
        inner = _compare_test(field, str(atom.args[0]), float(atom.args[1]))  # type: ignore[arg-type]
    elif kind == "null":

        def inner(view: EventView) -> bool:
            return texts_of(view.fields.get(field)) is None  # type: ignore[arg-type]

    elif kind == "exists":
        wanted = bool(atom.args[0])

        def inner(view: EventView) -> bool:
            return (field in view.fields) == wanted

    elif kind == "ref":
        inner = _reference_test(field, str(atom.args[0]), str(atom.args[1]))
    elif kind == "bool":
        wanted_text = "true" if atom.args[0] else "false"

        def inner(view: EventView) -> bool:
            values = view.folded(field)
            return values is not None and wanted_text in values

    elif kind == "time":
        inner = _time_test(field, str(atom.args[0]), int(atom.args[1]))  # type: ignore[call-overload]
    else:
        raise ValueError(f"unknown atom kind {kind}")
    if literal_id is None:
        return inner
    if atom.exact:

        def exact(view: EventView) -> bool:
            return literal_id in view.present

        return exact

    def gated(view: EventView) -> bool:
        return literal_id in view.present and inner(view)

    return gated


def _values_getter(field: str | None, cased: bool) -> Callable[[EventView], Any]:
    """str, list of str, or None: the field's (case-folded unless cased) value."""
    if cased:

        def texts(view: EventView) -> Any:
            found = view.texts(field)
            return found[0] if found is not None and len(found) == 1 else found

        return texts

    def folded(view: EventView) -> Any:
        value = view.folded_cache.get(field, _MISSING)
        if value is _MISSING:
            return view.fold(field)
        return value

    return folded


def string_group_test(field: str | None, mode: str, cased: bool, patterns: list[Any]) -> Test:
    """One test for an OR of string comparisons of one kind on one field (a Sigma value list):
    a set lookup for equality, one C call for prefixes/suffixes, a loop for substrings."""
    get = _values_getter(field, cased)
    if mode == "any":

        def test_any(view: EventView) -> bool:
            return view.texts(field) is not None

        return test_any
    if mode == "eq":
        wanted = frozenset(str(p) for p in patterns)

        def test_eq(view: EventView) -> bool:
            value = get(view)
            if value is None:
                return False
            if type(value) is str:
                return value in wanted
            return not wanted.isdisjoint(value)

        return test_eq
    if mode in ("start", "end"):
        texts = tuple(str(p) for p in patterns)
        method = str.startswith if mode == "start" else str.endswith

        def test_edge(view: EventView) -> bool:
            value = get(view)
            if value is None:
                return False
            if type(value) is str:
                return method(value, texts)
            return any(method(v, texts) for v in value)

        return test_edge
    if mode == "has":
        holds = _substring_predicate(tuple(str(p) for p in patterns))

        def test_has(view: EventView) -> bool:
            value = get(view)
            if value is None:
                return False
            if type(value) is str:
                return holds(value)
            return any(map(holds, value))

        return test_has
    whole = _glob_predicate([glob_regex(p) for p in patterns])

    def test_glob(view: EventView) -> bool:
        value = get(view)
        if value is None:
            return False
        if type(value) is str:
            return whole(value)
        return any(map(whole, value))

    return test_glob


# From this many substrings on, one RE2 search beats a loop of `in` tests (about 0.7 us).
_MANY_NEEDLES = 16


def _substring_predicate(needles: tuple[str, ...]) -> Callable[[str], bool]:
    """Whether a text holds one of the needles: `in` for a few, one RE2 search for many (a
    Sigma `contains` list can hold hundreds)."""

    def each(text: str) -> bool:
        for needle in needles:
            if needle in text:
                return True
        return False

    if len(needles) < _MANY_NEEDLES:
        return each

    def build() -> Callable[[str], bool]:
        try:
            pattern = re2.compile("|".join(re2.escape(n) for n in needles), _RE2_OPTIONS)
        except re2.error:  # too large for RE2's memory budget
            return each
        search = re2_predicate(pattern)

        def any_of(text: str) -> bool:
            try:
                return search(text)
            except UnicodeEncodeError:  # a lone surrogate: RE2 reads UTF-8 only
                return each(text)

        return any_of

    return _on_first_use(build)


def _glob_predicate(regexes: list[str]) -> Callable[[str], bool]:
    """Whether a text matches one of the patterns whole: one alternation, so one RE2 call per
    value however many patterns (one call per pattern if RE2 will not take them together)."""

    def build() -> Callable[[str], bool]:
        try:
            return re2_predicate(
                re2.compile("|".join(f"(?:{r})" for r in regexes), _RE2_OPTIONS), whole=True
            )
        except re2.error:
            each = [re2_predicate(re2.compile(r, _RE2_OPTIONS), whole=True) for r in regexes]
            return lambda text: any(test(text) for test in each)

    return _on_first_use(build)


def _on_first_use(build: Callable[[], Callable[[str], bool]]) -> Callable[[str], bool]:
    """A predicate compiled when first asked: a route builds the tests of all its rules, and
    most of them never run on a given log."""
    built: Callable[[str], bool] | None = None

    def run(text: str) -> bool:
        nonlocal built
        if built is None:
            built = build()
        return built(text)

    return run


def _string_test(atom: Atom) -> Test:
    mode, pattern, cased = atom.args
    return string_group_test(atom.field, str(mode), bool(cased), [pattern])


def _cidr_test(field: str | None, network: str) -> Test:
    net = ipaddress.ip_network(network)

    def test(view: EventView) -> bool:
        for text in view.texts(field) or ():
            try:
                address = ipaddress.ip_address(text.strip().strip("[]"))
            except ValueError:
                continue
            if address.version == net.version and address in net:
                return True
        return False

    return test


_COMPARE = {
    "gt": float.__gt__,
    "gte": float.__ge__,
    "lt": float.__lt__,
    "lte": float.__le__,
    "neq": float.__ne__,
}


# A number as logs write one: decimal, optionally signed, with a fraction and an exponent.
# Not "nan", "inf", "1_000" or "0x10", which float() or int(..., 0) would also take.
_NUMBER = re2.compile(r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*")


def _number(text: str) -> float | None:
    if len(text) > 64 or _NUMBER.fullmatch(text) is None:
        return None
    value = float(text)
    return value if value - value == 0.0 else None  # not inf


def _compare_test(field: str | None, op: str, number: float) -> Test:
    compare = _COMPARE[op]

    def test(view: EventView) -> bool:
        for text in view.texts(field) or ():
            value = _number(text)
            if value is not None and compare(value, number):
                return True
        return False

    return test


def _reference_test(field: str | None, other: str, mode: str) -> Test:
    def test(view: EventView) -> bool:
        left = view.folded(field)
        right = view.folded(other)
        if left is None or right is None:
            return False
        for a in left:
            for b in right:
                if (
                    (mode == "eq" and a == b)
                    or (mode == "has" and b in a)
                    or (mode == "start" and a.startswith(b))
                    or (mode == "end" and a.endswith(b))
                ):
                    return True
        return False

    return test


_TIME_PARTS: dict[str, Callable[[datetime], int]] = {
    "minute": lambda d: d.minute,
    "hour": lambda d: d.hour,
    "day": lambda d: d.day,
    "week": lambda d: d.isocalendar().week,
    "month": lambda d: d.month,
    "year": lambda d: d.year,
}


def _time_test(field: str | None, part: str, number: int) -> Test:
    extract = _TIME_PARTS[part]

    def test(view: EventView) -> bool:
        for text in view.texts(field) or ():
            epoch = parse_time(text)
            if epoch is not None and extract(datetime.fromtimestamp(epoch, tz=UTC)) == number:
                return True
        return False

    return test


def node_test(
    node: Node,
    tests: TestSource,
    atoms: list[Atom] | None = None,
    gates: list[int | None] | None = None,
) -> Test:
    """A closure evaluating a condition tree; AND/OR short-circuit in the given order. With the
    atoms, OR-ed string comparisons of one kind on one field run as one test."""
    kind = node[0]
    if kind == "atom":
        return tests[node[1]]
    if kind == "const":
        value = bool(node[1])
        return lambda view: value
    if kind == "not":
        inner = node_test(node[1], tests, atoms, gates)
        return lambda view: not inner(view)
    if kind == "or" and atoms is not None and gates is not None:
        children = _merged_or(node[1], tests, atoms, gates)
    else:
        children = [node_test(child, tests, atoms, gates) for child in node[1]]
    if len(children) == 1:
        return children[0]
    if kind == "and":
        if len(children) == 2:
            first, second = children
            return lambda view: first(view) and second(view)

        def all_of(view: EventView) -> bool:
            for child in children:
                if not child(view):
                    return False
            return True

        return all_of
    if len(children) == 2:
        first, second = children
        return lambda view: first(view) or second(view)

    def any_of(view: EventView) -> bool:
        for child in children:
            if child(view):
                return True
        return False

    return any_of


def _merged_or(
    children: tuple[Node, ...], tests: TestSource, atoms: list[Atom], gates: list[int | None]
) -> list[Test]:
    groups: dict[tuple[Any, ...], list[int]] = {}
    out: list[Test] = []
    for child in children:
        if child[0] == "atom":
            atom = atoms[child[1]]
            if atom.kind in ("str", "kw") and atom.args[0] != "any":
                key = (atom.kind, atom.field, atom.args[0], atom.args[2])
                groups.setdefault(key, []).append(child[1])
                continue
        out.append(node_test(child, tests, atoms, gates))
    merged: list[Test] = []
    for (_, field, mode, cased), members in groups.items():
        if len(members) == 1:
            merged.append(tests[members[0]])
            continue
        inner = string_group_test(
            field, str(mode), bool(cased), [atoms[i].args[1] for i in members]
        )
        member_gates = [gates[i] for i in members]
        if all(g is not None for g in member_gates):
            gate_set = frozenset(g for g in member_gates if g is not None)
            if all(atoms[i].exact for i in members):

                def exact_any(view: EventView, gate_set: frozenset[int] = gate_set) -> bool:
                    return not view.present.isdisjoint(gate_set)

                merged.append(exact_any)
            else:

                def gated_any(
                    view: EventView, gate_set: frozenset[int] = gate_set, inner: Test = inner
                ) -> bool:
                    return not view.present.isdisjoint(gate_set) and inner(view)

                merged.append(gated_any)
        else:
            merged.append(inner)
    # merged groups first: they are cheap and usually decide
    return merged + out


__all__ = ["MARKERS", "EventView", "Test", "atom_test", "node_test", "text_of", "texts_of"]
