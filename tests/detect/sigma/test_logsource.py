"""Logsource routing: which events a rule's logsource applies to.

Expectations come from /work/shared/docs/sigma-specification/specification/:
  sigma-rules-specification.md "LogSource" (product / category / service select log data) and
    "Field Usage" (the field mapping Image -> NewProcessName, ParentImage -> ParentProcessName
    for built-in Windows events);
  sigma-appendix-taxonomy.md "Windows Folder" (process_creation = Sysmon EventID 1 on
    Microsoft-Windows-Sysmon/Operational; network_connection = Sysmon EventID 3;
    service: security = Channel Security).
"""

from __future__ import annotations

SYSMON = "Microsoft-Windows-Sysmon/Operational"

PROCESS_CREATION = r"""
    selection:
        Image|endswith: '\whoami.exe'
        ParentImage|endswith: '\cmd.exe'
    condition: selection
"""
WINDOWS_PROCESS_CREATION = "product: windows\ncategory: process_creation"


def test_process_creation_rule_matches_sysmon_event_1(sigma_rule):
    rule = sigma_rule(PROCESS_CREATION, logsource=WINDOWS_PROCESS_CREATION)
    fields = {
        "Channel": SYSMON,
        "EventID": 1,
        "Image": r"C:\Windows\System32\whoami.exe",
        "ParentImage": r"C:\Windows\System32\cmd.exe",
    }
    assert rule.matches(fields, product="windows")
    assert not rule.matches({**fields, "Image": r"C:\x\hostname.exe"}, product="windows")


def test_process_creation_rule_reads_security_4688_through_the_field_mapping(sigma_rule):
    rule = sigma_rule(PROCESS_CREATION, logsource=WINDOWS_PROCESS_CREATION)
    fields = {
        "Channel": "Security",
        "EventID": 4688,
        "NewProcessName": r"C:\Windows\System32\whoami.exe",
        "ParentProcessName": r"C:\Windows\System32\cmd.exe",
    }
    assert rule.matches(fields, product="windows")
    assert not rule.matches(
        {**fields, "ParentProcessName": r"C:\x\explorer.exe"}, product="windows"
    )


def test_process_creation_rule_ignores_other_sysmon_events(sigma_rule):
    rule = sigma_rule(PROCESS_CREATION, logsource=WINDOWS_PROCESS_CREATION)
    fields = {
        "Channel": SYSMON,
        "EventID": 3,
        "Image": r"C:\Windows\System32\whoami.exe",
        "ParentImage": r"C:\Windows\System32\cmd.exe",
    }
    assert not rule.matches(fields, product="windows")


def test_process_creation_rule_ignores_other_products(sigma_rule):
    rule = sigma_rule(PROCESS_CREATION, logsource=WINDOWS_PROCESS_CREATION)
    fields = {
        "Channel": SYSMON,
        "EventID": 1,
        "Image": r"C:\Windows\System32\whoami.exe",
        "ParentImage": r"C:\Windows\System32\cmd.exe",
    }
    assert not rule.matches(fields, product="linux")


def test_service_security_rule_matches_only_the_security_channel(sigma_rule):
    rule = sigma_rule(
        """
        selection:
            EventID: 1102
        condition: selection
        """,
        logsource="product: windows\nservice: security",
    )
    assert rule.matches({"Channel": "Security", "EventID": 1102}, product="windows")
    assert not rule.matches({"Channel": "System", "EventID": 1102}, product="windows")


def test_product_only_rule_applies_to_every_event_of_that_product(sigma_rule):
    rule = sigma_rule(
        """
        selection:
            EventID: 104
        condition: selection
        """,
        logsource="product: windows",
    )
    assert rule.matches({"Channel": "System", "EventID": 104}, product="windows")
    assert rule.matches({"Channel": "Application", "EventID": 104}, product="windows")
    assert not rule.matches({"Channel": "System", "EventID": 104}, product="linux")


def test_rule_for_an_unmapped_product_applies_to_that_product_only(sigma_rule):
    rule = sigma_rule("""
        selection:
            A: 'x'
        condition: selection
    """)
    assert rule.matches({"A": "x"}, product="testprod")
    assert not rule.matches({"A": "x"}, product="otherprod")


def test_fieldref_reads_both_fields_through_the_field_mapping(sigma_rule):
    rule = sigma_rule(
        """
        selection:
            Image|fieldref: ParentImage
        condition: selection
        """,
        logsource=WINDOWS_PROCESS_CREATION,
    )
    same = r"C:\Users\Public\payload.exe"
    sysmon = {"Channel": SYSMON, "EventID": 1, "Image": same, "ParentImage": same}
    security = {
        "Channel": "Security",
        "EventID": 4688,
        "NewProcessName": same,
        "ParentProcessName": same,
    }
    assert rule.matches(sysmon, product="windows")  # holds already
    assert rule.matches(security, product="windows")
