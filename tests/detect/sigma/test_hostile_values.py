"""Values an attacker or a broken log can put in an event must not change what matches: no
forged prefilter structure, no routing cache poisoning, no crash, and the same answer whether
the prefilter or the exact test decides.

Expected results follow the Sigma specification's plain reading (rules: values compare
case-insensitively; modifiers appendix: `contains`, `cidr`, `gt`/`lt` and `re`).
"""

from __future__ import annotations

from vigil.detect.sigma import rules_from_text
from vigil.events import Event
from vigil.events.model import format_time, parse_time

SECURITY_LOG_CLEARED = """
title: Security log cleared
id: 11111111-2222-4333-8444-555555555555
logsource:
    product: windows
    service: security
detection:
    selection:
        EventID: 1102
    condition: selection
level: high
"""


def test_a_value_holding_separator_characters_cannot_hide_a_match(sigma_rule) -> None:
    rule = sigma_rule("""
        selection:
            CommandLine|contains: 'mimikatz'
        condition: selection
    """)
    # One separator of each kind inside a value: the counts of the prefilter buffer stay
    # balanced, which must not be taken for a clean buffer.
    forged = "run \x1e\x1f then mimikatz"
    assert rule.matches({"CommandLine": forged})
    assert rule.matches({"Other": "x\x1eab\x1f", "CommandLine": "MIMIKATZ.exe"})
    assert not rule.matches({"CommandLine": "\x1e\x1fmimi katz"})


def test_a_value_cannot_forge_another_field_for_the_prefilter(sigma_rule) -> None:
    rule = sigma_rule("""
        selection:
            Image: 'c:\\tools\\evil.exe'
        other:
            CommandLine|contains: 'unrelated'
        condition: selection or other
    """)
    # Plain equality is decided by the prefilter alone (`SEG <id> VAL value SEG`). A value that
    # writes that structure for Image, with separators balanced, must not fake an Image.
    image_id = rule.loaded.plan.field_ids["Image"]
    forged = f"a\x1e{image_id}\x1fc:\\tools\\evil.exe\x1e\x1f"
    assert not rule.matches({"CommandLine": forged, "Image": "c:\\cmd.exe"})
    assert not rule.matches({"Image": "c:\\cmd.exe", "CommandLine": forged})
    assert rule.matches({"CommandLine": forged, "Image": "C:\\Tools\\Evil.exe"})


def test_exact_and_tested_atoms_agree_on_long_s_and_final_sigma(sigma_rule) -> None:
    # Whether the prefilter decides (plain equality) or the exact test does (equality inside a
    # condition the prefilter cannot decide alone), the answer is the same.
    plain = sigma_rule("""
        selection:
            Name: 'ΟΔΥΣΣΕΥΣ'
        condition: selection
    """)
    negated = sigma_rule("""
        selection:
            Name: 'ΟΔΥΣΣΕΥΣ'
        other:
            Missing: 'x'
        condition: selection and not other
    """)
    for rule in (plain, negated):
        assert rule.matches({"Name": "οδυσσευς"})  # final sigma written as such
        assert rule.matches({"Name": "Οδυσσευσ"})
        assert not rule.matches({"Name": "οδυσσευ"})
    long_s = sigma_rule("""
        selection:
            Name|contains: 'ſecret'
        condition: selection
    """)
    assert long_s.matches({"Name": "top secret"}) == long_s.matches({"Name": "top ſecret"})


def test_unhashable_or_boolean_routing_values_neither_crash_nor_share_a_route() -> None:
    loaded = rules_from_text(SECURITY_LOG_CLEARED)
    engine = loaded.engine

    def matches(fields: dict[str, object], product: str = "windows") -> bool:
        event = Event(fields=fields, source="t", record=1, product=product)
        return bool(list(engine.match([event])))

    assert not matches({"Channel": ["Security", "System"], "EventID": 1102})  # a list: no crash
    assert not matches({"Channel": True, "EventID": 1102})
    assert matches({"Channel": "Security", "EventID": 1102})
    assert not matches({"Channel": 1, "EventID": 1102})  # True == 1 must not reuse a route
    # The product as a log wrote it: upper-case routes like lower-case, each by its channel.
    assert not matches({"Channel": "System", "EventID": 1102}, product="Windows")
    assert matches({"Channel": "Security", "EventID": 1102}, product="Windows")


def test_cidr_slash_32_and_bracketed_addresses_match(sigma_rule) -> None:
    host = sigma_rule("""
        selection:
            DestinationIp|cidr: '10.1.2.3/32'
        condition: selection
    """)
    assert host.matches({"DestinationIp": "10.1.2.3"})
    assert not host.matches({"DestinationIp": "10.1.2.30"})
    net = sigma_rule("""
        selection:
            DestinationIp|cidr: '192.168.0.0/16'
        condition: selection
    """)
    assert net.matches({"DestinationIp": "[192.168.4.1]"})
    assert net.matches({"DestinationIp": " 192.168.4.1"})
    assert not net.matches({"DestinationIp": "192.169.4.1"})


def test_keyword_found_in_a_record_whose_json_escapes_some_of_it(sigma_rule) -> None:
    rule = sigma_rule("""
        keywords:
            - 'sekurlsa+logonpasswords'
            - 'invoke`expression'
            - 'evil.example/payload'
        condition: keywords
    """)
    # .NET's System.Text.Json escapes + and `, Go's encoding/json < > &, PHP /: the record's
    # own JSON text does not hold the keyword as written, its field value does.
    written = {
        "sekurlsa+logonpasswords": "sekurlsa\\u002blogonpasswords",
        "invoke`expression": "invoke\\u0060expression",
        "evil.example/payload": "evil.example\\/payload",
    }
    for number, (value, escaped) in enumerate(written.items()):
        event = Event(
            fields={"CommandLine": f"x {value} y"},
            source="t",
            record=number,
            product="testprod",
            raw='{"CommandLine": "x ' + escaped + ' y"}',
        )
        assert list(rule.loaded.engine.match([event])), value
    other = Event(fields={"CommandLine": "sekurlsa logonpasswords"}, source="t", product="testprod")
    assert not list(rule.loaded.engine.match([other]))


def test_keyword_search_survives_values_json_cannot_write_fast(sigma_rule) -> None:
    rule = sigma_rule("""
        keywords:
            - 'needle'
        condition: keywords
    """)
    huge = 1 << 70  # beyond the 64-bit integers orjson writes
    assert rule.matches({"Big": huge, "Text": "a needle here"})
    assert not rule.matches({"Big": huge, "Text": "nothing"})


def test_regex_with_a_posix_class_is_not_given_a_wrong_literal(sigma_rule) -> None:
    # RE2 reads [[:digit:]] as a class of digits; a literal taken from Python's reading
    # (a class, then the text "]abc") would make the prefilter drop real matches.
    rule = sigma_rule("""
        selection:
            CommandLine|re: '[[:digit:]]abcdef'
        condition: selection
    """)
    assert rule.matches({"CommandLine": "x7abcdef"})
    assert not rule.matches({"CommandLine": "xyabcdef"})


def test_numeric_comparisons_take_decimal_numbers_only(sigma_rule) -> None:
    rule = sigma_rule("""
        selection:
            Size|gt: 100
        condition: selection
    """)
    assert rule.matches({"Size": "150"})
    assert rule.matches({"Size": 150})
    assert rule.matches({"Size": " 1.5e3 "})
    for text in ("nan", "inf", "Infinity", "1_000", "0x1000", "1" * 80, "", "abc"):
        assert not rule.matches({"Size": text}), text
    below = sigma_rule("""
        selection:
            Size|lt: 100
        condition: selection
    """)
    assert not below.matches({"Size": "-inf"})
    assert below.matches({"Size": "-5"})


def test_times_out_of_range_are_no_time_rather_than_a_crash() -> None:
    assert parse_time(10**30) is None
    assert parse_time(float("nan")) is None
    assert parse_time(float("inf")) is None
    assert parse_time("99999-01-01T00:00:00") is None
    assert parse_time(True) is None
    assert format_time(1e20) is None
    assert format_time(float("nan")) is None
    assert parse_time("2020-01-02T03:04:05Z") == 1577934245.0
    assert parse_time(1577934245123) == 1577934245.123
    assert format_time(1577934245.0) == "2020-01-02T03:04:05.000000Z"
