"""Routing settles what the routing fields' values decide: a rule whose condition cannot hold
for an event's Channel, EventID or Provider_Name is not tried on it, and every rule that can
hold still answers as its condition says.

Expected results follow the Sigma specification's plain reading (sigma-rules-specification.md
"Detection": a list of values is an OR, `not` negates, `condition` combines the selections;
modifiers appendix: `contains`, wildcards).
"""

from __future__ import annotations

from typing import Any

from vigil.detect.sigma import LoadedRules, rules_from_text
from vigil.events import Event


def _rule(rule_id: str, detection: str, service: str = "security") -> str:
    return (
        f"title: Rule {rule_id[:4]}\nid: {rule_id}\n"
        f"logsource:\n    product: windows\n    service: {service}\n"
        f"detection:\n{detection}\nlevel: high\n"
    )


# An SID history rule as SigmaHQ writes it: nothing in it the prefilter can look for, so
# without routing values it is tried on every Security event.
SID_HISTORY = _rule(
    "2632954e-db1c-49cb-9936-67d1ef1d17d2",
    """    selection_id:
        EventID:
            - 4765
            - 4766
    selection_4738:
        EventID: 4738
    filter_null:
        SidHistory:
            - '-'
            - '%%1793'
    filter_empty:
        SidHistory|exists: false
    condition: selection_id or (selection_4738 and not 1 of filter_*)""",
)
# Every Security event but the logons.
NOT_A_LOGON = _rule(
    "0c0d44bd-1ad4-4b8a-a1e6-0bbd8c9d0e0a",
    """    selection:
        SubjectUserName|endswith: '$'
    filter:
        EventID: 4624
    condition: selection and not filter""",
)
# A rule of the Provider_Name routing field, and one asking whether it is there.
PROVIDER = _rule(
    "6f2f2f8e-1b7a-4c43-9a0d-9bb0f3a4e9d1",
    """    selection:
        Provider_Name: 'Microsoft-Windows-Security-Auditing'
        EventID: 4625
    condition: selection""",
)
NO_PROVIDER = _rule(
    "8a9c1d0e-3f4b-4e5a-8c6d-7e8f9a0b1c2d",
    """    selection:
        Provider_Name|exists: false
        EventID: 4625
    condition: selection""",
)


def _matching(loaded: LoadedRules, fields: dict[str, Any]) -> list[str]:
    event = Event(fields=dict(fields), source="t", record=1, product="windows")
    return [loaded.plan.rules[m.rule].rule_id[:4] for m in loaded.engine.match([event])]


def test_a_rule_for_other_event_ids_is_not_tried_on_the_event() -> None:
    loaded = rules_from_text(SID_HISTORY)
    logon = {"Channel": "Security", "EventID": 4624, "TargetUserName": "bob"}
    before = loaded.engine.counters["candidates"]
    assert _matching(loaded, logon) == []
    assert loaded.engine.counters["candidates"] == before  # not even tried
    assert _matching(loaded, {"Channel": "Security", "EventID": 4765}) == ["2632"]
    changed = {"Channel": "Security", "EventID": 4738, "SidHistory": "S-1-5-21-1"}
    assert _matching(loaded, changed) == ["2632"]
    assert _matching(loaded, {**changed, "SidHistory": "-"}) == []
    assert _matching(loaded, {"Channel": "Security", "EventID": 4738}) == []


def test_a_rule_excluding_an_event_id_still_holds_for_the_others() -> None:
    loaded = rules_from_text(NOT_A_LOGON)
    machine = {"Channel": "Security", "SubjectUserName": "HOST$"}
    assert _matching(loaded, {**machine, "EventID": 4624}) == []
    assert _matching(loaded, {**machine, "EventID": 4672}) == ["0c0d"]
    assert _matching(loaded, machine) == ["0c0d"]  # no EventID at all: the filter is false
    assert _matching(loaded, {**machine, "EventID": "4624"}) == []  # as text: the same id


def test_event_ids_written_as_text_or_as_numbers_route_alike() -> None:
    loaded = rules_from_text(SID_HISTORY, NOT_A_LOGON)
    for event_id in (4765, "4765"):
        fields = {"Channel": "Security", "EventID": event_id, "SubjectUserName": "A$"}
        assert sorted(_matching(loaded, fields)) == ["0c0d", "2632"]
    for event_id in (4624, "4624"):
        fields = {"Channel": "Security", "EventID": event_id, "SubjectUserName": "A$"}
        assert _matching(loaded, fields) == []


def test_values_that_are_not_plain_are_not_used_to_settle_a_rule() -> None:
    loaded = rules_from_text(SID_HISTORY)
    # a list holding the id, a boolean and a float: the exact tests decide, as without routing
    assert _matching(loaded, {"Channel": "Security", "EventID": [4624, 4765]}) == ["2632"]
    assert _matching(loaded, {"Channel": "Security", "EventID": True}) == []
    assert _matching(loaded, {"Channel": "Security", "EventID": 4765.0}) == []


def test_a_routing_field_that_is_missing_or_null_settles_nothing() -> None:
    loaded = rules_from_text(PROVIDER, NO_PROVIDER)
    failed = {"Channel": "Security", "EventID": 4625}
    provider = "Microsoft-Windows-Security-Auditing"
    assert _matching(loaded, {**failed, "Provider_Name": provider}) == ["6f2f"]
    assert _matching(loaded, failed) == ["8a9c"]
    # present but null: it exists (Sigma's `exists` asks for the field, not for a value)
    assert _matching(loaded, {**failed, "Provider_Name": None}) == []
    assert _matching(loaded, {**failed, "Provider_Name": "Other"}) == []


def test_a_long_contains_list_matches_like_each_of_its_values(sigma_rule) -> None:
    words = [f"tool{i:02d}.exe" for i in range(40)] + ["Ünïcode", "a|b(c"]
    listed = "\n".join(f"                - '{w}'" for w in words)
    rule = sigma_rule(f"""
        selection:
            CommandLine|contains:
{listed}
        condition: selection
    """)
    for word in words:
        assert rule.matches({"CommandLine": f"run {word.upper()} now"})
    assert rule.matches({"CommandLine": ["nothing", "x tool39.exe"]})
    assert not rule.matches({"CommandLine": "tool40.exe a|bc unicode"})
    # a lone surrogate (a broken log) cannot be given to RE2: the values are looked for one by one
    assert rule.matches({"CommandLine": "\ud800 tool07.exe"})
    assert not rule.matches({"CommandLine": "\ud800 tool"})


def test_a_list_of_wildcard_values_matches_each_value_whole(sigma_rule) -> None:
    rule = sigma_rule(r"""
        selection:
            Image:
                - 'C:\Windows\Sys*\cmd.exe'
                - '*\powershell?.exe'
                - 'D:\exact.exe'
        condition: selection
    """)
    assert rule.matches({"Image": r"c:\windows\system32\CMD.EXE"})
    assert rule.matches({"Image": r"e:\x\powershell7.exe"})
    assert rule.matches({"Image": r"D:\exact.exe"})
    assert not rule.matches({"Image": r"c:\windows\system32\cmd.exe.bak"})
    assert not rule.matches({"Image": r"c:\windows\temp\cmd.exe"})
    assert not rule.matches({"Image": r"e:\x\powershell.exe"})
    assert not rule.matches({"Image": r"x D:\exact.exe"})


def test_a_rule_value_holding_a_separator_character_is_tested_on_the_value(sigma_rule) -> None:
    # The prefilter separates values with these characters: a rule value holding one gets no
    # prefilter literal and is tested on the field alone, whatever the order of the fields.
    rule = sigma_rule("""
        selection:
            CommandLine: "a\\x1eb"
        condition: selection
    """)
    assert rule.matches({"CommandLine": "A\x1eB", "Other": "b"})
    assert rule.matches({"Other": "a", "CommandLine": "a\x1eb"})
    assert not rule.matches({"CommandLine": "a", "Other": "b"})
