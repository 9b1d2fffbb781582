"""Regular expressions for rules: RE2 (linear time) where the pattern allows, else a guarded engine.

Also extracts a literal every match must contain, so a regex only runs on events that hold it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

import re2
import regex as guarded_regex

try:  # google-re2's binding, below its Python wrapper (not public: used only if it is there)
    from re2 import _re2 as _re2_binding
except ImportError:  # pragma: no cover - another layout of google-re2
    _re2_binding = None

from vigil.detect.sigma.folding import fold

# A pattern RE2 rejects runs on `regex` with this budget per value; a value that would take
# longer counts as no match and is counted in the scan's statistics.
GUARD_TIMEOUT_S = 0.05
GUARD_MAX_INPUT = 1 << 20

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


class RegexStats:
    """Counts of regex evaluations that ran on the guarded engine and hit its time limit."""

    timeouts = 0


Matcher = Callable[[str], bool]

_BINDING: Any = getattr(_re2_binding, "RE2", None)
_ANCHORS: Any = getattr(_BINDING, "Anchor", None)


def re2_predicate(compiled: Any, whole: bool = False) -> Matcher:
    """Whether a compiled RE2 pattern is found in a text (`whole`: matches all of it).

    Calls RE2's binding directly: the wrapper's search and fullmatch also build a match object
    and tables of character offsets, which cost more than the match itself when the question
    is only yes or no. Falls back to the wrapper if its binding is not the expected one."""
    regexp = getattr(compiled, "_regexp", None)
    if _ANCHORS is None or not isinstance(regexp, _BINDING):
        method = compiled.fullmatch if whole else compiled.search

        def wrapped(text: str) -> bool:
            return method(text) is not None

        return wrapped
    match = regexp.Match
    anchor = _ANCHORS.ANCHOR_BOTH if whole else _ANCHORS.UNANCHORED

    def run(text: str) -> bool:
        data = text.encode("utf-8")  # as the wrapper does: its offsets are bytes
        return match(anchor, data, 0, len(data))[0][0] != -1  # type: ignore[no-any-return]

    return run


def compile_search(pattern: str, flags: str) -> tuple[Matcher, str]:
    """A `search` predicate for the pattern with Sigma flags (subset of "ims"), and the engine
    used ("re2" or "guarded")."""
    prefix = "".join(sorted(set(flags) & set("ims")))
    body = pattern if "m" in prefix else _pcre_dollar(pattern)
    full = f"(?{prefix}){body}" if prefix else body
    try:
        compiled = re2.compile(full, _RE2_OPTIONS)
    except re2.error:
        return _guarded(pattern, prefix), "guarded"
    return re2_predicate(compiled), "re2"


def _pcre_dollar(pattern: str) -> str:
    """PCRE's `$` (outside multi-line mode) also matches before a final newline; RE2's only at
    the very end. Rewrite each unescaped `$` outside a character class as `\\n?\\z`."""
    out = []
    escaped = in_class = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "$":
            out.append("(?:\\n?\\z)")
            continue
        out.append(char)
    return "".join(out)


def _guarded(pattern: str, prefix: str) -> Matcher:
    flag_bits = 0
    for char, bit in (
        ("i", guarded_regex.IGNORECASE),
        ("m", guarded_regex.MULTILINE),
        ("s", guarded_regex.DOTALL),
    ):
        if char in prefix:
            flag_bits |= bit
    compiled = guarded_regex.compile(pattern, flag_bits)

    def run(text: str) -> bool:
        if len(text) > GUARD_MAX_INPUT:
            text = text[:GUARD_MAX_INPUT]
        try:
            return compiled.search(text, timeout=GUARD_TIMEOUT_S) is not None
        except TimeoutError:
            RegexStats.timeouts += 1
            return False

    return run


def check(pattern: str, flags: str) -> str | None:
    """Why the pattern cannot be used, or None."""
    try:
        compile_search(pattern, flags)
    except (guarded_regex.error, re.error, ValueError, OverflowError) as exc:
        return f"invalid regular expression {pattern!r}: {exc}"
    return None


def required_literal(pattern: str, flags: str) -> str | None:
    """The longest run of plain ASCII characters every match must contain (case-folded), or
    None when there is no such run of at least 3 characters.

    The pattern is read with Python's parser, which agrees with RE2 on plain syntax; a pattern
    with a POSIX class (`[[:alpha:]]`, which Python reads as a class and a literal `]`) gets no
    literal rather than a wrong one."""
    if "[:" in pattern and ":]" in pattern:
        return None
    try:
        parsed = sre_parse.parse(pattern, re.IGNORECASE if "i" in flags else 0)
    except (re.error, RecursionError, OverflowError):
        return None
    runs: list[str] = []
    _walk(list(parsed), runs)
    best = max(runs, key=len, default="")
    return fold(best) if len(best) >= 3 else None


def _walk(items: list[tuple[Any, Any]], runs: list[str]) -> None:
    current: list[str] = []

    def flush() -> None:
        if current:
            runs.append("".join(current))
            current.clear()

    for op, arg in items:
        name = str(op)
        if name == "LITERAL" and arg < 128 and chr(arg).isprintable():
            current.append(chr(arg))
            continue
        if name == "SUBPATTERN":
            # a plain group: its content is required in sequence, but keep runs separate
            flush()
            _walk(list(arg[-1]), runs)
            continue
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT") and arg[0] >= 1:
            flush()
            _walk(list(arg[2]), runs)
            continue
        # anything else (branches, classes, anchors, optional parts) breaks the run
        flush()
    flush()
