"""Values and value modifiers of Sigma detections.

Every expectation is taken from the Sigma specification in
/work/shared/docs/sigma-specification/specification/:
  rules  = sigma-rules-specification.md
  mods   = sigma-appendix-modifiers.md
"""

from __future__ import annotations

import base64

import pytest

from vigil.detect.sigma import rules_from_text


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --------------------------------------------------------------------------------------------
# Plain values. rules "Detection > General": "All values are treated as case-insensitive
# strings." rules "String Wildcard": `*something*` is what `contains` does, so a plain value
# without wildcards is compared with the whole field value.
# --------------------------------------------------------------------------------------------


def test_plain_value_matches_whole_value_case_insensitively(sigma_rule):
    rule = sigma_rule("""
        selection:
            Image: 'whoami.exe'
        condition: selection
    """)
    assert rule.matches({"Image": "whoami.exe"})
    assert rule.matches({"Image": "WhoAmI.EXE"})
    assert not rule.matches({"Image": "xwhoami.exe"})
    assert not rule.matches({"Image": "whoami.exe2"})
    assert not rule.matches({"Image": "whoami"})


def test_plain_value_on_a_field_the_event_lacks_does_not_match(sigma_rule):
    rule = sigma_rule("""
        selection:
            Image: 'whoami.exe'
        condition: selection
    """)
    assert not rule.matches({"OtherField": "whoami.exe"})
    assert not rule.matches({})


# rules "String Wildcard": `?` replaces a single mandatory character (`prog?.exe`), `*` an
# unbounded length (`antivirus_V*.exe`).


def test_question_mark_wildcard_stands_for_exactly_one_character(sigma_rule):
    rule = sigma_rule("""
        selection:
            Image: 'prog?.exe'
        condition: selection
    """)
    assert rule.matches({"Image": "progA.exe"})
    assert rule.matches({"Image": "progb.EXE"})
    assert not rule.matches({"Image": "prog.exe"})  # the character is mandatory
    assert not rule.matches({"Image": "progAB.exe"})


def test_star_wildcard_stands_for_any_run_of_characters(sigma_rule):
    rule = sigma_rule("""
        selection:
            Image: 'antivirus_V*.exe'
        condition: selection
    """)
    assert rule.matches({"Image": "antivirus_V1.exe"})
    assert rule.matches({"Image": "antivirus_V21.2.1.exe"})
    assert rule.matches({"Image": "ANTIVIRUS_v.exe"})  # empty run, case-insensitive
    assert not rule.matches({"Image": "antivirus_X1.exe"})
    assert not rule.matches({"Image": "antivirus_V1.exe.bak"})  # still a whole-value match


def test_question_mark_stands_for_one_non_ascii_character(sigma_rule):
    rule = sigma_rule("""
        selection:
            Street: 'Stra?e'
        condition: selection
    """)
    assert rule.matches({"Street": "Strase"})  # holds already
    assert rule.matches({"Street": "Straße"})


def test_wildcards_at_both_ends_match_anywhere_like_contains(sigma_rule):
    rule = sigma_rule("""
        selection:
            CommandLine: '*-enc*'
        condition: selection
    """)
    assert rule.matches({"CommandLine": "powershell -ENC AAAA"})
    assert not rule.matches({"CommandLine": "powershell -e AAAA"})


# rules "Escape Character": `\` escapes `*`, `?` and itself.
#  - plain backslash not followed by a wildcard: single `\` or double `\\` (both one backslash)
#  - `\*`, `\?`: plain wildcard characters
#  - `\\*`: a backslash followed by a (real) wildcard
#  - `\\\*`: a plain backslash and a plain asterisk
#  - three or four backslashes: a plain double backslash


def test_escaped_star_is_a_plain_asterisk(sigma_rule):
    rule = sigma_rule(r"""
        selection:
            FileName: 'report\*.txt'
        condition: selection
    """)
    assert rule.matches({"FileName": "report*.txt"})
    assert not rule.matches({"FileName": "report1.txt"})
    assert not rule.matches({"FileName": "report.txt"})


def test_escaped_question_mark_is_a_plain_question_mark(sigma_rule):
    rule = sigma_rule(r"""
        selection:
            Query: 'what\?'
        condition: selection
    """)
    assert rule.matches({"Query": "what?"})
    assert not rule.matches({"Query": "whatX"})


def test_escaped_backslash_before_star_is_a_backslash_then_a_wildcard(sigma_rule):
    rule = sigma_rule(r"""
        selection:
            Path: 'C:\\*'
        condition: selection
    """)
    assert rule.matches({"Path": r"C:\Windows\notepad.exe"})
    assert rule.matches({"Path": "C:\\"})
    assert not rule.matches({"Path": "C:Windows"})
    assert not rule.matches({"Path": "D:\\Windows"})


def test_three_backslashes_before_star_are_a_plain_backslash_and_asterisk(sigma_rule):
    rule = sigma_rule(r"""
        selection:
            Path: 'C:\\\*'
        condition: selection
    """)
    assert rule.matches({"Path": "C:\\*"})
    assert not rule.matches({"Path": r"C:\Windows"})


def test_four_backslashes_are_a_plain_double_backslash(sigma_rule):
    rule = sigma_rule(r"""
        selection:
            Share: '\\\\server\share'
        condition: selection
    """)
    assert rule.matches({"Share": r"\\server\share"})
    assert not rule.matches({"Share": r"\server\share"})


def test_three_backslashes_not_before_a_wildcard_are_a_plain_double_backslash(sigma_rule):
    rule = sigma_rule(r"""
        selection:
            Share: '\\\server\share'
        condition: selection
    """)
    assert rule.matches({"Share": r"\\server\share"})
    assert not rule.matches({"Share": r"\server\share"})


def test_lone_backslash_is_a_plain_backslash(sigma_rule):
    # the specification's own example rule (rules "Yaml File")
    rule = sigma_rule(r"""
        selection:
            Image: 'C:\Windows\System32\whoami.exe'
        condition: selection
    """)
    assert rule.matches({"Image": r"C:\Windows\System32\whoami.exe"})
    assert rule.matches({"Image": r"c:\windows\system32\WHOAMI.EXE"})
    assert not rule.matches({"Image": r"C:\Windows\SysWOW64\whoami.exe"})
    assert not rule.matches({"Image": "C:/Windows/System32/whoami.exe"})


def test_double_backslash_not_before_a_wildcard_is_one_backslash(sigma_rule):
    rule = sigma_rule(r"""
        selection:
            Image: 'C:\\Windows\\System32\\whoami.exe'
        condition: selection
    """)
    assert rule.matches({"Image": r"C:\Windows\System32\whoami.exe"})
    assert not rule.matches({"Image": r"C:\\Windows\\System32\\whoami.exe"})


def test_endswith_a_backslash_and_name_needs_that_backslash(sigma_rule):
    # rules "Lists": `Image|endswith: '\\example.exe'`
    rule = sigma_rule(r"""
        selection:
            Image|endswith: '\\example.exe'
        condition: selection
    """)
    assert rule.matches({"Image": r"C:\Tools\example.exe"})
    assert not rule.matches({"Image": r"C:\Tools\myexample.exe"})


# --------------------------------------------------------------------------------------------
# Lists and maps. rules "Lists": list items are OR-ed, a list of maps is an OR of the maps.
# rules "Maps": the items of a map are AND-ed; examples with EventLog/EventID.
# --------------------------------------------------------------------------------------------


def test_list_of_values_matches_any_of_them(sigma_rule):
    rule = sigma_rule("""
        selection:
            Image:
                - 'cmd.exe'
                - 'powershell.exe'
        condition: selection
    """)
    assert rule.matches({"Image": "cmd.exe"})
    assert rule.matches({"Image": "PowerShell.exe"})
    assert not rule.matches({"Image": "wscript.exe"})


def test_map_items_must_all_hold(sigma_rule):
    # rules "Maps": EventLog 'Security' and (EventID 517 or EventID 1102)
    rule = sigma_rule("""
        selection:
            EventLog: Security
            EventID:
                - 517
                - 1102
        condition: selection
    """)
    assert rule.matches({"EventLog": "Security", "EventID": 517})
    assert rule.matches({"EventLog": "Security", "EventID": 1102})
    assert not rule.matches({"EventLog": "Security", "EventID": 4624})
    assert not rule.matches({"EventLog": "System", "EventID": 517})
    assert not rule.matches({"EventID": 517})


def test_list_of_maps_matches_if_any_map_holds(sigma_rule):
    # rules "Lists": image ending with example.exe OR description containing 'Test executable'
    rule = sigma_rule(r"""
        selection:
            - Image|endswith: '\\example.exe'
            - Description|contains: 'Test executable'
        condition: selection
    """)
    assert rule.matches({"Image": r"C:\example.exe", "Description": "x"})
    assert rule.matches({"Image": r"C:\other.exe", "Description": "A test Executable."})
    assert not rule.matches({"Image": r"C:\other.exe", "Description": "Production build"})


def test_list_of_multi_item_maps_is_an_or_of_ands(sigma_rule):
    rule = sigma_rule("""
        selection:
            - User: alice
              Action: login
            - User: bob
              Action: logout
        condition: selection
    """)
    assert rule.matches({"User": "alice", "Action": "login"})
    assert rule.matches({"User": "bob", "Action": "logout"})
    assert not rule.matches({"User": "alice", "Action": "logout"})
    assert not rule.matches({"User": "bob", "Action": "login"})


# --------------------------------------------------------------------------------------------
# Numbers. rules "Maps": a value is "a string or integer value"; rules "General": all values are
# treated as strings, so EventID: 4769 matches the number 4769 and the text "4769".
# --------------------------------------------------------------------------------------------


def test_integer_value_matches_integer_and_numeric_string(sigma_rule):
    rule = sigma_rule("""
        selection:
            EventLog: Security
            EventID: 4769
            TicketOptions: '0x40810000'
            TicketEncryption: '0x17'
        condition: selection
    """)
    base = {"EventLog": "Security", "TicketOptions": "0x40810000", "TicketEncryption": "0x17"}
    assert rule.matches({**base, "EventID": 4769})
    assert rule.matches({**base, "EventID": "4769"})
    assert not rule.matches({**base, "EventID": 4770})
    assert not rule.matches({**base, "EventID": "47690"})
    assert not rule.matches({**base, "EventID": 4769, "TicketEncryption": "0x12"})


def test_quoted_number_matches_integer_field(sigma_rule):
    rule = sigma_rule("""
        selection:
            EventID: '4769'
        condition: selection
    """)
    assert rule.matches({"EventID": 4769})
    assert not rule.matches({"EventID": 476})


# --------------------------------------------------------------------------------------------
# Special values. rules "Special Field Values": an empty value is `''`, a null value is `null`;
# they are distinct types ("null ... shares no type with any other value"). The example
# `selection and not filter` with `PasswordLastSet: null` expresses "PasswordLastSet is set".
# --------------------------------------------------------------------------------------------


def test_null_matches_absent_or_json_null_field(sigma_rule):
    rule = sigma_rule("""
        selection:
            EventID: 4738
            PasswordLastSet: null
        condition: selection
    """)
    assert rule.matches({"EventID": 4738})
    assert rule.matches({"EventID": 4738, "PasswordLastSet": None})
    assert not rule.matches({"EventID": 4738, "PasswordLastSet": "2024-01-01"})


def test_null_does_not_match_empty_string(sigma_rule):
    rule = sigma_rule("""
        selection:
            PasswordLastSet: null
        condition: selection
    """)
    assert not rule.matches({"PasswordLastSet": ""})


def test_not_null_filter_from_specification(sigma_rule):
    rule = sigma_rule("""
        selection:
            EventID: 4738
        filter:
            PasswordLastSet: null
        condition: selection and not filter
    """)
    assert rule.matches({"EventID": 4738, "PasswordLastSet": "2024-01-01"})
    assert not rule.matches({"EventID": 4738})
    assert not rule.matches({"EventID": 4738, "PasswordLastSet": None})


def test_empty_string_matches_only_an_empty_value(sigma_rule):
    rule = sigma_rule("""
        selection:
            FieldB: ''
        condition: selection
    """)
    assert rule.matches({"FieldB": ""})
    assert not rule.matches({"FieldB": "x"})
    assert not rule.matches({"FieldB": None})
    assert not rule.matches({})


def test_empty_or_null_selection_example_from_specification(sigma_rule):
    # rules "Special Field Values", "Valid Example"
    rule = sigma_rule("""
        selection_main:
            FieldA: 'something'
        selection_empty1:
            FieldB: ''
        selection_empty2:
            FieldB: null
        condition: selection_main and 1 of selection_empty*
    """)
    assert rule.matches({"FieldA": "something", "FieldB": ""})
    assert rule.matches({"FieldA": "something"})
    assert rule.matches({"FieldA": "something", "FieldB": None})
    assert not rule.matches({"FieldA": "something", "FieldB": "value"})
    assert not rule.matches({"FieldA": "other", "FieldB": ""})


# --------------------------------------------------------------------------------------------
# Generic modifiers. mods "Generic Modifiers": contains, startswith, endswith, all, exists,
# cased, neq.
# --------------------------------------------------------------------------------------------


def test_contains_matches_anywhere_case_insensitively(sigma_rule):
    rule = sigma_rule("""
        selection:
            CommandLine|contains: 'whoami'
        condition: selection
    """)
    assert rule.matches({"CommandLine": "cmd /c WHOAMI /all"})
    assert rule.matches({"CommandLine": "whoami"})
    assert not rule.matches({"CommandLine": "cmd /c who ami"})


def test_wildcards_inside_a_contains_value_still_apply(sigma_rule):
    # mods "contains": puts `*` around the value; the value's own wildcards remain wildcards
    rule = sigma_rule("""
        selection:
            CommandLine|contains: 'net*user'
        condition: selection
    """)
    assert rule.matches({"CommandLine": "cmd /c NET.exe USER admin"})
    assert not rule.matches({"CommandLine": "cmd /c user net"})


def test_startswith_matches_only_at_the_beginning(sigma_rule):
    rule = sigma_rule("""
        selection:
            User|startswith: 'adm'
        condition: selection
    """)
    assert rule.matches({"User": "ADM_bob"})
    assert rule.matches({"User": "adm"})
    assert not rule.matches({"User": "bob_adm"})


def test_endswith_matches_only_at_the_end(sigma_rule):
    rule = sigma_rule(r"""
        selection:
            Image|endswith: '\cmd.exe'
        condition: selection
    """)
    assert rule.matches({"Image": r"C:\Windows\System32\CMD.exe"})
    assert not rule.matches({"Image": r"C:\Windows\System32\cmd.exe.mui"})
    assert not rule.matches({"Image": r"C:\Windows\System32\xcmd.exe"})


def test_contains_with_a_list_matches_any_value(sigma_rule):
    rule = sigma_rule("""
        selection:
            CommandLine|contains:
                - 'mimikatz'
                - 'sekurlsa'
        condition: selection
    """)
    assert rule.matches({"CommandLine": "x sekurlsa::logonpasswords"})
    assert rule.matches({"CommandLine": "Invoke-Mimikatz"})
    assert not rule.matches({"CommandLine": "net user"})


def test_contains_all_requires_every_value(sigma_rule):
    # mods "all": "changes this [OR] to AND ... the order may vary"
    rule = sigma_rule("""
        selection:
            CommandLine|contains|all:
                - ' -nop '
                - ' -w hidden '
        condition: selection
    """)
    assert rule.matches({"CommandLine": "powershell -nop -w hidden -c x"})
    assert rule.matches({"CommandLine": "powershell -w hidden -nop -c x"})
    assert not rule.matches({"CommandLine": "powershell -nop -c x"})
    assert not rule.matches({"CommandLine": "powershell -w hidden -c x"})


def test_exists_true_matches_any_present_field_even_empty_or_null(sigma_rule):
    # mods "exists": "only verifies the presence of a field, not its value, be it empty or null"
    rule = sigma_rule("""
        selection:
            EventID: 4738
            PasswordLastSet|exists: true
        condition: selection
    """)
    assert rule.matches({"EventID": 4738, "PasswordLastSet": "2024-01-01"})
    assert rule.matches({"EventID": 4738, "PasswordLastSet": ""})
    assert rule.matches({"EventID": 4738, "PasswordLastSet": None})
    assert not rule.matches({"EventID": 4738})


def test_exists_false_matches_only_when_the_field_is_absent(sigma_rule):
    rule = sigma_rule("""
        selection:
            PasswordLastSet|exists: false
        condition: selection
    """)
    assert rule.matches({"Other": "x"})
    assert not rule.matches({"PasswordLastSet": "2024-01-01"})
    assert not rule.matches({"PasswordLastSet": ""})
    assert not rule.matches({"PasswordLastSet": None})


def test_cased_value_matches_only_with_the_same_case(sigma_rule):
    # mods "cased": "Values are applied case sensitively"
    rule = sigma_rule("""
        selection:
            Token|cased: 'AbC'
        condition: selection
    """)
    assert rule.matches({"Token": "AbC"})
    assert not rule.matches({"Token": "abc"})
    assert not rule.matches({"Token": "ABC"})
    assert not rule.matches({"Token": "AbCd"})


def test_cased_contains_is_case_sensitive_substring(sigma_rule):
    rule = sigma_rule("""
        selection:
            CommandLine|contains|cased: 'NtLm'
        condition: selection
    """)
    assert rule.matches({"CommandLine": "x NtLm y"})
    assert not rule.matches({"CommandLine": "x ntlm y"})


def test_neq_matches_values_different_from_every_listed_value(sigma_rule):
    # mods "neq": "The field is different from the specified values."
    rule = sigma_rule("""
        selection:
            User|neq:
                - 'alice'
                - 'bob'
        condition: selection
    """)
    assert rule.matches({"User": "carol"})
    assert not rule.matches({"User": "alice"})
    assert not rule.matches({"User": "BOB"})


def test_neq_on_a_number(sigma_rule):
    # mods "Numeric Modifiers": "neq: Field is not equal than the value"
    rule = sigma_rule("""
        selection:
            LogonType|neq: 3
        condition: selection
    """)
    assert rule.matches({"LogonType": 10})
    assert rule.matches({"LogonType": "2"})
    assert not rule.matches({"LogonType": 3})
    assert not rule.matches({"LogonType": "3"})


# --------------------------------------------------------------------------------------------
# Regular expressions. mods "Regular Expression": `re` is case-sensitive by default; `i`
# case-insensitive, `m` makes ^/$ match at line starts/ends, `s` lets `.` match newlines. The
# flavor has the anchors `^` and `$`, so an unanchored pattern may match anywhere in the value.
# --------------------------------------------------------------------------------------------


def test_re_matches_case_sensitively_by_default(sigma_rule):
    rule = sigma_rule("""
        selection:
            CommandLine|re: 'Invoke-[A-Z][a-z]+'
        condition: selection
    """)
    assert rule.matches({"CommandLine": "powershell Invoke-Mimikatz -x"})
    assert not rule.matches({"CommandLine": "powershell invoke-mimikatz -x"})
    assert not rule.matches({"CommandLine": "powershell Invoke-123"})


def test_re_with_anchors_matches_the_whole_value(sigma_rule):
    rule = sigma_rule("""
        selection:
            User|re: '^adm_[a-z]+$'
        condition: selection
    """)
    assert rule.matches({"User": "adm_bob"})
    assert not rule.matches({"User": "xadm_bob"})
    assert not rule.matches({"User": "adm_bob1"})


def test_re_dollar_matches_before_a_final_newline_as_in_pcre(sigma_rule):
    rule = sigma_rule("""
        selection:
            CommandLine|re: 'whoami$'
        condition: selection
    """)
    assert rule.matches({"CommandLine": "cmd /c whoami"})  # holds already
    assert not rule.matches({"CommandLine": "whoami /all"})  # holds already
    assert rule.matches({"CommandLine": "cmd /c whoami\n"})


def test_re_alternation_grouping_and_bounded_repeat(sigma_rule):
    rule = sigma_rule("""
        selection:
            Code|re: '^(ab|cd){2,3}$'
        condition: selection
    """)
    assert rule.matches({"Code": "abcd"})
    assert rule.matches({"Code": "cdcdab"})
    assert not rule.matches({"Code": "ab"})
    assert not rule.matches({"Code": "abababab"})


def test_re_i_flag_matches_case_insensitively(sigma_rule):
    rule = sigma_rule("""
        selection:
            CommandLine|re|i: 'invoke-[a-z]+'
        condition: selection
    """)
    assert rule.matches({"CommandLine": "INVOKE-MIMIKATZ"})
    assert not rule.matches({"CommandLine": "INVOKE-123"})


def test_re_m_flag_anchors_match_at_line_boundaries(sigma_rule):
    multiline = sigma_rule("""
        selection:
            ScriptBlockText|re|m: '^net user$'
        condition: selection
    """)
    single = sigma_rule("""
        selection:
            ScriptBlockText|re: '^net user$'
        condition: selection
    """)
    text = "whoami\nnet user\nexit"
    assert multiline.matches({"ScriptBlockText": text})
    assert not multiline.matches({"ScriptBlockText": "whoami\nnet users\nexit"})
    assert not single.matches({"ScriptBlockText": text})


def test_re_s_flag_lets_dot_match_newline(sigma_rule):
    dotall = sigma_rule("""
        selection:
            ScriptBlockText|re|s: 'begin.end'
        condition: selection
    """)
    plain = sigma_rule("""
        selection:
            ScriptBlockText|re: 'begin.end'
        condition: selection
    """)
    assert dotall.matches({"ScriptBlockText": "begin\nend"})
    assert not plain.matches({"ScriptBlockText": "begin\nend"})
    assert plain.matches({"ScriptBlockText": "begin end"})
    assert not dotall.matches({"ScriptBlockText": "begin\n\nend"})


# --------------------------------------------------------------------------------------------
# CIDR. mods "IP Modifiers": "Supports both IPv4 and IPv6 notations. Example:
# `DestinationIp|cidr: 10.0.0.0/8`"
# --------------------------------------------------------------------------------------------


def test_cidr_matches_ipv4_addresses_inside_the_network(sigma_rule):
    rule = sigma_rule("""
        selection:
            DestinationIp|cidr: 10.0.0.0/8
        condition: selection
    """)
    assert rule.matches({"DestinationIp": "10.1.2.3"})
    assert rule.matches({"DestinationIp": "10.255.255.255"})
    assert not rule.matches({"DestinationIp": "11.1.2.3"})
    assert not rule.matches({"DestinationIp": "110.1.2.3"})
    assert not rule.matches({"DestinationIp": "not an ip"})


def test_cidr_with_prefix_not_on_an_octet_boundary(sigma_rule):
    rule = sigma_rule("""
        selection:
            DestinationIp|cidr: 172.16.0.0/12
        condition: selection
    """)
    assert rule.matches({"DestinationIp": "172.16.0.1"})
    assert rule.matches({"DestinationIp": "172.31.255.254"})
    assert not rule.matches({"DestinationIp": "172.32.0.1"})
    assert not rule.matches({"DestinationIp": "172.15.255.255"})


def test_cidr_matches_ipv6_addresses_inside_the_network(sigma_rule):
    rule = sigma_rule("""
        selection:
            DestinationIp|cidr: '2001:db8::/32'
        condition: selection
    """)
    assert rule.matches({"DestinationIp": "2001:db8::1"})
    assert rule.matches({"DestinationIp": "2001:0DB8:0000:0000:0000:0000:0000:0001"})
    assert not rule.matches({"DestinationIp": "2001:db9::1"})
    assert not rule.matches({"DestinationIp": "10.0.0.1"})


def test_cidr_list_matches_any_network(sigma_rule):
    rule = sigma_rule("""
        selection:
            DestinationIp|cidr:
                - 192.168.0.0/16
                - 'fe80::/10'
        condition: selection
    """)
    assert rule.matches({"DestinationIp": "192.168.1.1"})
    assert rule.matches({"DestinationIp": "fe80::1"})
    assert not rule.matches({"DestinationIp": "192.169.1.1"})
    assert not rule.matches({"DestinationIp": "fec0::1"})


# --------------------------------------------------------------------------------------------
# Encodings. mods "Encoding": base64 encodes the value; base64offset gives three variants for
# shifts of zero to two bytes; utf16le/utf16be/utf16 (with BOM)/wide (= utf16le) transform the
# value before encoding, e.g. `cmd` > `63 00 6d 00 64 00`.
# --------------------------------------------------------------------------------------------


def test_base64_matches_the_encoded_value(sigma_rule):
    rule = sigma_rule("""
        selection:
            Data|base64: 'foobar'
        condition: selection
    """)
    assert b64(b"foobar") == "Zm9vYmFy"
    assert rule.matches({"Data": "Zm9vYmFy"})
    assert not rule.matches({"Data": "foobar"})
    assert not rule.matches({"Data": "Zm9vYmFyCg=="})  # plain base64 is a whole-value match


def test_base64_contains_finds_the_encoded_value_inside(sigma_rule):
    rule = sigma_rule("""
        selection:
            CommandLine|base64|contains: 'foobar'
        condition: selection
    """)
    assert rule.matches({"CommandLine": "echo Zm9vYmFy | base64 -d"})
    assert not rule.matches({"CommandLine": "echo foobar"})


def test_base64offset_variants_for_foobar_are_the_documented_ones():
    # the three variants pySigma documents for 'foobar' (shifts 0, 1, 2), computed here
    assert b64(b"foobar") == "Zm9vYmFy"
    assert "Zvb2Jhc" in b64(b" foobar")
    assert "mb29iYX" in b64(b"  foobar")


@pytest.mark.parametrize("prefix", ["", " ", "  ", "abc", "abcd", "abcde"])
def test_base64offset_contains_finds_the_value_at_any_byte_offset(sigma_rule, prefix):
    rule = sigma_rule("""
        selection:
            CommandLine|base64offset|contains: 'foobar'
        condition: selection
    """)
    encoded = b64(f"{prefix}foobar and more".encode())
    assert rule.matches({"CommandLine": f"powershell -e {encoded}"})


def test_base64offset_contains_does_not_match_other_text(sigma_rule):
    rule = sigma_rule("""
        selection:
            CommandLine|base64offset|contains: 'foobar'
        condition: selection
    """)
    for text in ("fooba", " fooxar", "  foo bar"):
        assert not rule.matches({"CommandLine": b64(text.encode())}), text
    assert not rule.matches({"CommandLine": "foobar"})  # not encoded at all


@pytest.mark.parametrize("prefix", ["", "a", "ab", "powershell "])
def test_wide_base64offset_contains_finds_utf16le_text(sigma_rule, prefix):
    rule = sigma_rule("""
        selection:
            CommandLine|wide|base64offset|contains: 'ping'
        condition: selection
    """)
    encoded = b64(f"{prefix}ping 127.0.0.1".encode("utf-16le"))
    assert rule.matches({"CommandLine": f"powershell -EncodedCommand {encoded}"})


def test_wide_base64offset_contains_does_not_match_utf8_or_other_text(sigma_rule):
    rule = sigma_rule("""
        selection:
            CommandLine|wide|base64offset|contains: 'ping'
        condition: selection
    """)
    assert not rule.matches({"CommandLine": b64(b"ping 127.0.0.1")})
    assert not rule.matches({"CommandLine": b64("pong 127.0.0.1".encode("utf-16le"))})


@pytest.mark.parametrize(
    ("modifier", "data"),
    [
        ("utf16le", "cmd".encode("utf-16le")),  # 63 00 6d 00 64 00
        ("wide", "cmd".encode("utf-16le")),
        ("utf16be", "cmd".encode("utf-16be")),  # 00 63 00 6d 00 64
        ("utf16", b"\xff\xfe" + "cmd".encode("utf-16le")),  # FF FE 63 00 6d 00 64 00
    ],
)
def test_utf16_encodings_then_base64_match_the_encoded_bytes(sigma_rule, modifier, data):
    rule = sigma_rule(f"""
        selection:
            Data|{modifier}|base64: 'cmd'
        condition: selection
    """)
    assert rule.matches({"Data": b64(data)})
    assert not rule.matches({"Data": b64(b"cmd")})


def test_utf16le_and_utf16be_encodings_differ(sigma_rule):
    rule = sigma_rule("""
        selection:
            Data|utf16be|base64: 'cmd'
        condition: selection
    """)
    assert not rule.matches({"Data": b64("cmd".encode("utf-16le"))})


def test_utf16_base64offset_contains_finds_text_with_bom(sigma_rule):
    rule = sigma_rule("""
        selection:
            Data|utf16|base64offset|contains: 'cmd'
        condition: selection
    """)
    assert rule.matches({"Data": b64(b"\xff\xfe" + "cmd /c dir".encode("utf-16le"))})
    assert not rule.matches({"Data": b64("cmd /c dir".encode("utf-16be"))})


# --------------------------------------------------------------------------------------------
# windash. mods "String Modifiers": `-`, `/`, `–` (en dash), `—` (em dash) and `―` (horizontal
# bar) are interchangeable; all permutations are used.
# --------------------------------------------------------------------------------------------

DASHES = ["-", "/", "\u2013", "\u2014", "\u2015"]


@pytest.mark.parametrize("dash", DASHES)
def test_windash_accepts_every_dash_character(sigma_rule, dash):
    rule = sigma_rule("""
        selection:
            CommandLine|windash|contains: ' -decode '
        condition: selection
    """)
    assert rule.matches({"CommandLine": f"certutil {dash}decode a b"})


def test_windash_does_not_accept_other_characters(sigma_rule):
    rule = sigma_rule("""
        selection:
            CommandLine|windash|contains: ' -decode '
        condition: selection
    """)
    assert not rule.matches({"CommandLine": "certutil +decode a b"})
    assert not rule.matches({"CommandLine": "certutil decode a b"})
    assert not rule.matches({"CommandLine": "certutil \\decode a b"})


def test_windash_permutes_every_dash_independently(sigma_rule):
    rule = sigma_rule("""
        selection:
            CommandLine|windash|contains: ' -a -b'
        condition: selection
    """)
    assert rule.matches({"CommandLine": "tool /a \u2013b"})
    assert rule.matches({"CommandLine": "tool \u2015a -b"})
    assert not rule.matches({"CommandLine": "tool /a b"})


def test_windash_written_with_slash_accepts_a_dash(sigma_rule):
    rule = sigma_rule("""
        selection:
            CommandLine|windash|contains: ' /c '
        condition: selection
    """)
    assert rule.matches({"CommandLine": "cmd -c whoami"})
    assert rule.matches({"CommandLine": "cmd /c whoami"})
    assert not rule.matches({"CommandLine": "cmd c whoami"})


# --------------------------------------------------------------------------------------------
# fieldref. mods "Specific Modifiers": compares fields of the event; "Can be combined with the
# neq modifier".
# --------------------------------------------------------------------------------------------


def test_fieldref_matches_when_both_fields_are_equal(sigma_rule):
    rule = sigma_rule("""
        selection:
            TargetUserName|fieldref: SubjectUserName
        condition: selection
    """)
    assert rule.matches({"TargetUserName": "alice", "SubjectUserName": "alice"})
    assert not rule.matches({"TargetUserName": "alice", "SubjectUserName": "bob"})
    assert not rule.matches({"TargetUserName": "alice"})
    assert not rule.matches({"SubjectUserName": "alice"})


def test_fieldref_with_neq_matches_when_fields_differ(sigma_rule):
    rule = sigma_rule("""
        selection:
            TargetUserName|fieldref|neq: SubjectUserName
        condition: selection
    """)
    assert rule.matches({"TargetUserName": "alice", "SubjectUserName": "bob"})
    assert not rule.matches({"TargetUserName": "alice", "SubjectUserName": "alice"})


def test_fieldref_contains_matches_when_one_field_holds_the_other(sigma_rule):
    rule = sigma_rule(r"""
        selection:
            CommandLine|fieldref|contains: TargetFilename
        condition: selection
    """)
    assert rule.matches(
        {"CommandLine": r"copy x C:\tmp\a.exe /y", "TargetFilename": r"C:\tmp\a.exe"}
    )
    assert not rule.matches(
        {"CommandLine": r"copy x C:\tmp\a.exe /y", "TargetFilename": r"C:\tmp\b.exe"}
    )


def test_fieldref_startswith_and_endswith(sigma_rule):
    starts = sigma_rule("""
        selection:
            CommandLine|fieldref|startswith: Image
        condition: selection
    """)
    ends = sigma_rule("""
        selection:
            CommandLine|fieldref|endswith: Image
        condition: selection
    """)
    assert starts.matches({"CommandLine": "tool.exe -x", "Image": "tool.exe"})
    assert not starts.matches({"CommandLine": "run tool.exe", "Image": "tool.exe"})
    assert ends.matches({"CommandLine": "run tool.exe", "Image": "tool.exe"})
    assert not ends.matches({"CommandLine": "tool.exe -x", "Image": "tool.exe"})


# --------------------------------------------------------------------------------------------
# Numeric comparisons. mods "Numeric Modifiers": lt, lte, gt, gte.
# --------------------------------------------------------------------------------------------


def test_gt_compares_numbers_and_numeric_strings(sigma_rule):
    rule = sigma_rule("""
        selection:
            Count|gt: 5
        condition: selection
    """)
    assert rule.matches({"Count": 6})
    assert rule.matches({"Count": "6"})
    assert rule.matches({"Count": 5.5})
    assert rule.matches({"Count": "10"})  # numeric, not text, order
    assert not rule.matches({"Count": 5})
    assert not rule.matches({"Count": "5"})
    assert not rule.matches({"Count": 4})
    assert not rule.matches({"Count": "abc"})
    assert not rule.matches({})


def test_gte_includes_the_bound(sigma_rule):
    rule = sigma_rule("""
        selection:
            Count|gte: 5
        condition: selection
    """)
    assert rule.matches({"Count": 5})
    assert rule.matches({"Count": "5"})
    assert rule.matches({"Count": 100})
    assert not rule.matches({"Count": 4})
    assert not rule.matches({"Count": "4"})


def test_lt_compares_numbers_and_numeric_strings(sigma_rule):
    rule = sigma_rule("""
        selection:
            Count|lt: 5
        condition: selection
    """)
    assert rule.matches({"Count": 4})
    assert rule.matches({"Count": "-1"})
    assert not rule.matches({"Count": 5})
    assert not rule.matches({"Count": "40"})


def test_lte_includes_the_bound(sigma_rule):
    rule = sigma_rule("""
        selection:
            Count|lte: 5
        condition: selection
    """)
    assert rule.matches({"Count": 5})
    assert rule.matches({"Count": "3"})
    assert not rule.matches({"Count": 6})
    assert not rule.matches({"Count": "6"})


def test_gt_and_lt_together_form_a_range(sigma_rule):
    rule = sigma_rule("""
        selection:
            Count|gt: 10
        upper:
            Count|lt: 20
        condition: selection and upper
    """)
    assert rule.matches({"Count": 15})
    assert not rule.matches({"Count": 10})
    assert not rule.matches({"Count": 20})


# --------------------------------------------------------------------------------------------
# Time modifiers. mods "Time Modifiers": extract a number (minute, hour, day, week, month, year)
# from a date; no time zone conversion.
# --------------------------------------------------------------------------------------------


def test_hour_modifier_compares_the_hour_of_a_date(sigma_rule):
    rule = sigma_rule("""
        selection:
            TimeCreated|hour: 3
        condition: selection
    """)
    assert rule.matches({"TimeCreated": "2024-05-01T03:15:00Z"})
    assert not rule.matches({"TimeCreated": "2024-05-01T04:15:00Z"})


def test_year_and_month_modifiers(sigma_rule):
    rule = sigma_rule("""
        selection:
            TimeCreated|year: 2024
            TimeCreated|month: 5
        condition: selection
    """)
    assert rule.matches({"TimeCreated": "2024-05-01T03:15:00Z"})
    assert not rule.matches({"TimeCreated": "2024-06-01T03:15:00Z"})
    assert not rule.matches({"TimeCreated": "2023-05-01T03:15:00Z"})


# --------------------------------------------------------------------------------------------
# Placeholders. rules "Placeholders": only handled with `expand`; values may be "single,
# multiple or-linked values or patterns" (e.g. `%Servers%` replaced with the pattern `srv*`);
# `field: %name%` is a literal; `\%plain%name%` has a plain `%plain` and a placeholder `%name%`;
# a tool that cannot handle a placeholder "must reject the rule".
# --------------------------------------------------------------------------------------------


def test_expand_matches_any_configured_placeholder_value(sigma_rule):
    rule = sigma_rule(
        """
        selection:
            User|expand: '%Administrators%'
        condition: selection
        """,
        placeholders={"Administrators": ["admin", "root"]},
    )
    assert rule.matches({"User": "admin"})
    assert rule.matches({"User": "ROOT"})
    assert not rule.matches({"User": "bob"})
    assert not rule.matches({"User": "%Administrators%"})


def test_expand_placeholder_inside_a_longer_value(sigma_rule):
    rule = sigma_rule(
        """
        selection:
            Path|expand: '/home/%Administrators%/.ssh/authorized_keys'
        condition: selection
        """,
        placeholders={"Administrators": ["admin", "root"]},
    )
    assert rule.matches({"Path": "/home/root/.ssh/authorized_keys"})
    assert not rule.matches({"Path": "/home/bob/.ssh/authorized_keys"})


def test_expand_placeholder_value_may_be_a_pattern(sigma_rule):
    rule = sigma_rule(
        """
        selection:
            Computer|expand: '%Servers%'
        condition: selection
        """,
        placeholders={"Servers": ["srv*"]},
    )
    assert rule.matches({"Computer": "srv01.corp.local"})
    assert not rule.matches({"Computer": "ws01.corp.local"})


def test_placeholder_without_expand_is_a_literal_value(sigma_rule):
    rule = sigma_rule(
        """
        selection:
            User: '%name%'
        condition: selection
        """,
        placeholders={"name": ["alice"]},
    )
    assert rule.matches({"User": "%name%"})
    assert not rule.matches({"User": "alice"})


@pytest.mark.xfail(
    reason="engine bug (pySigma 2.0.1 insert_placeholders): `\\%` does not escape a percent "
    "sign, so `\\%plain%name%` is read as a backslash, placeholder %plain% and text 'name%'",
    strict=True,
)
def test_escaped_percent_is_plain_text_next_to_a_placeholder(make_rule_yaml, event):
    loaded = rules_from_text(
        make_rule_yaml(r"""
            selection:
                Value|expand: '\%plain%name%'
            condition: selection
        """),
        placeholders={"name": ["X"]},
    )
    assert not loaded.plan.problems, [p.reason for p in loaded.plan.problems]
    found = list(loaded.engine.match([event({"Value": "%plainX"})]))
    assert found


def test_rule_with_a_placeholder_that_has_no_value_is_rejected(make_rule_yaml):
    good = make_rule_yaml(
        """
        selection:
            User: alice
        condition: selection
        """,
        rule_id="0b6a4f7e-1c2d-4e3f-8a9b-0c1d2e3f4a5b",
        title="Good rule",
    )
    bad = make_rule_yaml(
        """
        selection:
            Computer|expand: '%JumpServers%'
        condition: selection
        """,
        title="Needs a placeholder",
    )
    loaded = rules_from_text(good, bad, placeholders={"Servers": ["srv1"]})
    assert [r.title for r in loaded.plan.rules] == ["Good rule"]
    assert len(loaded.plan.problems) == 1
    problem = loaded.plan.problems[0]
    assert problem.title == "Needs a placeholder"
    assert "JumpServers" in problem.reason
