"""Flattening of Windows event shapes (evtx-rs JSON, nxlog, Winlogbeat) to Sigma's field names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ATTRS = "#attributes"
TEXT = "#text"

# nxlog / Mordor export names -> the EVTX names Sigma rules use.
NXLOG_RENAMES = {"Hostname": "Computer", "SourceName": "Provider_Name"}

# Winlogbeat `winlog.*` names -> EVTX names.
WINLOGBEAT_RENAMES = {
    "channel": "Channel",
    "event_id": "EventID",
    "provider_name": "Provider_Name",
    "provider_guid": "Provider_Guid",
    "computer_name": "Computer",
    "record_id": "EventRecordID",
    "task": "Task",
    "opcode": "Opcode",
    "version": "Version",
}


def _scalar(value: Any) -> Any:
    """A leaf value: `{"#text": x}` becomes x, lists of such become lists."""
    if type(value) is dict:
        if TEXT in value:
            return _scalar(value[TEXT])
        return None if not value or set(value) == {ATTRS} else value
    return value


def _system(system: dict[str, Any], out: dict[str, Any]) -> None:
    for key, value in system.items():
        if type(value) is not dict:  # most values: EventID, Channel, Computer, ...
            out[key] = value
            continue
        attrs = value.get(ATTRS)
        if attrs and type(attrs) is dict:
            prefix = key + "_"
            for attr, attr_value in attrs.items():
                # Provider.Name -> Provider_Name, Execution.ProcessID -> Execution_ProcessID
                out[prefix + attr] = attr_value
        if TEXT in value:
            out[key] = _scalar(value[TEXT])
        elif not attrs:
            out[key] = None


def spaced_names(fields: dict[str, Any]) -> None:
    """Field names holding spaces (Defender's `New Value`, `Threat Name`) under the names Sigma
    rules use: without the spaces (`NewValue`, most rules), and with underscores
    (`Feature_Name`, a few); the spaced name goes."""
    for key in [key for key in fields if " " in key]:
        value = fields.pop(key)
        fields.setdefault(key.replace(" ", ""), value)
        fields.setdefault(key.replace(" ", "_"), value)


def _data(section: Any, out: dict[str, Any]) -> None:
    """EventData / UserData: every leaf by its own name; unnamed <Data> items as a `Data` list."""
    if type(section) is not dict:
        if section is not None:
            out.setdefault("Data", section)
        return
    # Most values are plain: copy them at C speed, then mend the few nested ones.
    out.update(section)
    if " " in "".join(section):
        spaced_names(out)
    if dict not in map(type, section.values()):
        return
    out.pop(ATTRS, None)
    for key, value in section.items():
        if type(value) is dict and key != ATTRS:
            if TEXT in value:
                out[key] = _scalar(value)
            else:
                del out[key]
                # UserData wraps its fields in one element (with an xmlns attribute).
                _data(value, out)


def flatten_evtx_json(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten the evtx-rs JSON of one record (`{"Event": {"System": ..., "EventData": ...}}`)."""
    event = doc.get("Event", doc)
    out: dict[str, Any] = {}
    if type(event) is not dict:
        return out
    system = event.get("System")
    if type(system) is dict:
        _system(system, out)
    channel = out.get("Channel")
    data = event.get("EventData")
    if data is not None:
        _data(data, out)
    data = event.get("UserData")
    if data is not None:
        _data(data, out)
    if channel is not None and out.get("Channel") != channel:
        # Event data may carry a field of the same name (1102/104: the log that was cleared):
        # rules read the event's own field, routing reads the log's channel, kept here.
        out["System_Channel"] = channel
    rendering = event.get("RenderingInfo")
    if type(rendering) is dict:
        for key, value in rendering.items():
            if key != ATTRS and type(value) is not dict:
                out.setdefault(key, value)
    return out


def flatten_nxlog(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Flat nxlog-style records (OTRF Mordor): EVTX names for host and provider, the rest as is.

    A dict is completed in place (readers hand over records they own); other mappings are
    copied."""
    out = doc if type(doc) is dict else dict(doc)
    if " " in "".join(map(str, out)):
        spaced_names(out)
    for old, new in NXLOG_RENAMES.items():
        if old in out and new not in out:
            out[new] = out[old]
    return out


def flatten_winlogbeat(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Winlogbeat / Elastic Agent records: `winlog.event_data.*` by own name, `winlog.*` renamed."""
    winlog = doc.get("winlog")
    out: dict[str, Any] = {}
    if not isinstance(winlog, Mapping):
        return out
    for key, value in winlog.items():
        if key in ("event_data", "user_data") and isinstance(value, Mapping):
            _data(value, out)
        elif key in WINLOGBEAT_RENAMES:
            out[WINLOGBEAT_RENAMES[key]] = value
        elif not isinstance(value, Mapping):
            out[key] = value
    if "Computer" not in out:
        host = doc.get("host")
        if isinstance(host, Mapping) and host.get("name"):
            out["Computer"] = host["name"]
    message = doc.get("message")
    if message is not None:
        out.setdefault("Message", message)
    return out


# What decoded JSON holds besides objects: leaves, known without the slow ABC check.
_JSON_LEAVES = frozenset((str, int, float, bool, list, type(None)))


def flatten_dotted(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Generic JSON: nested objects become dotted names (`a.b.c`), lists stay lists."""
    out: dict[str, Any] = {}
    if type(doc) is dict:
        _json_into(doc, prefix, out)
    else:
        _flatten_into(doc, prefix, out)
    return out


def _json_into(doc: dict[str, Any], prefix: str, out: dict[str, Any]) -> None:
    """Decoded JSON: its objects are dicts, its keys strings, so only dicts are looked into
    (the general walk below also takes other mappings and keys)."""
    for key, value in doc.items():
        if type(value) is dict and value:
            _json_into(value, prefix + key + ".", out)
        else:
            out[prefix + key] = value


def _flatten_into(doc: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> None:
    leaves = _JSON_LEAVES
    for key, value in doc.items():
        kind = type(value)
        if type(key) is not str:
            key = str(key)
        if kind in leaves or not value or (kind is not dict and not isinstance(value, Mapping)):
            out[prefix + key] = value
        else:
            _flatten_into(value, prefix + key + ".", out)


def windows_shape(doc: Mapping[str, Any]) -> str | None:
    """Which Windows shape a JSON record has: 'evtx', 'winlogbeat', 'nxlog' or None."""
    event = doc.get("Event")
    if type(event) is dict and "System" in event:
        return "evtx"
    if type(doc.get("winlog")) is dict:
        return "winlogbeat"
    if "EventID" in doc and ("Channel" in doc or "SourceName" in doc):
        return "nxlog"
    return None
