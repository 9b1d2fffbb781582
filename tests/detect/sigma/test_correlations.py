"""Sigma correlation rules.

Expectations come from /work/shared/docs/sigma-specification/specification/
sigma-correlation-rules-specification.md ("corr" below): event_count, value_count, temporal,
temporal_ordered, group-by, timespan, the condition (including the "101 to 200" range),
`generate`, aliases and chained correlations.
"""

from __future__ import annotations

import textwrap

import pytest

from vigil.detect.sigma import rules_from_text

FAILED_ID = "5638f7c0-ac70-491d-8465-2a65075e0d86"  # ids from the specification's examples
CORR_ID = "0e95725d-7320-415d-80f7-004da920fc11"
RECON_A = "a1a1a1a1-0000-4000-8000-00000000000a"
RECON_B = "b2b2b2b2-0000-4000-8000-00000000000b"
RECON_C = "c3c3c3c3-0000-4000-8000-00000000000c"

T0 = 1_700_000_000.0  # an arbitrary epoch


def correlation_yaml(body: str, *, title: str = "Correlation", rule_id: str = CORR_ID) -> str:
    return (
        f"title: {title}\nid: {rule_id}\ncorrelation:\n"
        + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")
        + "\nlevel: high\n"
    )


@pytest.fixture
def failed_login_rule(make_rule_yaml):
    return make_rule_yaml(
        """
        selection:
            Action: 'login_failed'
        condition: selection
        """,
        rule_id=FAILED_ID,
        title="Failed login",
        name="failed_login",
    )


@pytest.fixture
def recon_rules(make_rule_yaml):
    """Three reconnaissance commands (corr "Temporal Proximity" example)."""
    return [
        make_rule_yaml(
            f"""
            selection:
                CommandLine|contains: '{command}'
            condition: selection
            """,
            rule_id=rule_id,
            title=f"Recon {command}",
            name=name,
        )
        for rule_id, name, command in [
            (RECON_A, "recon_cmd_a", "whoami"),
            (RECON_B, "recon_cmd_b", "ipconfig"),
            (RECON_C, "recon_cmd_c", "net user"),
        ]
    ]


def load(*texts: str):
    loaded = rules_from_text(*texts)
    assert not loaded.plan.problems, [p.reason for p in loaded.plan.problems]
    return loaded


def failures(event, user, *offsets, host="dc1"):
    return [
        event({"Action": "login_failed", "User": user, "ComputerName": host}, time=T0 + t)
        for t in offsets
    ]


def groups(fired):
    return [f.group for f in fired]


# --------------------------------------------------------------------------------------------
# event_count. corr "Event Count": counts events in the time frame, "for each group specified
# by group-by separately"; the condition says how many must occur.
# --------------------------------------------------------------------------------------------

EVENT_COUNT = """
    type: event_count
    rules:
        - {ref}
    group-by:
        - User
    timespan: 1m
    condition:
        gte: 3
"""


def test_event_count_fires_when_threshold_reached_within_timespan(
    failed_login_rule, event, correlate
):
    loaded = load(failed_login_rule, correlation_yaml(EVENT_COUNT.format(ref=FAILED_ID)))
    fired = correlate(loaded, failures(event, "alice", 0, 10, 20))
    assert groups(fired) == [{"User": "alice"}]
    assert fired[0].spec.rule_id == CORR_ID
    assert fired[0].value >= 3
    assert len(fired[0].hits) >= 3


def test_event_count_does_not_fire_below_threshold(failed_login_rule, event, correlate):
    loaded = load(failed_login_rule, correlation_yaml(EVENT_COUNT.format(ref=FAILED_ID)))
    assert correlate(loaded, failures(event, "alice", 0, 10)) == []


def test_event_count_ignores_events_spread_beyond_the_timespan(failed_login_rule, event, correlate):
    loaded = load(failed_login_rule, correlation_yaml(EVENT_COUNT.format(ref=FAILED_ID)))
    # no 1-minute window holds more than two of these
    assert correlate(loaded, failures(event, "alice", 0, 50, 100, 150, 200)) == []


def test_event_count_counts_each_group_separately(failed_login_rule, event, correlate):
    loaded = load(failed_login_rule, correlation_yaml(EVENT_COUNT.format(ref=FAILED_ID)))
    events = failures(event, "alice", 0, 5) + failures(event, "bob", 1, 6, 11)
    assert groups(correlate(loaded, events)) == [{"User": "bob"}]
    assert correlate(loaded, failures(event, "alice", 0, 5) + failures(event, "bob", 1, 6)) == []


def test_event_count_counts_only_matches_of_the_referenced_rule(
    failed_login_rule, event, correlate
):
    loaded = load(failed_login_rule, correlation_yaml(EVENT_COUNT.format(ref=FAILED_ID)))
    success = [event({"Action": "login_ok", "User": "alice"}, time=T0 + t) for t in (1, 2, 3, 4)]
    assert correlate(loaded, failures(event, "alice", 0, 5) + success) == []


def test_event_count_can_reference_a_rule_by_name(failed_login_rule, event, correlate):
    # corr "Related rules": "A rule can be referred to by the `id` or `name` of a Sigma rule."
    loaded = load(failed_login_rule, correlation_yaml(EVENT_COUNT.format(ref="failed_login")))
    assert groups(correlate(loaded, failures(event, "alice", 0, 10, 20))) == [{"User": "alice"}]


def test_event_count_groups_by_several_fields(failed_login_rule, event, correlate):
    # corr "Grouping": several fields are linked with AND (the unique name/domain pair)
    body = EVENT_COUNT.format(ref=FAILED_ID).replace(
        "        - User\n", "        - User\n        - ComputerName\n"
    )
    loaded = load(failed_login_rule, correlation_yaml(body))
    spread = failures(event, "alice", 0, 10, host="dc1") + failures(event, "alice", 20, host="dc2")
    assert correlate(loaded, spread) == []
    fired = correlate(loaded, failures(event, "alice", 0, 10, 20, host="dc2"))
    assert groups(fired) == [{"User": "alice", "ComputerName": "dc2"}]


def test_event_count_spec_example_many_failed_logins(failed_login_rule, event, correlate):
    # corr "Event Count" example: gte 100 failed logins per ComputerName in 1h
    body = """
        type: event_count
        rules:
            - 5638f7c0-ac70-491d-8465-2a65075e0d86
        group-by:
            - ComputerName
        timespan: 1h
        condition:
            gte: 100
    """
    loaded = load(failed_login_rule, correlation_yaml(body, title="Many failed logins"))
    many = failures(event, "x", *range(0, 3000, 30))  # 100 events within 50 minutes
    assert groups(correlate(loaded, many)) == [{"ComputerName": "dc1"}]
    assert correlate(loaded, many[:99]) == []


# --------------------------------------------------------------------------------------------
# value_count. corr "Value Count": counts distinct values of `field` per group.
# --------------------------------------------------------------------------------------------

VALUE_COUNT = """
    type: value_count
    rules:
        - 5638f7c0-ac70-491d-8465-2a65075e0d86
    group-by:
        - ComputerName
    timespan: 1h
    condition:
        field: User
        gte: 3
"""


def test_value_count_fires_on_enough_distinct_values(failed_login_rule, event, correlate):
    loaded = load(failed_login_rule, correlation_yaml(VALUE_COUNT))
    events = [
        *failures(event, "alice", 0),
        *failures(event, "bob", 10),
        *failures(event, "carol", 20),
    ]
    assert groups(correlate(loaded, events)) == [{"ComputerName": "dc1"}]


def test_value_count_does_not_count_repeated_values(failed_login_rule, event, correlate):
    loaded = load(failed_login_rule, correlation_yaml(VALUE_COUNT))
    events = failures(event, "alice", 0, 1, 2, 3) + failures(event, "bob", 4, 5, 6)
    assert correlate(loaded, events) == []


def test_value_count_counts_per_group(failed_login_rule, event, correlate):
    loaded = load(failed_login_rule, correlation_yaml(VALUE_COUNT))
    events = [
        *failures(event, "alice", 0, host="dc1"),
        *failures(event, "bob", 10, host="dc2"),
        *failures(event, "carol", 20, host="dc1"),
    ]
    assert correlate(loaded, events) == []


def test_value_count_only_within_timespan(failed_login_rule, event, correlate):
    loaded = load(failed_login_rule, correlation_yaml(VALUE_COUNT))
    hour = 3600
    events = [
        *failures(event, "alice", 0),
        *failures(event, "bob", 0.6 * hour),
        *failures(event, "carol", 1.2 * hour),
    ]
    assert correlate(loaded, events) == []


def test_value_count_without_field_is_rejected(failed_login_rule):
    # corr "Value Count": requires `field` in the condition section
    body = VALUE_COUNT.replace("        field: User\n", "")
    loaded = rules_from_text(failed_login_rule, correlation_yaml(body))
    (problem,) = loaded.plan.problems
    assert "field" in problem.reason.lower()
    assert loaded.plan.correlations == []
    assert [r.rule_id for r in loaded.plan.rules] == [FAILED_ID]


# --------------------------------------------------------------------------------------------
# temporal. corr "Temporal Proximity": all referenced rules' events in the timespan, same
# group-by values, in arbitrary order.
# --------------------------------------------------------------------------------------------

TEMPORAL = """
    type: {kind}
    rules:
        - recon_cmd_a
        - recon_cmd_b
        - recon_cmd_c
    group-by:
        - ComputerName
        - User
    timespan: 5m
"""


def recon(event, command, t, host="ws1", user="eve"):
    return event({"CommandLine": command, "ComputerName": host, "User": user}, time=T0 + t)


def test_temporal_fires_when_all_rules_match_in_any_order(recon_rules, event, correlate):
    loaded = load(*recon_rules, correlation_yaml(TEMPORAL.format(kind="temporal")))
    events = [
        recon(event, "net user", 0),
        recon(event, "whoami", 60),
        recon(event, "ipconfig /all", 120),
    ]
    assert groups(correlate(loaded, events)) == [{"ComputerName": "ws1", "User": "eve"}]


def test_temporal_does_not_fire_when_a_rule_is_missing(recon_rules, event, correlate):
    loaded = load(*recon_rules, correlation_yaml(TEMPORAL.format(kind="temporal")))
    events = [recon(event, "whoami", 0), recon(event, "ipconfig", 10), recon(event, "whoami", 20)]
    assert correlate(loaded, events) == []


def test_temporal_does_not_fire_when_events_span_more_than_timespan(recon_rules, event, correlate):
    loaded = load(*recon_rules, correlation_yaml(TEMPORAL.format(kind="temporal")))
    events = [
        recon(event, "whoami", 0),
        recon(event, "ipconfig", 60),
        recon(event, "net user", 60 + 10 * 60),
    ]
    assert correlate(loaded, events) == []


def test_temporal_requires_the_same_group_by_values(recon_rules, event, correlate):
    loaded = load(*recon_rules, correlation_yaml(TEMPORAL.format(kind="temporal")))
    events = [
        recon(event, "whoami", 0),
        recon(event, "ipconfig", 10),
        recon(event, "net user", 20, user="mallory"),
    ]
    assert correlate(loaded, events) == []


# --------------------------------------------------------------------------------------------
# temporal_ordered. corr "Ordered Temporal Proximity": like temporal, and the events appear in
# the order of the `rules` attribute.
# --------------------------------------------------------------------------------------------


def test_temporal_ordered_fires_when_events_follow_the_rule_order(recon_rules, event, correlate):
    loaded = load(*recon_rules, correlation_yaml(TEMPORAL.format(kind="temporal_ordered")))
    events = [
        recon(event, "whoami", 0),
        recon(event, "ipconfig", 60),
        recon(event, "net user", 120),
    ]
    assert groups(correlate(loaded, events)) == [{"ComputerName": "ws1", "User": "eve"}]


def test_temporal_ordered_does_not_fire_out_of_order(recon_rules, event, correlate):
    loaded = load(*recon_rules, correlation_yaml(TEMPORAL.format(kind="temporal_ordered")))
    events = [
        recon(event, "net user", 0),
        recon(event, "ipconfig", 60),
        recon(event, "whoami", 120),
    ]
    assert correlate(loaded, events) == []
    events = [
        recon(event, "whoami", 0),
        recon(event, "net user", 60),
        recon(event, "ipconfig", 120),
    ]
    assert correlate(loaded, events) == []


def test_temporal_ordered_ignores_extra_out_of_order_events(recon_rules, event, correlate):
    loaded = load(*recon_rules, correlation_yaml(TEMPORAL.format(kind="temporal_ordered")))
    events = [
        recon(event, "net user", 0),
        recon(event, "whoami", 10),
        recon(event, "ipconfig", 20),
        recon(event, "net user", 30),
    ]
    assert groups(correlate(loaded, events)) == [{"ComputerName": "ws1", "User": "eve"}]


def test_temporal_ordered_needs_the_whole_sequence_within_timespan(recon_rules, event, correlate):
    loaded = load(*recon_rules, correlation_yaml(TEMPORAL.format(kind="temporal_ordered")))
    events = [
        recon(event, "whoami", 0),
        recon(event, "ipconfig", 60),
        recon(event, "net user", 10 * 60),
    ]
    assert correlate(loaded, events) == []


# --------------------------------------------------------------------------------------------
# Condition operators and ranges. corr "Condition": gt, gte, lt, lte, eq, neq; a range with
# two operators ("101 to 200": gt 100 and lte 200).
# --------------------------------------------------------------------------------------------

RANGE = """
    type: event_count
    rules:
        - 5638f7c0-ac70-491d-8465-2a65075e0d86
    group-by:
        - User
    timespan: 1h
    condition:
        gt: 2
        lte: 4
"""


def test_range_condition_loads(failed_login_rule):
    loaded = load(failed_login_rule, correlation_yaml(RANGE))
    assert len(loaded.plan.correlations) == 1


@pytest.mark.parametrize("count", [3, 4])
def test_range_condition_fires_inside_the_range(failed_login_rule, event, correlate, count):
    loaded = load(failed_login_rule, correlation_yaml(RANGE))
    # all at the same instant: every window holding one of them holds all of them
    fired = correlate(loaded, failures(event, "alice", *([0] * count)))
    assert groups(fired) == [{"User": "alice"}]
    assert fired[0].value == count


@pytest.mark.parametrize("count", [1, 2, 5, 8])
def test_range_condition_does_not_fire_outside_the_range(
    failed_login_rule, event, correlate, count
):
    loaded = load(failed_login_rule, correlation_yaml(RANGE))
    assert correlate(loaded, failures(event, "alice", *([0] * count))) == []


@pytest.mark.parametrize(
    ("operator", "bound", "count", "fires"),
    [
        ("gt", 2, 3, True),
        ("gt", 3, 3, False),
        ("eq", 3, 3, True),
        ("eq", 3, 4, False),
        ("lte", 3, 3, True),
        ("lte", 3, 4, False),
        ("lt", 3, 2, True),
        ("lt", 3, 3, False),
        ("neq", 3, 2, True),
        ("neq", 3, 3, False),
    ],
)
def test_single_condition_operators(
    failed_login_rule, event, correlate, operator, bound, count, fires
):
    body = RANGE.replace("        gt: 2\n        lte: 4", f"        {operator}: {bound}")
    loaded = load(failed_login_rule, correlation_yaml(body))
    fired = correlate(loaded, failures(event, "alice", *([0] * count)))
    assert bool(fired) is fires


# --------------------------------------------------------------------------------------------
# generate. corr "Generate": whether the referred rules are also output as stand-alone rules;
# only the correlation is generated by default.
# --------------------------------------------------------------------------------------------


def test_referenced_rules_are_not_output_by_default(failed_login_rule, make_rule_yaml):
    other = make_rule_yaml("selection:\n    A: 'x'\ncondition: selection", rule_id=RECON_A)
    loaded = load(failed_login_rule, other, correlation_yaml(EVENT_COUNT.format(ref=FAILED_ID)))
    output = {r.rule_id: r.output for r in loaded.plan.rules}
    assert output == {FAILED_ID: False, RECON_A: True}


def test_referenced_rules_are_output_with_generate_true(failed_login_rule):
    body = textwrap.dedent(EVENT_COUNT.format(ref=FAILED_ID)) + "generate: true\n"
    loaded = load(failed_login_rule, correlation_yaml(body))
    assert [r.output for r in loaded.plan.rules] == [True]


def test_rules_not_output_still_feed_their_correlation(failed_login_rule, event, correlate):
    loaded = load(failed_login_rule, correlation_yaml(EVENT_COUNT.format(ref=FAILED_ID)))
    assert not loaded.plan.rules[0].output
    assert list(loaded.engine.match(failures(event, "alice", 0)))  # still matched
    assert correlate(loaded, failures(event, "alice", 0, 1, 2))


# --------------------------------------------------------------------------------------------
# Aliases. corr "Field Name Aliases": group-by an alias resolved to a different field per rule
# (the specification's internal_error / new_network_connection example).
# --------------------------------------------------------------------------------------------


def test_aliases_group_by_differently_named_fields(make_rule_yaml, event, correlate):
    internal_error = make_rule_yaml(
        """
        selection:
            http.response.status_code: 500
        condition: selection
        """,
        rule_id=RECON_A,
        name="internal_error",
    )
    new_connection = make_rule_yaml(
        """
        selection:
            event.category: network
            event.type: connection
            event.outcome: success
        condition: selection
        """,
        rule_id=RECON_B,
        name="new_network_connection",
    )
    body = """
        type: temporal
        rules:
            - internal_error
            - new_network_connection
        group-by:
            - internal_ip
            - remote_ip
        timespan: 10s
        aliases:
            internal_ip:
                internal_error: destination.ip
                new_network_connection: source.ip
            remote_ip:
                internal_error: source.ip
                new_network_connection: destination.ip
    """
    loaded = load(internal_error, new_connection, correlation_yaml(body))

    def error(t, src, dst):
        return event(
            {"http.response.status_code": 500, "source.ip": src, "destination.ip": dst}, time=T0 + t
        )

    def connection(t, src, dst):
        return event(
            {
                "event.category": "network",
                "event.type": "connection",
                "event.outcome": "success",
                "source.ip": src,
                "destination.ip": dst,
            },
            time=T0 + t,
        )

    # the server 10.0.0.5 answers 203.0.113.9 with an error, then connects out to it
    same = [error(0, "203.0.113.9", "10.0.0.5"), connection(3, "10.0.0.5", "203.0.113.9")]
    fired = correlate(loaded, same)
    assert groups(fired) == [{"internal_ip": "10.0.0.5", "remote_ip": "203.0.113.9"}]
    # the same fields with the same values do not pair up across the aliases
    crossed = [error(0, "203.0.113.9", "10.0.0.5"), connection(3, "203.0.113.9", "10.0.0.5")]
    assert correlate(loaded, crossed) == []


# --------------------------------------------------------------------------------------------
# Chained correlations. corr "Example: Failed Logins Followed by Successful Login", in one
# multi-document text, rules referenced by name.
# --------------------------------------------------------------------------------------------

SPEC_EXAMPLE = """\
title: Correlation - Multiple Failed Logins Followed by Successful Login
id: b180ead8-d58f-40b2-ae54-c8940995b9b6
status: experimental
description: Detects multiple failed logins by a single user followed by a successful login
    of that user
correlation:
    type: temporal_ordered
    rules:
        - multiple_failed_login
        - successful_login
    group-by:
        - User
    timespan: 10m
falsepositives:
    - Unlikely
level: high
---
title: Multiple failed logons
id: a8418a5a-5fc4-46b5-b23b-6c73beb19d41
description: Detects multiple failed logins within a certain amount of time
name: multiple_failed_login
correlation:
    type: event_count
    rules:
        - failed_login
    group-by:
        - User
    timespan: 10m
    condition:
        gte: 10
---
title: Single failed login
id: 53ba33fd-3a50-4468-a5ef-c583635cfa92
name: failed_login
logsource:
    product: windows
    service: security
detection:
    selection:
        EventID:
            - 529
            - 4625
    condition: selection
---
title: Successful login
id: 4d0a2c83-c62c-4ed4-b475-c7e23a9269b8
description: Detects a successful login
name: successful_login
logsource:
    product: windows
    service: security
detection:
    selection:
        EventID:
            - 528
            - 4624
    condition: selection
"""


def security(event, event_id, user, t):
    return event(
        {"Channel": "Security", "EventID": event_id, "User": user}, time=T0 + t, product="windows"
    )


def test_chained_example_fires_on_failures_then_success(event, correlate):
    loaded = load(SPEC_EXAMPLE)
    events = [security(event, 4625, "alice", t) for t in range(0, 100, 10)]
    events.append(security(event, 4624, "alice", 200))
    fired = [
        f
        for f in correlate(loaded, events)
        if f.spec.rule_id == "b180ead8-d58f-40b2-ae54-c8940995b9b6"
    ]
    assert groups(fired) == [{"User": "alice"}]


def test_chained_example_needs_enough_failures(event, correlate):
    loaded = load(SPEC_EXAMPLE)
    events = [security(event, 4625, "alice", t) for t in range(0, 90, 10)]  # only 9
    events.append(security(event, 4624, "alice", 200))
    assert correlate(loaded, events) == []


def test_chained_example_needs_success_after_failures(event, correlate):
    loaded = load(SPEC_EXAMPLE)
    events = [security(event, 4624, "alice", 0)]
    events += [security(event, 4625, "alice", t) for t in range(10, 110, 10)]
    fired = [f.spec.rule_id for f in correlate(loaded, events)]
    assert "b180ead8-d58f-40b2-ae54-c8940995b9b6" not in fired
    assert "a8418a5a-5fc4-46b5-b23b-6c73beb19d41" in fired  # the inner event_count did fire


def test_chained_example_needs_the_same_user(event, correlate):
    loaded = load(SPEC_EXAMPLE)
    events = [security(event, 4625, "alice", t) for t in range(0, 100, 10)]
    events.append(security(event, 4624, "bob", 200))
    fired = [f.spec.rule_id for f in correlate(loaded, events)]
    assert "b180ead8-d58f-40b2-ae54-c8940995b9b6" not in fired


def test_correlation_naming_an_unknown_rule_is_reported(failed_login_rule):
    loaded = rules_from_text(
        failed_login_rule, correlation_yaml(EVENT_COUNT.format(ref="no_such_rule"))
    )
    assert [p.rule_id for p in loaded.plan.problems] == [CORR_ID]
    assert [r.rule_id for r in loaded.plan.rules] == [FAILED_ID]


# --------------------------------------------------------------------------------------------
# Timespan units. corr "Time Selection": Xs, Xm, Xh, Xd; "example for 1h30 : `timespan: 90m`".
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timespan", "inside", "outside"),
    [
        ("30s", 25, 35),
        ("90m", 85 * 60, 95 * 60),
        ("2h", 110 * 60, 130 * 60),
        ("1d", 23 * 3600, 25 * 3600),
    ],
)
def test_timespan_units(failed_login_rule, event, correlate, timespan, inside, outside):
    body = EVENT_COUNT.format(ref=FAILED_ID).replace("timespan: 1m", f"timespan: {timespan}")
    loaded = load(failed_login_rule, correlation_yaml(body))
    assert correlate(loaded, failures(event, "alice", 0, inside / 2, inside))
    assert correlate(loaded, failures(event, "alice", 0, outside / 2, outside)) == []


# --------------------------------------------------------------------------------------------
# Field names in correlations are those of the rules (taxonomy), as in the detections: the
# rules specification's "Field Usage" mapping (Image -> NewProcessName, ParentImage ->
# ParentProcessName for built-in Windows events) applies to them as well.
# --------------------------------------------------------------------------------------------

WHOAMI_ID = "d4d4d4d4-0000-4000-8000-00000000000d"


@pytest.fixture
def whoami_by_parent(make_rule_yaml):
    rule = make_rule_yaml(
        r"""
        selection:
            Image|endswith: '\whoami.exe'
        condition: selection
        """,
        rule_id=WHOAMI_ID,
        logsource="product: windows\ncategory: process_creation",
    )
    body = f"""
        type: event_count
        rules:
            - {WHOAMI_ID}
        group-by:
            - ParentImage
        timespan: 1m
        condition:
            gte: 2
    """
    return load(rule, correlation_yaml(body))


PARENT = r"C:\Users\Public\evil.exe"


def test_correlation_groups_sysmon_events_by_rule_field(whoami_by_parent, event, correlate):
    events = [
        event(
            {
                "Channel": "Microsoft-Windows-Sysmon/Operational",
                "EventID": 1,
                "Image": r"C:\Windows\System32\whoami.exe",
                "ParentImage": PARENT,
            },
            time=T0 + t,
            product="windows",
        )
        for t in (0, 5)
    ]
    assert groups(correlate(whoami_by_parent, events)) == [{"ParentImage": PARENT}]


def test_correlation_groups_security_4688_events_through_the_field_mapping(
    whoami_by_parent, event, correlate
):
    events = [
        event(
            {
                "Channel": "Security",
                "EventID": 4688,
                "NewProcessName": r"C:\Windows\System32\whoami.exe",
                "ParentProcessName": PARENT,
            },
            time=T0 + t,
            product="windows",
        )
        for t in (0, 5)
    ]
    assert len(list(whoami_by_parent.engine.match(events))) == 2  # the base rule does match
    assert groups(correlate(whoami_by_parent, events)) == [{"ParentImage": PARENT}]


# --------------------------------------------------------------------------------------------
# Bounded state: corr "timespan" is the window; a group that time has left behind can never
# fire again (or, for conditions judged when the window closes, is judged), so a long stream
# of one-off groups does not pile up.
# --------------------------------------------------------------------------------------------

EVENT_COUNT_AT_MOST = """
    type: event_count
    rules:
        - {ref}
    group-by:
        - User
    timespan: 1m
    condition:
        lte: 1
"""


@pytest.mark.parametrize("body", [EVENT_COUNT, EVENT_COUNT_AT_MOST], ids=["gte", "lte"])
def test_windows_left_behind_by_time_are_closed_and_results_unchanged(
    failed_login_rule, event, body
):
    from vigil.detect.sigma import CorrelationEngine, Hit

    loaded = load(failed_login_rule, correlation_yaml(body.format(ref=FAILED_ID)))
    # 500 users failing once each, a minute and a half apart, then one user failing 3 times.
    events = [f for n in range(500) for f in failures(event, f"user{n}", n * 90)]
    events += failures(event, "mallory", 500 * 90, 500 * 90 + 5, 500 * 90 + 10)
    engine = CorrelationEngine(loaded.plan.correlations)
    fired = []
    most_windows = 0
    for match in loaded.engine.match(events):
        hit = Hit(match.event.time, ("rule", match.rule), match.rule_fields(), ())
        fired.extend(engine.feed(hit))
        most_windows = max(most_windows, len(engine.windows))
    fired.extend(engine.finish())
    assert most_windows <= 3
    users = sorted(f.group["User"] for f in fired)
    if body is EVENT_COUNT:
        assert users == ["mallory"]
    else:  # every one-off user is at most one failure in the window; mallory is not
        assert users == sorted(f"user{n}" for n in range(500))
