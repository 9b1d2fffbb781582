"""Sigma values to atoms: one predicate on one event, as plain data the plan can cache.

An atom knows the literal every event it is true for must contain (case-folded), which the
multi-pattern prefilter looks for; `exact` atoms are decided by that literal alone.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from sigma.types import (
    Placeholder,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SigmaTimestampPart,
    SigmaType,
    SpecialChars,
)

from vigil.detect.sigma.folding import fold
from vigil.detect.sigma.regex import check as check_regex
from vigil.detect.sigma.regex import required_literal

# Parts of a string pattern: literal text, or one of these markers.
ANY = "\x00*"  # `*`: any run of characters
ONE = "\x00?"  # `?`: exactly one character
DASH = "\x00-"  # windash: any of - / – — ―
DASHES = "-/\u2013\u2014\u2015"
MARKERS = (ANY, ONE, DASH)

FLAG_LETTERS = {
    SigmaRegularExpressionFlag.IGNORECASE: "i",
    SigmaRegularExpressionFlag.MULTILINE: "m",
    SigmaRegularExpressionFlag.DOTALL: "s",
}


class UnsupportedValue(ValueError):
    """A rule value Vigil cannot evaluate (names why)."""


@dataclass(frozen=True, slots=True)
class Literal:
    """What the prefilter looks for. `anchored` literals sit at the start of a value of
    `field`; `terminated` ones at the end of a value (see vigil.detect.sigma.plan)."""

    text: str
    field: str | None = None
    anchored: bool = False
    terminated: bool = False


@dataclass(frozen=True, slots=True)
class Atom:
    """One predicate. `kind` says how `args` are read (see vigil.detect.sigma.evaluate)."""

    kind: str
    field: str | None
    args: tuple[object, ...]
    literal: Literal | None = None
    exact: bool = False

    def renamed(self, name: str) -> Atom:
        literal = self.literal
        if literal is not None and literal.field is not None:
            literal = Literal(literal.text, name, literal.anchored, literal.terminated)
        return Atom(self.kind, name, self.args, literal, self.exact)


def string_parts(
    value: SigmaString, placeholders: dict[str, list[str]] | None = None, windash: bool = False
) -> list[tuple[str, ...]]:
    """The pattern(s) of a SigmaString as tuples of text and markers; placeholders expand to
    one pattern per configured value."""
    patterns: list[list[Any]] = [[]]
    for part in value.s:
        options: list[Any]
        if isinstance(part, str):
            options = [part]
        elif part == SpecialChars.WILDCARD_MULTI:
            options = [ANY]
        elif part == SpecialChars.WILDCARD_SINGLE:
            options = [ONE]
        elif isinstance(part, Placeholder):
            values = (placeholders or {}).get(part.name)
            if not values:
                raise UnsupportedValue(
                    f"placeholder %{part.name}% has no value (give it with --placeholders)"
                )
            # a placeholder value is a pattern in its own right (`srv*`)
            options = [_pattern_text(SigmaString(v)) for v in values]
        else:
            raise UnsupportedValue(f"unsupported string part {part!r}")
        patterns = [[*p, o] for p in patterns for o in options]
    result = []
    for pattern in patterns:
        parts: list[str] = []
        for piece in _flatten(pattern):
            if piece in MARKERS:
                parts.append(piece)
                continue
            if windash:
                for char in piece:
                    parts.append(DASH if char in DASHES else char)
            else:
                parts.append(piece)
        result.append(_normalise(parts))
    return result


def _pattern_text(value: SigmaString) -> list[str]:
    """A SigmaString's parts as text and markers (no placeholders inside)."""
    parts: list[str] = []
    for part in value.s:
        if isinstance(part, str):
            parts.append(part)
        elif part == SpecialChars.WILDCARD_MULTI:
            parts.append(ANY)
        elif part == SpecialChars.WILDCARD_SINGLE:
            parts.append(ONE)
    return parts


def _flatten(pattern: list[Any]) -> list[str]:
    out: list[str] = []
    for piece in pattern:
        if isinstance(piece, list):
            out.extend(piece)
        else:
            out.append(piece)
    return out


def _normalise(parts: list[str]) -> tuple[str, ...]:
    """Merge adjacent text, collapse runs of `*`."""
    out: list[str] = []
    for part in parts:
        if part == ANY and out and out[-1] == ANY:
            continue
        if part not in MARKERS and out and out[-1] not in MARKERS:
            out[-1] += part
        elif part:
            out.append(part)
    return tuple(out)


def string_atom(field: str | None, parts: tuple[str, ...], cased: bool) -> Atom:
    """A string comparison: exact, prefix, suffix, substring or general wildcard pattern."""
    keyword = field is None
    if keyword:
        # Keywords search the whole event: unanchored on both sides.
        parts = _normalise([ANY, *parts, ANY])
    texts = [p for p in parts if p not in MARKERS]
    markers = [p for p in parts if p in MARKERS]
    mode: str
    if not markers:
        mode, text = "eq", parts[0] if parts else ""
    elif parts == (ANY,):
        mode, text = "any", ""
    elif len(parts) == 2 and parts[0] == ANY and texts:
        mode, text = "end", parts[1]
    elif len(parts) == 2 and parts[1] == ANY and texts:
        mode, text = "start", parts[0]
    elif len(parts) == 3 and parts[0] == ANY and parts[2] == ANY and texts:
        mode, text = "has", parts[1]
    else:
        mode, text = "glob", ""
    folded = fold(text)
    literal: Literal | None = None
    exact = False
    usable = _usable(folded)
    if keyword:
        literal = _keyword_literal(folded) if mode in ("has", "end") else None
        if mode == "glob":
            literal = _glob_literal(field, parts)
    elif mode == "eq" and usable:
        literal = Literal(folded, field, anchored=True, terminated=True)
        exact = not cased
    elif mode == "start" and usable:
        literal = Literal(folded, field, anchored=True)
        exact = not cased
    elif mode == "end" and usable and folded:
        literal = Literal(folded, field, terminated=True)
    elif mode == "has" and usable and folded:
        literal = Literal(folded, field)
    elif mode == "glob":
        literal = _glob_literal(field, parts)
    args: tuple[object, ...]
    if mode == "glob":
        args = (
            mode,
            tuple(p if p in MARKERS else (p if cased else fold(p)) for p in parts),
            cased,
        )
    else:
        args = (mode, text if cased else folded, cased)
    return Atom("kw" if keyword else "str", field, args, literal, exact)


# Keywords are looked for in the record's JSON text, as its writer escaped it. Writers agree on
# `"` and `\\` (written `\\"` and `\\\\`, as the literal is), but some escape `/`, `<`, `>`, `&`,
# `'`, `+`, `` ` `` (.NET) or any non-ASCII character as `\\uXXXX`, and control characters vary: a
# keyword's literal is its longest run of the printable ASCII characters no writer escapes.
_KEYWORD_RUN = re.compile(r"[ !#-%(-*,-.0-;=?-_a-~]{3,}")


def _keyword_literal(folded: str) -> Literal | None:
    runs = _KEYWORD_RUN.findall(folded)
    return Literal(max(runs, key=len)) if runs else None


def _glob_literal(field: str | None, parts: tuple[str, ...]) -> Literal | None:
    if field is None:
        runs = [_keyword_literal(fold(p)) for p in parts if p not in MARKERS]
        return max((r for r in runs if r), key=lambda lit: len(lit.text), default=None)
    candidates: list[Literal] = []
    for index, part in enumerate(parts):
        if part in MARKERS:
            continue
        folded = fold(part)
        if not _usable(folded):
            continue
        anchored = index == 0 and field is not None
        terminated = index == len(parts) - 1 and field is not None
        candidates.append(Literal(folded, field, anchored, terminated))
    if not candidates:
        return None
    # anchored or terminated literals are more specific; otherwise the longest text
    return max(candidates, key=lambda lit: len(lit.text) + 8 * (lit.anchored + lit.terminated))


def _usable(text: str) -> bool:
    """Whether text can be a prefilter literal: no NUL (Hyperscan's literal API stops there), no
    buffer separator, no lone surrogate."""
    return not any(c in "\x00\x1e\x1f" or "\ud800" <= c <= "\udfff" for c in text)


def value_atoms(
    field: str | None,
    value: SigmaType,
    *,
    windash: bool = False,
    placeholders: dict[str, list[str]] | None = None,
) -> list[Atom]:
    """Atoms for one rule value (several when placeholders expand); OR-ed by the caller."""
    if isinstance(value, SigmaString):
        cased = isinstance(value, SigmaCasedString)
        return [
            string_atom(field, parts, cased) for parts in string_parts(value, placeholders, windash)
        ]
    if isinstance(value, SigmaTimestampPart):
        _need_field(field, "a time part modifier")
        return [Atom("time", field, (value.timestamp_part.name.lower(), int(value.number)))]
    if isinstance(value, SigmaNumber):
        text = _number_text(value.number)
        return [string_atom(field, (text,), False)]
    if isinstance(value, SigmaBool):
        _need_field(field, "a boolean")
        return [Atom("bool", field, (value.boolean,))]
    if isinstance(value, SigmaNull):
        _need_field(field, "null")
        return [Atom("null", field, ())]
    if isinstance(value, SigmaExists):
        _need_field(field, "exists")
        return [Atom("exists", field, (value.exists,))]
    if isinstance(value, SigmaRegularExpression):
        return [regex_atom(field, value, placeholders)]
    if isinstance(value, SigmaCIDRExpression):
        _need_field(field, "cidr")
        return [cidr_atom(field, str(value.network))]  # type: ignore[arg-type]
    if isinstance(value, SigmaCompareExpression):
        _need_field(field, "a numeric comparison")
        op = value.op.name.lower()
        return [Atom("cmp", field, (op, float(value.number.number)))]
    if isinstance(value, SigmaFieldReference):
        _need_field(field, "fieldref")
        mode = {
            (False, False): "eq",
            (True, True): "has",
            (True, False): "start",
            (False, True): "end",
        }[(value.starts_with, value.ends_with)]
        return [Atom("ref", field, (value.field, mode))]
    raise UnsupportedValue(f"unsupported value type {type(value).__name__}")


def _need_field(field: str | None, what: str) -> None:
    if field is None:
        raise UnsupportedValue(f"{what} needs a field name")


def _number_text(number: int | float) -> str:
    if isinstance(number, float) and number.is_integer():
        return str(int(number))
    return str(number)


def regex_atom(
    field: str | None, value: SigmaRegularExpression, placeholders: dict[str, list[str]] | None
) -> Atom:
    if value.regexp.contains_placeholder():
        raise UnsupportedValue("placeholders inside regular expressions are not supported")
    pattern = str(value.regexp)
    flags = "".join(sorted(FLAG_LETTERS[f] for f in value.flags if f in FLAG_LETTERS))
    problem = check_regex(pattern, flags)
    if problem:
        raise UnsupportedValue(problem)
    text = required_literal(pattern, flags)
    literal = Literal(text, field) if text else None
    return Atom("re", field, (pattern, flags), literal)


def cidr_atom(field: str, network: str) -> Atom:
    net = ipaddress.ip_network(network, strict=False)
    literal = None
    if net.version == 4 and net.prefixlen >= 16:
        # the whole octets the prefix fixes, at most three so the literal ends with a dot; not
        # anchored, as the test accepts an address in brackets or with spaces around it
        octets = str(net.network_address).split(".")[: min(net.prefixlen // 8, 3)]
        literal = Literal(".".join(octets) + ".", field)
    return Atom("cidr", field, (str(net),), literal)
