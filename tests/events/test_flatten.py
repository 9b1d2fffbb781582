"""Flattening Windows event shapes to the field names Sigma rules use.

Expected values are read from the raw records themselves (evtx-rs JSON of real EVTX files,
OTRF Mordor nxlog lines); Winlogbeat has no reference data here, so its record follows the
field layout Elastic documents for `winlog.*`.
"""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import evtx
import pytest

from vigil.events import (
    flatten_dotted,
    flatten_evtx_json,
    flatten_nxlog,
    flatten_winlogbeat,
    windows_shape,
)

EVTX_RS = ("windows", "evtx-rs-benign-and-corrupt")
LOG_CLEARED = (
    "windows",
    "evtx-to-mitre-attack",
    "TA0005-Defense Evasion",
    "T1070.001-Clear Windows event logs",
    "ID104-1102-Event log cleared.evtx.gz",
)


def raw_records(path: Path) -> Iterator[dict[str, Any]]:
    """The evtx-rs JSON documents of an .evtx.gz, as pyevtx-rs renders them (records of
    unreadable chunks, such as the unused slack after sysmon.evtx's last chunk, are passed)."""
    records = evtx.PyEvtxParser(io.BytesIO(gzip.decompress(path.read_bytes()))).records_json()
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except RuntimeError:
            continue
        yield json.loads(record["data"])


def event_id(doc: dict[str, Any]) -> Any:
    value = doc["Event"]["System"]["EventID"]
    return value["#text"] if isinstance(value, dict) else value


def first(path: Path, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    for doc in raw_records(path):
        if predicate(doc):
            return doc
    raise AssertionError(f"no such record in {path}")


# --- evtx-rs JSON -----------------------------------------------------------------------------


def test_event_id_with_qualifiers_becomes_the_plain_event_id(need_data) -> None:
    path = need_data(*EVTX_RS, "system.evtx.gz")
    doc = first(path, lambda d: isinstance(d["Event"]["System"]["EventID"], dict))
    raw = doc["Event"]["System"]["EventID"]
    assert "Qualifiers" in raw["#attributes"]

    fields = flatten_evtx_json(doc)

    assert fields["EventID"] == raw["#text"]


def test_service_install_has_system_and_event_data_fields_by_sigma_names(need_data) -> None:
    path = need_data(*EVTX_RS, "system.evtx.gz")
    doc = first(path, lambda d: event_id(d) == 7045)
    system, data = doc["Event"]["System"], doc["Event"]["EventData"]

    fields = flatten_evtx_json(doc)

    assert fields["EventID"] == 7045
    assert fields["Provider_Name"] == system["Provider"]["#attributes"]["Name"]
    assert fields["Provider_Name"] == "Service Control Manager"
    assert fields["Channel"] == "System"
    assert fields["Computer"] == system["Computer"]
    assert fields["EventRecordID"] == system["EventRecordID"]
    assert fields["TimeCreated_SystemTime"] == system["TimeCreated"]["#attributes"]["SystemTime"]
    assert fields["ServiceName"] == data["ServiceName"]
    assert fields["ImagePath"] == data["ImagePath"]


def test_sysmon_process_creation_fields_are_there_by_name(need_data) -> None:
    path = need_data(*EVTX_RS, "sysmon.evtx.gz")
    doc = first(path, lambda d: event_id(d) == 1)
    data = doc["Event"]["EventData"]

    fields = flatten_evtx_json(doc)

    assert fields["EventID"] == 1
    assert fields["Channel"] == "Microsoft-Windows-Sysmon/Operational"
    for name in ("Image", "CommandLine", "ParentImage", "ParentCommandLine", "User", "Hashes"):
        assert fields[name] == data[name], name


@pytest.mark.parametrize(
    "name", ["sysmon.evtx.gz", "security.evtx.gz", "system.evtx.gz", "2-vss_7-System.evtx.gz"]
)
def test_every_named_event_data_value_is_a_field_of_its_own_name(need_data, name: str) -> None:
    wrong = []
    count = 0
    for doc in raw_records(need_data(*EVTX_RS, name)):
        data = doc["Event"].get("EventData")
        if not isinstance(data, dict):
            continue
        fields = flatten_evtx_json(doc)
        for key, value in data.items():
            if key.startswith("#") or isinstance(value, dict):
                continue
            count += 1
            name = key.replace(" ", "")  # as Sigma names them
            if fields.get(name, "<missing>") != value:
                wrong.append((event_id(doc), key, value, fields.get(name, "<missing>")))
    assert count > 100
    assert not wrong[:10]


def test_event_data_attributes_do_not_become_fields(need_data) -> None:
    path = need_data(*EVTX_RS, "system.evtx.gz")
    doc = first(path, lambda d: "#attributes" in (d["Event"].get("EventData") or {}))
    data = doc["Event"]["EventData"]

    fields = flatten_evtx_json(doc)

    assert "#attributes" not in fields
    for key, value in data.items():
        if key != "#attributes":
            assert fields[key.replace(" ", "")] == value


def test_user_data_fields_are_there_by_their_own_name(need_data) -> None:
    path = need_data(*LOG_CLEARED)
    doc = first(path, lambda d: event_id(d) == 1102)
    [(wrapper, cleared)] = doc["Event"]["UserData"].items()
    assert wrapper == "LogFileCleared"

    fields = flatten_evtx_json(doc)

    for name in ("SubjectUserSid", "SubjectUserName", "SubjectDomainName", "SubjectLogonId"):
        assert fields[name] == cleared[name], name
    assert fields["EventID"] == 1102
    assert fields["Channel"] == "Security"
    assert "LogFileCleared" not in fields
    assert "xmlns" not in fields and "#attributes" not in fields


def test_unnamed_data_items_become_a_data_list(need_data) -> None:
    path = need_data(*EVTX_RS, "MSExchange_Management_wec.evtx.gz")
    doc = first(path, lambda d: True)
    items = doc["Event"]["EventData"]["Data"]["#text"]

    fields = flatten_evtx_json(doc)

    assert fields["Data"] == items
    assert fields["Data"][0] == "Set-Mailbox"
    assert fields["Provider_Name"] == "MSExchange CmdletLogs"


def test_evtx_json_is_recognised_as_the_evtx_shape(need_data) -> None:
    doc = first(need_data(*EVTX_RS, "Security_short_selected.evtx.gz"), lambda d: True)
    assert windows_shape(doc) == "evtx"


# --- nxlog (OTRF Mordor) ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def mordor_sysmon_process_creation(need_data) -> dict[str, Any]:
    path = need_data(
        "windows", "otrf-security-datasets", "collection", "host", "msf_record_mic.zip"
    )
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            for line in archive.read(name).splitlines():
                record = json.loads(line)
                if record.get("SourceName") == "Microsoft-Windows-Sysmon" and (
                    record.get("EventID") == 1
                ):
                    return record
    raise AssertionError("no Sysmon process creation record")


def test_nxlog_host_and_source_get_evtx_names(mordor_sysmon_process_creation) -> None:
    record = mordor_sysmon_process_creation
    assert windows_shape(record) == "nxlog"

    fields = flatten_nxlog(record)

    assert fields["Computer"] == record["Hostname"] == "MORDORDC.mordor.local"
    assert fields["Provider_Name"] == record["SourceName"] == "Microsoft-Windows-Sysmon"
    assert fields["EventID"] == 1
    assert fields["Channel"] == "Microsoft-Windows-Sysmon/Operational"
    for name in ("Image", "CommandLine", "ParentImage"):
        assert fields[name] == record[name], name


def test_nxlog_keeps_an_evtx_name_already_present() -> None:
    record = {
        "EventID": 4624,
        "Channel": "Security",
        "Hostname": "collector",
        "Computer": "DC01",
        "SourceName": "Microsoft-Windows-Security-Auditing",
    }
    assert flatten_nxlog(record)["Computer"] == "DC01"


# --- Winlogbeat -------------------------------------------------------------------------------

WINLOGBEAT = {
    "@timestamp": "2019-05-02T14:09:20.345Z",
    "event": {"code": "4624", "kind": "event", "provider": "Microsoft-Windows-Security-Auditing"},
    "host": {"name": "dc01"},
    "message": "An account was successfully logged on.",
    "winlog": {
        "channel": "Security",
        "event_id": 4624,
        "provider_name": "Microsoft-Windows-Security-Auditing",
        "provider_guid": "{54849625-5478-4994-a5ba-3e3b0328c30d}",
        "computer_name": "DC01.contoso.local",
        "record_id": 12345,
        "process": {"pid": 780, "thread": {"id": 2340}},
        "event_data": {"TargetUserName": "bob", "LogonType": "3", "IpAddress": "10.0.0.5"},
        "keywords": ["Audit Success"],
        "task": "Logon",
    },
}


def test_winlogbeat_fields_get_evtx_names() -> None:
    assert windows_shape(WINLOGBEAT) == "winlogbeat"

    fields = flatten_winlogbeat(WINLOGBEAT)

    assert fields["Channel"] == "Security"
    assert fields["EventID"] == 4624
    assert fields["Provider_Name"] == "Microsoft-Windows-Security-Auditing"
    assert fields["Computer"] == "DC01.contoso.local"
    assert fields["EventRecordID"] == 12345
    assert fields["TargetUserName"] == "bob"
    assert fields["LogonType"] == "3"
    assert fields["IpAddress"] == "10.0.0.5"
    assert fields["Message"] == "An account was successfully logged on."


def test_winlogbeat_without_computer_name_takes_the_host_name() -> None:
    winlog = {k: v for k, v in WINLOGBEAT["winlog"].items() if k != "computer_name"}
    fields = flatten_winlogbeat({**WINLOGBEAT, "winlog": winlog})
    assert fields["Computer"] == "dc01"


# --- other JSON -------------------------------------------------------------------------------


def test_other_json_is_not_a_windows_shape_and_gets_dotted_names() -> None:
    record = {"eventName": "ConsoleLogin", "userIdentity": {"type": "Root", "arn": "arn:x"}}
    assert windows_shape(record) is None
    assert flatten_dotted(record) == {
        "eventName": "ConsoleLogin",
        "userIdentity.type": "Root",
        "userIdentity.arn": "arn:x",
    }


def test_names_with_spaces_get_the_names_sigma_rules_use(need_data) -> None:
    """Defender's `New Value` is `NewValue` in most rules and `Feature_Name`-style in a few."""
    path = need_data(
        "windows",
        "evtx-to-mitre-attack",
        "TA0005-Defense Evasion",
        "T1562.001-Impair Defenses-Disable or Modify tool",
        "ID5007-Defender threat exclusion (native).evtx.gz",
    )
    fields = flatten_evtx_json(
        first(path, lambda doc: "Exclusions" in str(doc["Event"]["EventData"].get("New Value")))
    )
    assert "Exclusions" in fields["NewValue"]
    assert fields["New_Value"] == fields["NewValue"]
    assert fields["ProductName"]
    assert not [name for name in fields if " " in name]


def test_nxlog_names_with_spaces_get_sigma_names() -> None:
    fields = flatten_nxlog({"EventID": 5007, "SourceName": "x", "Threat Name": "Eicar"})
    assert fields["ThreatName"] == fields["Threat_Name"] == "Eicar"
    assert "Threat Name" not in fields
