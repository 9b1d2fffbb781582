"""Many rules in one engine: each rule keeps its own meaning when rules share values, fields
and literals, and events matched in one stream do not influence each other.

The expected sets are worked out by hand from sigma-rules-specification.md ("General": values
are case-insensitive, wildcards `*`/`?`; "Keywords search": anywhere in the event; "Condition":
and/not) and sigma-appendix-modifiers.md (contains, startswith, endswith, cased, re is
case-sensitive, all, gt).
"""

from __future__ import annotations

import uuid

import pytest

from vigil.detect.sigma import rules_from_text

RULES = {
    "contains": "sel:\n    A|contains: 'evil'\ncondition: sel",
    "exact_b": "sel:\n    B: 'evil'\ncondition: sel",
    "keyword": "kw:\n    - 'evil'\ncondition: kw",
    "startswith": "sel:\n    A|startswith: 'evil'\ncondition: sel",
    "endswith": "sel:\n    A|endswith: 'evil'\ncondition: sel",
    "not_filter": (
        "sel:\n    C: 'x'\nfilter:\n    A|contains: 'evil'\ncondition: sel and not filter"
    ),
    "cased": "sel:\n    A|cased: 'Evil'\ncondition: sel",
    "exact_a": "sel:\n    A: 'evil'\ncondition: sel",
    "regex": "sel:\n    A|re: '^ev.l$'\ncondition: sel",
    "glob": "sel:\n    A: 'ev?l'\ncondition: sel",
    "all_b": "sel:\n    B|contains|all:\n        - 'ev'\n        - 'il'\ncondition: sel",
    "eventid": "sel:\n    EventID: 1\ncondition: sel",
    "gt": "sel:\n    EventID|gt: 1\ncondition: sel",
}

CASES = [
    ({"A": "evil"}, {"contains", "keyword", "startswith", "endswith", "exact_a", "regex", "glob"}),
    ({"A": "Evil"}, {"contains", "keyword", "startswith", "endswith", "cased", "exact_a", "glob"}),
    ({"B": "evil"}, {"exact_b", "keyword", "all_b"}),
    ({"B": "EVIL", "C": "x"}, {"exact_b", "keyword", "all_b", "not_filter"}),
    ({"A": "the evil one", "C": "x"}, {"contains", "keyword"}),
    ({"A": "evil one"}, {"contains", "keyword", "startswith"}),
    ({"A": "one evil"}, {"contains", "keyword", "endswith"}),
    ({"A": "good", "C": "x"}, {"not_filter"}),
    ({"D": "evil"}, {"keyword"}),
    ({"A": "eval"}, {"regex", "glob"}),
    (
        {"A": "evil", "B": "evil"},
        {
            "contains",
            "exact_b",
            "keyword",
            "startswith",
            "endswith",
            "exact_a",
            "regex",
            "glob",
            "all_b",
        },
    ),
    ({"B": "il ev"}, {"all_b"}),
    ({"A": "evi"}, set()),
    ({}, set()),
    ({"EventID": 1}, {"eventid"}),
    ({"EventID": "10"}, {"gt"}),
    ({"EventID": 2}, {"gt"}),
]


@pytest.fixture(scope="module")
def loaded(make_rule_yaml):
    texts = [
        make_rule_yaml(detection, rule_id=str(uuid.uuid5(uuid.NAMESPACE_URL, title)), title=title)
        for title, detection in RULES.items()
    ]
    result = rules_from_text(*texts)
    assert not result.plan.problems, [p.reason for p in result.plan.problems]
    return result


def titles(loaded, matches):
    return {loaded.plan.rules[m.rule].title for m in matches}


@pytest.mark.parametrize(("fields", "expected"), CASES, ids=[str(c[0]) for c in CASES])
def test_each_rule_keeps_its_meaning_among_many(loaded, event, fields, expected):
    assert titles(loaded, loaded.engine.match([event(fields)])) == expected


def test_events_in_one_stream_are_matched_independently(loaded, event):
    events = [event(fields, record=i) for i, (fields, _) in enumerate(CASES)]
    found: dict[int, set[str]] = {i: set() for i in range(len(CASES))}
    for match in loaded.engine.match(events):
        found[match.event.record].add(loaded.plan.rules[match.rule].title)
    assert found == {i: expected for i, (_, expected) in enumerate(CASES)}


def test_stream_in_reverse_order_gives_the_same_matches(loaded, event):
    events = [event(fields, record=i) for i, (fields, _) in enumerate(CASES)][::-1]
    found: dict[int, set[str]] = {i: set() for i in range(len(CASES))}
    for match in loaded.engine.match(events):
        found[match.event.record].add(loaded.plan.rules[match.rule].title)
    assert found == {i: expected for i, (_, expected) in enumerate(CASES)}
