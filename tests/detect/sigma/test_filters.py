"""Sigma filters (meta-filters applied to rules by id).

Expectations come from /work/shared/docs/sigma-specification/specification/
sigma-filters-specification.md: a filter document has `logsource` and a `filter` section with
`rules` (the rules "where to add the filter"), a selection and a condition; its purpose is "to
suppress matches" of those rules. pySigma ANDs the filter's condition into the rule's, so the
filters below state what must hold for a match to be kept (`not selection`), which is what the
specification's example ("The valid administrator account start with adm_") intends.
"""

from __future__ import annotations

from vigil.detect.sigma import rules_from_text

RAR_ID = "6f3e2987-db24-4c78-a860-b4f4095a7095"  # the ids of the specification's example
JUMP_ID = "df0841c0-9846-4e9f-ad8a-7df91571771b"
OTHER_ID = "1d2c3b4a-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
FILTER_ID = "9a8b7c6d-5e4f-4321-8fed-cba987654321"

RAR_DETECTION = """
    selection:
        CommandLine|contains: 'rar.exe a '
    condition: selection
"""

ADMIN_FILTER = f"""\
title: Filter Administrator account
id: {FILTER_ID}
description: The valid administrator account start with adm_
logsource:
    product: testprod
filter:
    rules:
        - {RAR_ID}
    selection:
        User|startswith: 'adm_'
    condition: not selection
"""

RAR_EVENT = {"CommandLine": "rar.exe a -hp out.rar C:\\data"}


def test_filter_suppresses_matches_it_selects(make_rule_yaml, ids_matching):
    loaded = rules_from_text(make_rule_yaml(RAR_DETECTION, rule_id=RAR_ID), ADMIN_FILTER)
    assert not loaded.plan.problems, [p.reason for p in loaded.plan.problems]
    assert ids_matching(loaded, {**RAR_EVENT, "User": "adm_bob"}) == []
    assert ids_matching(loaded, {**RAR_EVENT, "User": "ADM_alice"}) == []  # case-insensitive


def test_filter_keeps_matches_it_does_not_select(make_rule_yaml, ids_matching):
    loaded = rules_from_text(make_rule_yaml(RAR_DETECTION, rule_id=RAR_ID), ADMIN_FILTER)
    assert ids_matching(loaded, {**RAR_EVENT, "User": "alice"}) == [RAR_ID]
    assert ids_matching(loaded, {**RAR_EVENT, "User": "bob_adm_"}) == [RAR_ID]
    assert ids_matching(loaded, RAR_EVENT) == [RAR_ID]  # no User at all: nothing to filter


def test_filter_does_not_make_non_matching_events_match(make_rule_yaml, ids_matching):
    loaded = rules_from_text(make_rule_yaml(RAR_DETECTION, rule_id=RAR_ID), ADMIN_FILTER)
    assert ids_matching(loaded, {"CommandLine": "notepad.exe", "User": "alice"}) == []


def test_filter_applies_only_to_the_rules_it_names(make_rule_yaml, ids_matching):
    loaded = rules_from_text(
        make_rule_yaml(RAR_DETECTION, rule_id=RAR_ID, title="Rar"),
        make_rule_yaml(RAR_DETECTION, rule_id=OTHER_ID, title="Same detection, not filtered"),
        ADMIN_FILTER,
    )
    assert ids_matching(loaded, {**RAR_EVENT, "User": "adm_bob"}) == [OTHER_ID]
    assert sorted(ids_matching(loaded, {**RAR_EVENT, "User": "alice"})) == sorted(
        [RAR_ID, OTHER_ID]
    )


def test_filter_naming_several_rules_applies_to_each(make_rule_yaml, ids_matching):
    jump = make_rule_yaml(
        """
        selection:
            EventID: 4624
            LogonType: 10
        condition: selection
        """,
        rule_id=JUMP_ID,
        title="Login on jump host",
    )
    two_rules_filter = ADMIN_FILTER.replace(
        f"        - {RAR_ID}\n", f"        - {RAR_ID}\n        - {JUMP_ID}\n"
    )
    loaded = rules_from_text(make_rule_yaml(RAR_DETECTION, rule_id=RAR_ID), jump, two_rules_filter)
    login = {"EventID": 4624, "LogonType": 10}
    assert ids_matching(loaded, {**login, "User": "adm_x"}) == []
    assert ids_matching(loaded, {**RAR_EVENT, "User": "adm_x"}) == []
    assert ids_matching(loaded, {**login, "User": "eve"}) == [JUMP_ID]
    assert ids_matching(loaded, {**RAR_EVENT, "User": "eve"}) == [RAR_ID]


def test_filter_in_the_same_multi_document_text(make_rule_yaml, ids_matching):
    text = make_rule_yaml(RAR_DETECTION, rule_id=RAR_ID) + "---\n" + ADMIN_FILTER
    loaded = rules_from_text(text)
    assert not loaded.plan.problems, [p.reason for p in loaded.plan.problems]
    assert ids_matching(loaded, {**RAR_EVENT, "User": "adm_bob"}) == []
    assert ids_matching(loaded, {**RAR_EVENT, "User": "alice"}) == [RAR_ID]


def test_filter_with_several_selections_and_its_own_condition(make_rule_yaml, ids_matching):
    # "filter selection" / "filter condition" follow the rules' detection section
    text = f"""\
title: Filter backup jobs
id: {FILTER_ID}
logsource:
    product: testprod
filter:
    rules:
        - {RAR_ID}
    selection_user:
        User: 'svc_backup'
    selection_dir:
        CommandLine|contains: '\\backup\\'
    condition: not (selection_user and selection_dir)
"""
    loaded = rules_from_text(make_rule_yaml(RAR_DETECTION, rule_id=RAR_ID), text)
    assert not loaded.plan.problems, [p.reason for p in loaded.plan.problems]
    backup_cli = "rar.exe a D:\\backup\\x.rar C:\\data"
    assert ids_matching(loaded, {"CommandLine": backup_cli, "User": "svc_backup"}) == []
    assert ids_matching(loaded, {"CommandLine": backup_cli, "User": "eve"}) == [RAR_ID]
    assert ids_matching(loaded, {**RAR_EVENT, "User": "svc_backup"}) == [RAR_ID]


def test_filter_keeps_the_rules_own_negations(make_rule_yaml, ids_matching):
    rule = make_rule_yaml(
        """
        selection:
            CommandLine|contains: 'rar.exe a '
        filter_main:
            ParentImage|endswith: '\\\\winrar.exe'
        condition: selection and not filter_main
        """,
        rule_id=RAR_ID,
    )
    loaded = rules_from_text(rule, ADMIN_FILTER)
    assert ids_matching(loaded, {**RAR_EVENT, "User": "eve"}) == [RAR_ID]
    assert (
        ids_matching(loaded, {**RAR_EVENT, "User": "eve", "ParentImage": "C:\\WinRAR\\WinRAR.exe"})
        == []
    )
    assert ids_matching(loaded, {**RAR_EVENT, "User": "adm_eve"}) == []


def test_filter_can_name_its_rule_by_name(make_rule_yaml, ids_matching):
    # rules "Name": `name` can be used instead of the id as a reference
    rule = make_rule_yaml(RAR_DETECTION, rule_id=RAR_ID, name="data_compressed_rar")
    by_name = ADMIN_FILTER.replace(f"        - {RAR_ID}\n", "        - data_compressed_rar\n")
    loaded = rules_from_text(rule, by_name)
    assert not loaded.plan.problems, [p.reason for p in loaded.plan.problems]
    assert ids_matching(loaded, {**RAR_EVENT, "User": "adm_bob"}) == []
    assert ids_matching(loaded, {**RAR_EVENT, "User": "alice"}) == [RAR_ID]
