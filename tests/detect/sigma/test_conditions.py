"""Conditions, keywords, missing fields, several rules at once and rules that do not load.

Expectations come from /work/shared/docs/sigma-specification/specification/
sigma-rules-specification.md ("rules" below).
"""

from __future__ import annotations

from vigil.detect.sigma import rules_from_text

ID_A = "3a1f7d2e-8b4c-4d5e-9f60-1a2b3c4d5e6f"
ID_B = "7c9e1b3d-5f7a-4b2c-8d4e-6f8a0b2c4d6e"
ID_C = "e2d4f6a8-0b1c-4d3e-8f5a-7b9c1d3e5f70"


# --------------------------------------------------------------------------------------------
# Keywords. rules "Lists": strings in a list "are applied to the full log message and are linked
# with a logical 'OR'"; rules "Keywords search": keywords are searched "across an entire event";
# `'|all':` links them with AND. rules "General": values are case-insensitive.
# --------------------------------------------------------------------------------------------


def test_keywords_match_anywhere_in_any_field_case_insensitively(sigma_rule):
    rule = sigma_rule("""
        keywords:
            - 'EVILSERVICE'
            - 'svchost.exe -n evil'
        condition: keywords
    """)
    assert rule.matches({"Message": "Service evilservice was installed"})
    assert rule.matches({"Other": "x", "CommandLine": r"C:\Windows\SVCHOST.EXE -n evil -k"})
    assert not rule.matches({"Message": "Service goodservice was installed"})
    assert not rule.matches({"CommandLine": "svchost.exe -n good"})


def test_keywords_search_the_values_not_the_field_names(sigma_rule):
    rule = sigma_rule("""
        keywords:
            - 'evilservice'
        condition: keywords
    """)
    assert not rule.matches({"EvilService": "benign"})


def test_keyword_matches_a_numeric_field_value(sigma_rule):
    # the "full log message" includes values that are numbers
    rule = sigma_rule("""
        keywords:
            - '4625'
        condition: keywords
    """)
    assert rule.matches({"EventID": 4625})
    assert not rule.matches({"EventID": 4624})


def test_keywords_all_require_every_keyword(sigma_rule):
    rule = sigma_rule("""
        keywords_cmdlet:
            '|all':
                - 'OabVirtualDirectory'
                - ' -ExternalUrl '
        condition: keywords_cmdlet
    """)
    assert rule.matches({"Payload": "Set-OabVirtualDirectory -ExternalUrl 'http://x'"})
    assert not rule.matches({"Payload": "Set-OabVirtualDirectory -InternalUrl 'http://x'"})
    assert not rule.matches({"Payload": "Set-Other -ExternalUrl 'http://x'"})


def test_keywords_all_may_be_found_in_different_fields(sigma_rule):
    # searched "across an entire event"
    rule = sigma_rule("""
        keywords_cmdlet:
            '|all':
                - 'OabVirtualDirectory'
                - ' -ExternalUrl '
        condition: keywords_cmdlet
    """)
    assert rule.matches({"Cmdlet": "Set-OabVirtualDirectory", "Params": "x -ExternalUrl y"})


def test_keywords_combined_with_a_field_selection(sigma_rule):
    rule = sigma_rule("""
        selection:
            EventID: 7045
        keywords:
            - 'mimikatz'
        condition: selection and keywords
    """)
    assert rule.matches({"EventID": 7045, "ServiceName": "MimiKatz-svc"})
    assert not rule.matches({"EventID": 7045, "ServiceName": "spooler"})
    assert not rule.matches({"EventID": 7036, "ServiceName": "mimikatz"})


# --------------------------------------------------------------------------------------------
# Logical operators. rules "Condition": and, or, not, brackets.
# --------------------------------------------------------------------------------------------

ABC = """
    sel_a:
        A: 'a'
    sel_b:
        B: 'b'
    sel_c:
        C: 'c'
    condition: {condition}
"""


def test_and_requires_both(sigma_rule):
    rule = sigma_rule(ABC.format(condition="sel_a and sel_b"))
    assert rule.matches({"A": "a", "B": "b"})
    assert not rule.matches({"A": "a"})
    assert not rule.matches({"B": "b"})


def test_or_requires_either(sigma_rule):
    rule = sigma_rule(ABC.format(condition="sel_a or sel_b"))
    assert rule.matches({"A": "a"})
    assert rule.matches({"B": "b"})
    assert not rule.matches({"C": "c"})


def test_not_negates(sigma_rule):
    rule = sigma_rule(ABC.format(condition="sel_a and not sel_b"))
    assert rule.matches({"A": "a", "B": "x"})
    assert not rule.matches({"A": "a", "B": "b"})


# rules "Condition", Operator Precedence (least to most binding): or, and, not, x of, ( ).


def test_and_binds_tighter_than_or(sigma_rule):
    # a or b and c  ==  a or (b and c)
    rule = sigma_rule(ABC.format(condition="sel_a or sel_b and sel_c"))
    assert rule.matches({"A": "a"})  # would fail if read as (a or b) and c
    assert rule.matches({"B": "b", "C": "c"})
    assert not rule.matches({"B": "b"})
    assert not rule.matches({"C": "c"})


def test_and_binds_tighter_than_or_on_the_left_too(sigma_rule):
    # a and b or c  ==  (a and b) or c
    rule = sigma_rule(ABC.format(condition="sel_a and sel_b or sel_c"))
    assert rule.matches({"C": "c"})  # would fail if read as a and (b or c)
    assert rule.matches({"A": "a", "B": "b"})
    assert not rule.matches({"A": "a"})


def test_not_binds_tighter_than_and(sigma_rule):
    # not a and b  ==  (not a) and b
    rule = sigma_rule(ABC.format(condition="not sel_a and sel_b"))
    assert rule.matches({"B": "b"})
    assert not rule.matches({})  # would match if read as not (a and b)
    assert not rule.matches({"A": "a", "B": "b"})


def test_not_binds_tighter_than_or(sigma_rule):
    # not a or b  ==  (not a) or b
    rule = sigma_rule(ABC.format(condition="not sel_a or sel_b"))
    assert rule.matches({"A": "a", "B": "b"})  # would not match if read as not (a or b)
    assert rule.matches({})
    assert not rule.matches({"A": "a"})


def test_parentheses_override_precedence(sigma_rule):
    rule = sigma_rule(ABC.format(condition="(sel_a or sel_b) and sel_c"))
    assert rule.matches({"A": "a", "C": "c"})
    assert rule.matches({"B": "b", "C": "c"})
    assert not rule.matches({"A": "a"})


def test_not_of_parenthesised_expression(sigma_rule):
    rule = sigma_rule(ABC.format(condition="sel_c and not (sel_a or sel_b)"))
    assert rule.matches({"C": "c"})
    assert not rule.matches({"C": "c", "A": "a"})
    assert not rule.matches({"C": "c", "B": "b"})


def test_nested_parentheses(sigma_rule):
    rule = sigma_rule(ABC.format(condition="((sel_a and (sel_b or sel_c)))"))
    assert rule.matches({"A": "a", "C": "c"})
    assert not rule.matches({"B": "b", "C": "c"})


def test_and_not_or_chain_follows_precedence(sigma_rule):
    rule = sigma_rule(ABC.format(condition="sel_a and not sel_b or sel_c"))
    # ((a and (not b)) or c)
    assert rule.matches({"A": "a"})
    assert rule.matches({"A": "a", "B": "b", "C": "c"})
    assert not rule.matches({"A": "a", "B": "b"})


# --------------------------------------------------------------------------------------------
# x of. rules "Condition": "1/all of them" (all search identifiers not starting with `_`) and
# "1/all of search-identifier-pattern" (`*` wildcards in the pattern).
# --------------------------------------------------------------------------------------------

SELECTIONS = r"""
    selection_img:
        Image|endswith: '\\rundll32.exe'
    selection_cli:
        CommandLine|contains: 'javascript:'
    filter_signed:
        Signed: 'true'
    condition: {condition}
"""


def test_one_of_pattern_matches_if_any_matching_identifier_holds(sigma_rule):
    rule = sigma_rule(SELECTIONS.format(condition="1 of selection_*"))
    assert rule.matches({"Image": r"C:\Windows\rundll32.exe"})
    assert rule.matches({"CommandLine": "x javascript:alert"})
    assert not rule.matches({"Signed": "true"})  # filter_signed is not selection_*


def test_all_of_pattern_requires_every_matching_identifier(sigma_rule):
    rule = sigma_rule(SELECTIONS.format(condition="all of selection_*"))
    assert rule.matches({"Image": r"C:\Windows\rundll32.exe", "CommandLine": "javascript:x"})
    assert not rule.matches({"Image": r"C:\Windows\rundll32.exe"})
    assert not rule.matches({"CommandLine": "javascript:x"})


def test_one_of_pattern_and_not_one_of_filters(sigma_rule):
    # rules "Condition" example: `1 of selection* and not 1 of filter*`
    rule = sigma_rule(SELECTIONS.format(condition="1 of selection* and not 1 of filter*"))
    assert rule.matches({"Image": r"C:\rundll32.exe", "Signed": "false"})
    assert rule.matches({"Image": r"C:\rundll32.exe"})
    assert not rule.matches({"Image": r"C:\rundll32.exe", "Signed": "true"})


def test_x_of_binds_tighter_than_not_and_and(sigma_rule):
    # not 1 of filter* and 1 of selection*  ==  (not (1 of filter*)) and (1 of selection*)
    rule = sigma_rule(SELECTIONS.format(condition="not 1 of filter* and 1 of selection*"))
    assert rule.matches({"CommandLine": "javascript:x"})
    assert not rule.matches({"CommandLine": "javascript:x", "Signed": "true"})
    assert not rule.matches({})


def test_one_of_them_matches_any_identifier(sigma_rule):
    rule = sigma_rule(SELECTIONS.format(condition="1 of them"))
    assert rule.matches({"Signed": "true"})
    assert rule.matches({"CommandLine": "javascript:x"})
    assert not rule.matches({"Signed": "false"})


def test_all_of_them_requires_every_identifier(sigma_rule):
    rule = sigma_rule(SELECTIONS.format(condition="all of them"))
    full = {"Image": r"C:\rundll32.exe", "CommandLine": "javascript:x", "Signed": "true"}
    assert rule.matches(full)
    assert not rule.matches({**full, "Signed": "false"})


def test_identifier_pattern_wildcard_may_stand_anywhere(sigma_rule):
    # rules "Condition": "Matching is done with * wildcards ... at arbitrary positions"
    rule = sigma_rule("""
        sel_a_cmd:
            A: 'a'
        sel_b_ps:
            B: 'b'
        other_cmd:
            C: 'c'
        condition: 1 of *_cmd
    """)
    assert rule.matches({"A": "a"})
    assert rule.matches({"C": "c"})
    assert not rule.matches({"B": "b"})
    middle = sigma_rule("""
        sel_a_cmd:
            A: 'a'
        sel_b_ps:
            B: 'b'
        other_cmd:
            C: 'c'
        condition: all of sel*cmd
    """)
    assert middle.matches({"A": "a"})  # only sel_a_cmd matches the pattern
    assert not middle.matches({"B": "b", "C": "c"})


UNDERSCORE = """
    selection:
        A: 'a'
    _helper:
        B: 'b'
    condition: {condition}
"""


def test_one_of_them_ignores_identifiers_starting_with_underscore(sigma_rule):
    rule = sigma_rule(UNDERSCORE.format(condition="1 of them"))
    assert rule.matches({"A": "a"})
    assert not rule.matches({"B": "b"})


def test_all_of_them_ignores_identifiers_starting_with_underscore(sigma_rule):
    rule = sigma_rule(UNDERSCORE.format(condition="all of them"))
    assert rule.matches({"A": "a"})  # _helper need not hold
    assert not rule.matches({"B": "b"})


def test_condition_list_is_an_or_of_conditions(sigma_rule):
    # rules "Condition": "The condition can be a list ... They are logically linked with OR."
    rule = sigma_rule("""
        sel_a:
            A: 'a'
        sel_b:
            B: 'b'
        sel_c:
            C: 'c'
        condition:
            - sel_a and sel_b
            - sel_c
    """)
    assert rule.matches({"A": "a", "B": "b"})
    assert rule.matches({"C": "c"})
    assert not rule.matches({"A": "a"})
    assert not rule.matches({"B": "b"})


# --------------------------------------------------------------------------------------------
# Missing fields. A field the event does not have holds no value, so an item on it is false and
# its negation is true (cf. rules "Special Field Values": `selection and not filter` with a null
# filter selects events that have the field).
# --------------------------------------------------------------------------------------------


def test_item_on_a_missing_field_is_false(sigma_rule):
    rule = sigma_rule(r"""
        selection:
            EventID: 1
            ParentImage|endswith: '\\explorer.exe'
        condition: selection
    """)
    assert not rule.matches({"EventID": 1})


def test_not_of_an_item_on_a_missing_field_is_true(sigma_rule):
    rule = sigma_rule(r"""
        selection:
            Image|endswith: '\\powershell.exe'
        filter:
            ParentImage|endswith: '\\explorer.exe'
        condition: selection and not filter
    """)
    assert rule.matches({"Image": r"C:\ps\powershell.exe"})
    assert rule.matches({"Image": r"C:\ps\powershell.exe", "ParentImage": r"C:\cmd.exe"})
    assert not rule.matches({"Image": r"C:\ps\powershell.exe", "ParentImage": r"C:\explorer.exe"})


def test_not_of_a_contains_on_a_missing_field_is_true(sigma_rule):
    rule = sigma_rule("""
        selection:
            EventID: 4104
        filter:
            ScriptBlockText|contains: 'benign'
        condition: selection and not filter
    """)
    assert rule.matches({"EventID": 4104})
    assert not rule.matches({"EventID": 4104, "ScriptBlockText": "a benign script"})


# --------------------------------------------------------------------------------------------
# Several rules. Each rule is its own detection; two rules with the same detection each report
# the event (rules "Identification": derived rules "may remain active" side by side).
# --------------------------------------------------------------------------------------------


def test_two_rules_with_identical_detection_are_both_reported(make_rule_yaml, ids_matching):
    detection = """
        selection:
            CommandLine|contains: 'vssadmin delete shadows'
        condition: selection
    """
    loaded = rules_from_text(
        make_rule_yaml(detection, rule_id=ID_A, title="Rule A"),
        make_rule_yaml(detection, rule_id=ID_B, title="Rule B"),
    )
    assert not loaded.plan.problems
    assert sorted(ids_matching(loaded, {"CommandLine": "vssadmin delete shadows /all"})) == sorted(
        [ID_A, ID_B]
    )
    assert ids_matching(loaded, {"CommandLine": "vssadmin list shadows"}) == []


def test_each_rule_reports_only_its_own_events(make_rule_yaml, ids_matching):
    loaded = rules_from_text(
        make_rule_yaml("selection:\n    A: 'x'\ncondition: selection", rule_id=ID_A),
        make_rule_yaml("selection:\n    B: 'x'\ncondition: selection", rule_id=ID_B),
    )
    assert ids_matching(loaded, {"A": "x"}) == [ID_A]
    assert ids_matching(loaded, {"B": "x"}) == [ID_B]
    assert sorted(ids_matching(loaded, {"A": "x", "B": "x"})) == sorted([ID_A, ID_B])


def test_multi_document_text_loads_every_rule(make_rule_yaml, ids_matching):
    text = "---\n".join(
        [
            make_rule_yaml("selection:\n    A: 'x'\ncondition: selection", rule_id=ID_A),
            make_rule_yaml("selection:\n    B: 'x'\ncondition: selection", rule_id=ID_B),
        ]
    )
    loaded = rules_from_text(text)
    assert not loaded.plan.problems
    assert {r.rule_id for r in loaded.plan.rules} == {ID_A, ID_B}
    assert ids_matching(loaded, {"B": "x"}) == [ID_B]


def test_rule_metadata_is_reported(make_rule_yaml):
    text = make_rule_yaml(
        "selection:\n    A: 'x'\ncondition: selection", rule_id=ID_A, title="Meta", level="high"
    )
    text += "tags:\n    - attack.execution\n    - attack.t1059\n"
    loaded = rules_from_text(text)
    (meta,) = loaded.plan.rules
    assert (meta.rule_id, meta.title, meta.level) == (ID_A, "Meta", "high")
    assert set(meta.tags) == {"attack.execution", "attack.t1059"}


# --------------------------------------------------------------------------------------------
# Rules that cannot be used are reported in plan.problems; the other rules still load. (Modifiers
# are the standardised ones of sigma-appendix-modifiers.md; a condition names search
# identifiers of the detection; rules are YAML, rules "Yaml File".)
# --------------------------------------------------------------------------------------------

GOOD = """
    selection:
        A: 'x'
    condition: selection
"""


def _load_with_good_rule(make_rule_yaml, bad_text):
    good = make_rule_yaml(GOOD, rule_id=ID_A, title="Good rule")
    return rules_from_text(good, bad_text)


def _assert_good_rule_still_works(loaded, ids_matching):
    assert [r.rule_id for r in loaded.plan.rules] == [ID_A]
    assert ids_matching(loaded, {"A": "x"}) == [ID_A]


def test_rule_with_unknown_modifier_is_reported_and_others_load(make_rule_yaml, ids_matching):
    bad = make_rule_yaml(
        """
        selection:
            CommandLine|notamodifier: 'x'
        condition: selection
        """,
        rule_id=ID_B,
        title="Bad modifier",
    )
    loaded = _load_with_good_rule(make_rule_yaml, bad)
    _assert_good_rule_still_works(loaded, ids_matching)
    (problem,) = loaded.plan.problems
    assert (problem.rule_id, problem.title) == (ID_B, "Bad modifier")
    assert problem.reason


def test_rule_with_undefined_identifier_in_condition_is_reported(make_rule_yaml, ids_matching):
    bad = make_rule_yaml(
        """
        selection:
            A: 'x'
        condition: selection and nosuchselection
        """,
        rule_id=ID_B,
        title="Undefined identifier",
    )
    loaded = _load_with_good_rule(make_rule_yaml, bad)
    _assert_good_rule_still_works(loaded, ids_matching)
    (problem,) = loaded.plan.problems
    assert (problem.rule_id, problem.title) == (ID_B, "Undefined identifier")


def test_rule_with_unparsable_condition_is_reported(make_rule_yaml, ids_matching):
    bad = make_rule_yaml(
        """
        selection:
            A: 'x'
        condition: selection and (
        """,
        rule_id=ID_B,
        title="Broken condition",
    )
    loaded = _load_with_good_rule(make_rule_yaml, bad)
    _assert_good_rule_still_works(loaded, ids_matching)
    (problem,) = loaded.plan.problems
    assert problem.rule_id == ID_B


def test_invalid_yaml_is_reported_and_others_load(make_rule_yaml, ids_matching):
    bad = "title: Broken\nid: " + ID_B + "\ndetection: [unclosed\n  condition: x\n"
    loaded = _load_with_good_rule(make_rule_yaml, bad)
    _assert_good_rule_still_works(loaded, ids_matching)
    (problem,) = loaded.plan.problems
    assert problem.path != loaded.plan.rules[0].path  # reported against the broken text


def test_bad_rule_in_a_multi_document_text_does_not_drop_its_neighbours(
    make_rule_yaml, ids_matching
):
    bad = make_rule_yaml(
        "selection:\n    A|notamodifier: 'x'\ncondition: selection", rule_id=ID_B, title="Bad"
    )
    good_c = make_rule_yaml("selection:\n    C: 'x'\ncondition: selection", rule_id=ID_C)
    loaded = rules_from_text(make_rule_yaml(GOOD, rule_id=ID_A) + "---\n" + bad + "---\n" + good_c)
    assert {r.rule_id for r in loaded.plan.rules} == {ID_A, ID_C}
    assert [p.rule_id for p in loaded.plan.problems] == [ID_B]
    assert ids_matching(loaded, {"C": "x"}) == [ID_C]


def test_invalid_regular_expression_is_reported(make_rule_yaml, ids_matching):
    bad = make_rule_yaml(
        "selection:\n    A|re: 'unbalanced('\ncondition: selection", rule_id=ID_B, title="Bad re"
    )
    loaded = _load_with_good_rule(make_rule_yaml, bad)
    _assert_good_rule_still_works(loaded, ids_matching)
    assert [p.rule_id for p in loaded.plan.problems] == [ID_B]


def test_rule_without_condition_is_reported(make_rule_yaml, ids_matching):
    # rules "Condition": **Use:** mandatory
    bad = make_rule_yaml("selection:\n    A: 'x'", rule_id=ID_B, title="No condition")
    loaded = _load_with_good_rule(make_rule_yaml, bad)
    _assert_good_rule_still_works(loaded, ids_matching)
    assert len(loaded.plan.problems) == 1
