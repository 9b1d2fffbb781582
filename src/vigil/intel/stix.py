"""STIX 2.0 and 2.1 indicators: their patterns turned into Vigil indicators, with provenance."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from stix2patterns.exceptions import ParseException
from stix2patterns.v20.pattern import Pattern as Pattern20
from stix2patterns.v21.pattern import Pattern as Pattern21

from vigil.events import parse_time
from vigil.intel.files import decode_json, read_bytes
from vigil.intel.model import (
    ImportResult,
    Indicator,
    IndicatorValueError,
    Rejected,
    Unsupported,
    canonical,
)

# Object paths (lower case, key quotes removed) that name one indicator value, and its type.
# `host` is an address or a domain name: a network-traffic destination may be either.
HOST = "host"
PATHS: dict[str, str] = {
    "ipv4-addr:value": "ipv4",
    "ipv6-addr:value": "ipv6",
    "domain-name:value": "domain",
    "url:value": "url",
    "file:hashes.md5": "md5",
    "file:hashes.sha-1": "sha1",
    "file:hashes.sha1": "sha1",
    "file:hashes.sha-256": "sha256",
    "file:hashes.sha256": "sha256",
    "file:hashes.sha-512": "sha512",
    "file:hashes.sha512": "sha512",
    "file:name": "filename",
    "email-addr:value": "email",
    "email-message:from_ref.value": "email",
    "email-message:sender_ref.value": "email",
    "network-traffic:dst_ref.value": HOST,
}

# Relationships followed from an indicator to what it points at (Unit 42 playbooks write
# `indicator uses attack-pattern`), then one step further: a malware or tool to the
# techniques it uses, anything to the actor it is attributed to or authored by.
FROM_INDICATOR = frozenset({"indicates", "uses"})
TO_TECHNIQUES = frozenset({"uses"})
TO_ACTORS = frozenset({"attributed-to", "authored-by"})
ACTOR_TYPES = frozenset({"intrusion-set", "threat-actor", "campaign", "malware"})
# Only a malware's or a tool's techniques are the indicator's: an intrusion set or campaign
# `uses` its whole repertoire, which says nothing about this one file or address.
TECHNIQUE_CARRIERS = frozenset({"malware", "tool"})
ATTACK_SOURCES = frozenset({"mitre-attack", "mitre-mobile-attack", "mitre-ics-attack"})
TECHNIQUE_ID = re.compile(r"T\d{4}(?:\.\d{3})?")

# Parse-tree nodes (stix2patterns' ANTLR contexts, the same names in the 2.0 and 2.1
# grammars) that only group or join what is under them.
_GROUPS = frozenset(
    {
        "PatternContext",
        "ObservationExpressionsContext",
        "ObservationExpressionOrContext",
        "ObservationExpressionAndContext",
        "ObservationExpressionSimpleContext",
        "ObservationExpressionCompoundContext",
        "ComparisonExpressionContext",
        "ComparisonExpressionAndContext",
        "PropTestParenContext",
    }
)
_QUALIFIERS = {
    "ObservationExpressionWithinContext": "a WITHIN qualifier",
    "ObservationExpressionStartStopContext": "a START/STOP qualifier",
    "ObservationExpressionRepeatedContext": "a REPEATS qualifier",
}
# Joins whose sides must all hold: no single value is enough to match.
_JOINS = {
    "AND": "AND (the comparisons must hold together)",
    "FOLLOWEDBY": "FOLLOWEDBY (a sequence of observations)",
}
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")
_ESCAPE = re.compile(r"\\(['\\])")
_TIMESTAMP = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:?\d{2})?"
)


@dataclass(frozen=True, slots=True)
class _Comparison:
    """`path = 'value'` (or one value of an `IN` list): `path` normalised as in PATHS,
    `literal` the token as written (a string keeps its quotes)."""

    path: str
    literal: str


@dataclass(frozen=True, slots=True)
class _NotSimple:
    """A part of a pattern that no single value can stand for, and why."""

    reason: str


_Alternative = _Comparison | _NotSimple


def _alternatives(pattern: str, spec_version: str | None = None) -> list[_Alternative]:
    """The alternatives the ORs of `pattern` join, each enough on its own to match it.
    Raises ParseException for a pattern that is not STIX. A 2.0 pattern that the 2.1 grammar
    refuses is parsed with the 2.0 grammar."""
    try:
        parsed = Pattern21(pattern)
    except ParseException:
        if spec_version == "2.1":
            raise
        parsed = Pattern20(pattern)
    result: list[_Alternative] = parsed.visit(_AlternativesVisitor())
    return result


class _AlternativesVisitor:
    """Walks a stix2patterns parse tree (through `Pattern.visit`) down the ORs."""

    def visit(self, tree: Any) -> list[_Alternative]:
        return list(self._walk(tree))

    def _walk(self, node: Any) -> Iterator[_Alternative]:
        name = type(node).__name__
        if name in _QUALIFIERS:
            yield _NotSimple(_QUALIFIERS[name])
        elif name == "PropTestEqualContext":
            yield self._equal(node)
        elif name == "PropTestSetContext":
            yield from self._in(node)
        elif name in _GROUPS:
            children = list(node.getChildren())
            for child in children:
                if _is_token(child) and child.getText() in _JOINS:
                    yield _NotSimple(_JOINS[child.getText()])
                    return
            for child in children:
                if not _is_token(child):
                    yield from self._walk(child)
        else:  # LIKE, MATCHES, >, <, ISSUBSET, ISSUPERSET, EXISTS
            yield _NotSimple(f"a comparison with {' '.join(_keywords(node)) or name}")

    def _equal(self, node: Any) -> _Alternative:
        operators = _keywords(node)
        if operators not in (["="], ["=="]):
            return _NotSimple(f"a negated comparison ({' '.join(operators)})")
        return _Comparison(_path(node.objectPath().getText()), node.primitiveLiteral().getText())

    def _in(self, node: Any) -> Iterator[_Alternative]:
        operators = _keywords(node)
        if operators != ["IN"]:
            yield _NotSimple(f"a negated comparison ({' '.join(operators)})")
            return
        path = _path(node.objectPath().getText())
        for child in node.setLiteral().getChildren():
            if not _is_token(child):
                yield _Comparison(path, child.getText())


def _is_token(node: Any) -> bool:
    return hasattr(node, "symbol")


def _keywords(node: Any) -> list[str]:
    """The operator tokens right under a comparison (`NOT`, `=`, `MATCHES`...), not its
    string operand."""
    texts = (child.getText() for child in node.getChildren() if _is_token(child))
    return [text for text in texts if not text.startswith("'")]


def _path(text: str) -> str:
    return _QUOTED.sub(r"\1", text).lower()


def from_objects(objects: Iterable[Mapping[str, Any]], source: str) -> ImportResult:
    """The indicators of STIX 2.0/2.1 objects (as decoded from JSON; custom properties and
    mixed versions are fine). Indicator objects become one Indicator per value their pattern
    can stand for; the techniques and actors come from the relationships among `objects`.

    >>> result = from_objects([{"type": "indicator", "id": "indicator--1",
    ...     "pattern": "[domain-name:value = 'Evil.example.']", "pattern_type": "stix",
    ...     "valid_from": "2024-01-01T00:00:00Z"}], "demo")
    >>> [(i.type, i.value, i.first_seen) for i in result.indicators]
    [('domain', 'evil.example', 1704067200.0)]
    """
    result = ImportResult(source=source)
    latest: dict[str, Mapping[str, Any]] = {}
    for number, obj in enumerate(objects):
        if not isinstance(obj, Mapping) or not isinstance(obj.get("type"), str):
            result.rejected.append(
                Rejected(f"object #{number}", "not a STIX object", str(obj)[:200])
            )
            continue
        key = obj.get("id")
        if not isinstance(key, str) or not key:
            if obj["type"] == "indicator":
                result.rejected.append(Rejected(f"object #{number}", "indicator without an id"))
            continue
        held = latest.get(key)
        if held is None or _newer(obj, held):
            latest[key] = obj
    graph = _Graph(latest)
    for obj in latest.values():
        if obj["type"] == "indicator":
            _indicator(obj, graph, result)
    return result


def _indicator(obj: Mapping[str, Any], graph: _Graph, result: ImportResult) -> None:
    reference: str = obj["id"]
    pattern = obj.get("pattern")
    if not isinstance(pattern, str) or not pattern.strip():
        result.rejected.append(Rejected(reference, "indicator without a pattern"))
        return
    pattern_type = obj.get("pattern_type") or "stix"  # absent in STIX 2.0
    if pattern_type != "stix":
        reason = f"pattern_type {pattern_type!r}: only STIX patterns give indicator values"
        result.unsupported.append(Unsupported(reference, reason, pattern))
        return
    try:
        parts = _alternatives(pattern, obj.get("spec_version"))
    except ParseException as exc:
        result.rejected.append(Rejected(reference, f"malformed STIX pattern: {exc}", pattern))
        return
    except RecursionError:  # the parser recurses once per bracket
        result.rejected.append(Rejected(reference, "STIX pattern nested too deeply", pattern))
        return
    try:
        times = {name: epoch(obj.get(name)) for name in ("valid_from", "modified", "valid_until")}
    except ValueError as exc:
        result.rejected.append(Rejected(reference, str(exc), pattern))
        return

    values: list[tuple[str, str]] = []
    reasons: list[str] = []
    for part in parts:
        if isinstance(part, _NotSimple):
            reasons.append(part.reason)
            continue
        kind = PATHS.get(part.path)
        if kind is None:
            reasons.append(f"{part.path} has no indicator type")
            continue
        if not part.literal.startswith("'"):
            reason = f"{part.path} compared to {part.literal}, not a string"
            result.rejected.append(Rejected(reference, reason, pattern))
            continue
        text = _ESCAPE.sub(r"\1", part.literal[1:-1])
        try:
            typed = _canonical(kind, text)
        except IndicatorValueError as exc:
            result.rejected.append(Rejected(reference, f"{part.path}: {exc}", text))
            continue
        if typed not in values:
            values.append(typed)
    if reasons:
        unique = list(dict.fromkeys(reasons))
        prefix = "part of the pattern was not imported: " if values else ""
        result.unsupported.append(Unsupported(reference, prefix + "; ".join(unique), pattern))
    if not values:
        return

    techniques, tactics = _phases(obj)
    confidence = _confidence(obj.get("confidence"))
    name = obj.get("name") or obj.get("description")
    tags = _strings(obj.get("labels")) + _strings(obj.get("indicator_types")) + tactics
    template = Indicator(
        type="",
        value="",
        source=result.source,
        confidence=confidence,
        first_seen=times["valid_from"],
        last_seen=times["modified"],
        valid_until=times["valid_until"],
        revoked=obj.get("revoked") is True,
        tags=tuple(dict.fromkeys(tags)),
        techniques=tuple(sorted(set(techniques) | graph.techniques(reference))),
        actors=tuple(sorted(graph.actors(reference))),
        reference=reference,
        description=name if isinstance(name, str) else None,
    )
    for kind, value in values:
        result.indicators.append(replace(template, type=kind, value=value))


def _confidence(value: Any) -> int | None:
    """The 2.1 `confidence` (0-100); None when absent or not a number in range."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100:
        return value
    return None


def _canonical(kind: str, value: str) -> tuple[str, str]:
    if kind != HOST:
        return canonical(kind, value)
    try:
        return canonical("ipv4", value)
    except IndicatorValueError:
        return canonical("domain", value)


def _phases(obj: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """ATT&CK technique ids and tactic tags (`attack.execution`, as Sigma writes them) from
    the indicator's own mitre-attack kill chain phases."""
    techniques: list[str] = []
    tactics: list[str] = []
    phases = obj.get("kill_chain_phases")
    for phase in phases if isinstance(phases, list) else ():
        if not isinstance(phase, Mapping) or phase.get("kill_chain_name") not in ATTACK_SOURCES:
            continue
        name = phase.get("phase_name")
        if not isinstance(name, str):
            continue
        if TECHNIQUE_ID.fullmatch(name.upper()):
            techniques.append(name.upper())
        else:
            tactics.append(f"attack.{name.lower().replace('-', '_')}")
    return techniques, tactics


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, str) and item]


class _Graph:
    """The relationships among a set of objects, followed forward from an indicator."""

    def __init__(self, objects: Mapping[str, Mapping[str, Any]]) -> None:
        self.objects = objects
        self.out: dict[str, list[tuple[str, str]]] = {}
        for obj in objects.values():
            if obj["type"] != "relationship" or obj.get("revoked") is True:
                continue
            start, end, kind = (
                obj.get("source_ref"),
                obj.get("target_ref"),
                obj.get("relationship_type"),
            )
            if isinstance(start, str) and isinstance(end, str) and isinstance(kind, str):
                self.out.setdefault(start, []).append((kind, end))

    def _next(self, start: str, kinds: frozenset[str]) -> Iterator[Mapping[str, Any]]:
        for kind, end in self.out.get(start, ()):
            target = self.objects.get(end)
            if kind in kinds and target is not None and target.get("revoked") is not True:
                yield target

    def techniques(self, indicator: str) -> set[str]:
        found: set[str] = set()
        for first in self._next(indicator, FROM_INDICATOR):
            if first["type"] == "attack-pattern":
                found.update(_technique_ids(first))
            elif first["type"] in TECHNIQUE_CARRIERS:
                for second in self._next(first["id"], TO_TECHNIQUES):
                    if second["type"] == "attack-pattern":
                        found.update(_technique_ids(second))
        return found

    def actors(self, indicator: str) -> set[str]:
        found: set[str] = set()
        for first in self._next(indicator, FROM_INDICATOR):
            if first["type"] not in ACTOR_TYPES:
                continue
            found.update(_strings([first.get("name")]))
            for second in self._next(first["id"], TO_ACTORS):
                if second["type"] in ACTOR_TYPES:
                    found.update(_strings([second.get("name")]))
        return found


def _technique_ids(attack_pattern: Mapping[str, Any]) -> Iterator[str]:
    references = attack_pattern.get("external_references")
    for reference in references if isinstance(references, list) else ():
        if not isinstance(reference, Mapping) or reference.get("source_name") not in ATTACK_SOURCES:
            continue
        external_id = reference.get("external_id")
        if isinstance(external_id, str) and TECHNIQUE_ID.fullmatch(external_id.strip().upper()):
            yield external_id.strip().upper()


def _newer(candidate: Mapping[str, Any], held: Mapping[str, Any]) -> bool:
    try:
        mine, theirs = epoch(candidate.get("modified")), epoch(held.get("modified"))
    except ValueError:
        return False
    return mine is not None and (theirs is None or mine > theirs)


def epoch(value: Any) -> float | None:
    """Epoch seconds of a STIX timestamp (any precision; UTC unless it says otherwise).
    None when absent; ValueError when malformed."""
    if value is None:
        return None
    match = _TIMESTAMP.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"malformed timestamp {value!r}")
    day, clock, fraction, zone = match.groups()
    text = f"{day}T{clock}.{(fraction or '0')[:6].ljust(6, '0')}"
    if zone and zone.upper() != "Z":
        text += zone
    moment = parse_time(text)
    if moment is None:
        raise ValueError(f"malformed timestamp {value!r}")
    return moment


def is_stix(doc: Any) -> bool:
    """Whether a decoded JSON document is a STIX bundle, a STIX object, or a list of them."""
    if isinstance(doc, list):
        return bool(doc) and all(_is_object(item) for item in doc)
    return _is_object(doc)


def _is_object(doc: Any) -> bool:
    if not isinstance(doc, Mapping):
        return False
    kind, key = doc.get("type"), doc.get("id")
    return isinstance(kind, str) and isinstance(key, str) and key.startswith(f"{kind}--")


def _objects_of(doc: Any) -> list[Any] | None:
    """The objects of a bundle, a list of objects or one object; None if `doc` is not STIX."""
    if not is_stix(doc):
        return None
    if isinstance(doc, list):
        return doc
    if doc["type"] == "bundle":
        objects = doc.get("objects", [])
        return objects if isinstance(objects, list) else None
    return [doc]


def import_bundle(path: Path, source: str | None = None) -> ImportResult:
    """The indicators of a STIX JSON file (plain or gzip): a bundle, a bare list of objects or
    one object. `source` defaults to `stix:<file name>`. A file that is not JSON or not STIX
    gives one Rejected for the file; a file that cannot be read raises InputError."""
    path = Path(path)
    name = source or f"stix:{path.name}"
    try:
        doc = decode_json(read_bytes(path))
    except ValueError as exc:
        return ImportResult(name, rejected=[Rejected(str(path), str(exc))])
    objects = _objects_of(doc)
    if objects is None:
        reason = "JSON that is not a STIX bundle, object or list of objects"
        return ImportResult(name, rejected=[Rejected(str(path), reason)])
    return from_objects(objects, name)
