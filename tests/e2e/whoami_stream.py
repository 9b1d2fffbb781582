"""A stream of Sysmon process events for the `vigil serve` tests: one rule, and events
numbered by `seq` of which every 10th is one the rule fires on."""

from __future__ import annotations

import orjson

RULE = """\
title: Whoami with all its output
id: 5bd3b9a5-6c4c-4c3a-9a2b-1f1d2e3c4b5a
status: test
logsource:
    product: windows
    category: process_creation
detection:
    selection:
        Image|endswith: '\\\\whoami.exe'
        CommandLine|contains: '/all'
    condition: selection
level: medium
"""


def event(seq: int) -> bytes:
    """Event `seq` as JSON; its day varies (several partitions of the event store)."""
    hit = seq % 10 == 0
    return orjson.dumps(
        {
            "EventID": 1,
            "Channel": "Microsoft-Windows-Sysmon/Operational",
            "Hostname": f"host{seq % 50}",
            "UtcTime": f"2026-11-{1 + seq % 28:02d} 10:00:00.000",
            "Image": "C:\\Windows\\System32\\whoami.exe" if hit else "C:\\Windows\\notepad.exe",
            "CommandLine": "whoami /all" if hit else f"notepad {seq}.txt",
            "seq": seq,
        }
    )
