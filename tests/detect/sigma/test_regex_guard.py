"""Regular expressions run on RE2 when they can; the others run under a time limit."""

from __future__ import annotations

import re2

from vigil.detect.sigma import RegexStats, rules_from_text
from vigil.detect.sigma.regex import compile_search, re2_predicate
from vigil.events import Event

HOSTILE = r"""
title: Hostile regex
id: 0b3a6f4e-1c2d-4e5f-9a8b-7c6d5e4f3a2b
logsource: {product: testprod}
detection:
  selection:
    Payload|re: '(a|aa)+(?<=a)c'
  condition: selection
level: low
"""


def test_patterns_re2_accepts_run_on_re2() -> None:
    _, engine = compile_search(r"^(a+)+b$", "")
    assert engine == "re2"


def test_lookarounds_and_backreferences_run_on_the_guarded_engine() -> None:
    for pattern in (r"(?<=x)y", r"(a)\1", r"(a|aa)+(?<=a)c"):
        search, engine = compile_search(pattern, "")
        assert engine == "guarded"
    search, _ = compile_search(r"(a)\1", "")
    assert search("xaay") and not search("xay")


def test_a_catastrophic_pattern_gives_up_on_a_hostile_line_and_the_rest_goes_on() -> None:
    loaded = rules_from_text(HOSTILE)
    assert not loaded.plan.problems
    before = RegexStats.timeouts
    hostile = Event({"Payload": "a" * 40 + "!"}, "test", 1, product="testprod")
    benign = Event({"Payload": "aac"}, "test", 2, product="testprod")
    matched = [m.event.record for m in loaded.engine.match([hostile, benign])]
    assert matched == [2]
    assert RegexStats.timeouts == before + 1


def test_yes_or_no_from_re2_itself_agrees_with_its_wrapper() -> None:
    patterns = [r"(a+)+b$", r"^[a-z]{3}\d", r"é+(x|y)", r"", r"b", r"\bword\b", r"(?i)MiXeD"]
    texts = ["aaab", "aaa", "abc1", "xéé y", "ééx", "", "a word here", "mixed", "b\n"]
    for pattern in patterns:
        compiled = re2.compile(pattern)
        for whole in (False, True):
            method = compiled.fullmatch if whole else compiled.search
            direct = re2_predicate(compiled, whole=whole)
            for text in texts:
                assert direct(text) == (method(text) is not None), (pattern, whole, text)

    class Wrapped:  # a compiled pattern without google-re2's binding underneath
        def __init__(self, pattern: str) -> None:
            self.search = re2.compile(pattern).search
            self.fullmatch = re2.compile(pattern).fullmatch

    assert re2_predicate(Wrapped("b+"))("abbc")
    assert not re2_predicate(Wrapped("b+"), whole=True)("abbc")
