"""What kind of log a JSON record is, from its content: Windows shapes, Azure Sentinel exports,
Zeek, Suricata EVE, CloudTrail, Azure, GCP, Kubernetes audit, Okta, Google Workspace,
Microsoft 365, Proofpoint, and Panther rule-test fixtures that wrap any of them.

Each shape is a test on the record's keys and a function giving the event's fields and
dataset; the dataset's logsource (product, service, category) and field aliases come from
the table in `vigil/data/sources.yml` (see `vigil.ingest.sources`). Records of one file are
usually alike, so the shape that matched last is tried first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from vigil.events import flatten_dotted, flatten_evtx_json, flatten_nxlog, flatten_winlogbeat
from vigil.ingest import auditd, syslog, zeek
from vigil.ingest.base import MAX_DEPTH, too_deep

# Set on fields the shape could read only in part (the reader reports it and removes it).
TRUNCATED_MARK = "\x00truncated"

# (fields, dataset); fields may be the record itself (readers own the records they decode)
Built = tuple[dict[str, Any], str | None]


@dataclass(frozen=True, slots=True)
class Shape:
    name: str
    test: Callable[[dict[str, Any]], bool]
    build: Callable[[dict[str, Any], str | None], Built]  # (record, hint) -> fields, dataset


def _windows(build: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[..., Built]:
    return lambda doc, hint: (build(doc), "windows")


def _sentinel_windows(doc: dict[str, Any], hint: str | None) -> Built:
    """Azure Sentinel `WindowsEvent` rows: EventData is a JSON text of the event's fields."""
    fields = {k: v for k, v in doc.items() if k != "EventData"}
    data = doc.get("EventData")
    if isinstance(data, str) and data.startswith("{"):
        try:
            decoded = orjson.loads(data)
        except orjson.JSONDecodeError:
            decoded = None
        # text nested past the depth cap stays text (the record's own depth was checked, not
        # that of the JSON inside its strings)
        deep = data.count("{") + data.count("[") > MAX_DEPTH and too_deep(decoded)
        if type(decoded) is dict and not deep:
            fields.update(decoded)
    elif isinstance(data, dict):
        fields.update(data)
    if "Provider" in fields and "Provider_Name" not in fields:
        fields["Provider_Name"] = fields["Provider"]
    return fields, "windows"


def _sentinel_syslog(doc: dict[str, Any], hint: str | None) -> Built:
    """Azure Sentinel `Syslog` rows: the message may be Sysmon for Linux XML or audit text."""
    fields = dict(doc)
    message = str(doc.get("SyslogMessage") or "")
    if message.startswith("<Event"):
        sysmon = syslog.parse_sysmon_xml(message)
        if sysmon is not None:
            fields.update(sysmon[0])
            if not sysmon[1]:
                fields[TRUNCATED_MARK] = True
            return fields, "linux.sysmon"
    if message.startswith("type=") or message.startswith("node="):
        parsed = auditd.parse_record(message)
        if parsed is not None:
            stamp, record_type, audit = parsed
            fields.update(audit)
            fields["type"] = record_type
            fields.setdefault("audit_stamp", stamp)
            return fields, "linux.auditd"
    fields.setdefault("message", message)
    if doc.get("ProcessName"):
        fields.setdefault("program", doc["ProcessName"])
    return fields, "syslog"


def _zeek(doc: dict[str, Any], hint: str | None) -> Built:
    log_type = zeek.json_log_type(doc) or (zeek.log_type_from_name(hint) if hint else None)
    return zeek.normalise_json(doc), f"zeek.{log_type}" if log_type else "zeek"


def _suricata(doc: dict[str, Any], hint: str | None) -> Built:
    return flatten_dotted(doc), f"suricata.{doc.get('event_type') or 'eve'}"


def _azure(doc: dict[str, Any], hint: str | None) -> Built:
    category = str(doc.get("category") or doc.get("Category") or "").lower()
    fields = flatten_dotted(doc)
    if category in ("signinlogs", "noninteractiveusersigninlogs", "serviceprincipalsigninlogs"):
        return _azure_signin(doc, fields), "azure.signinlogs"
    if category == "auditlogs":
        return fields, "azure.auditlogs"
    if category in ("riskdetection", "userriskevents"):
        return fields, "azure.riskdetection"
    return fields, "azure.activitylogs"


def _azure_signin(doc: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """Sign-in records as Sentinel's SigninLogs table names them (the names Sigma rules use):
    the Event Hub export nests them under `properties` in lower camel case."""
    properties = doc.get("properties")
    if isinstance(properties, dict):
        for key, value in properties.items():
            if not isinstance(value, dict):
                fields.setdefault(key[:1].upper() + key[1:], value)
        status = properties.get("status")
        if isinstance(status, dict):
            if "errorCode" in status:
                fields.setdefault("ResultType", status["errorCode"])
            if "failureReason" in status:
                fields.setdefault("ResultDescription", status["failureReason"])
    return fields


def _gworkspace(doc: dict[str, Any], hint: str | None) -> Built:
    fields = flatten_dotted(doc)
    ident: dict[str, Any] = doc["id"] if isinstance(doc.get("id"), dict) else {}
    fields.setdefault("eventService", ident.get("applicationName"))
    events = doc.get("events")
    if isinstance(events, list) and events and isinstance(events[0], dict):
        fields.setdefault("eventName", events[0].get("name"))
    elif "name" in doc:
        fields.setdefault("eventName", doc["name"])
    application = str(ident.get("applicationName") or "").lower()
    return fields, f"google_workspace.{application}" if application else "google_workspace"


def _m365(doc: dict[str, Any], hint: str | None) -> Built:
    return flatten_dotted(doc), "m365.audit"


def _plain(dataset: str) -> Callable[[dict[str, Any], str | None], Built]:
    return lambda doc, hint: (flatten_dotted(doc), dataset)


def _is_sentinel_windows(doc: dict[str, Any]) -> bool:
    return "EventData" in doc and "Channel" in doc and ("Provider" in doc or "EventID" in doc)


def _is_cloudtrail(doc: dict[str, Any]) -> bool:
    return "eventSource" in doc and "eventName" in doc and "eventTime" in doc


def _is_azure(doc: dict[str, Any]) -> bool:
    return (
        "operationName" in doc
        and ("resourceId" in doc or "category" in doc)
        and ("time" in doc or "eventTimestamp" in doc)
    )


def _is_gcp_audit(doc: dict[str, Any]) -> bool:
    payload = doc.get("protoPayload")
    if not isinstance(payload, dict):
        return False
    kind = str(payload.get("@type") or payload.get("at_sign_type") or "")
    return kind.endswith("AuditLog") or "cloudaudit" in str(doc.get("logName") or "")


def _is_k8s_audit(doc: dict[str, Any]) -> bool:
    return doc.get("kind") == "Event" and str(doc.get("apiVersion") or "").startswith(
        "audit.k8s.io"
    )


def _is_okta(doc: dict[str, Any]) -> bool:
    return "eventType" in doc and "actor" in doc and ("published" in doc or "displayMessage" in doc)


def _is_gworkspace(doc: dict[str, Any]) -> bool:
    ident = doc.get("id")
    return (
        isinstance(ident, dict)
        and "applicationName" in ident
        and ("events" in doc or str(doc.get("kind") or "").endswith("#activity"))
    )


def _is_m365(doc: dict[str, Any]) -> bool:
    return (
        "Operation" in doc and "CreationTime" in doc and ("Workload" in doc or "RecordType" in doc)
    )


def _is_proofpoint(doc: dict[str, Any]) -> bool:
    return ("messageID" in doc or "GUID" in doc) and (
        "messageTime" in doc or "clickTime" in doc or "phishScore" in doc
    )


def _is_suricata(doc: dict[str, Any]) -> bool:
    return "event_type" in doc and ("src_ip" in doc or "flow_id" in doc)


SHAPES: tuple[Shape, ...] = (
    Shape("evtx", lambda d: type(d.get("Event")) is dict, _windows(flatten_evtx_json)),
    Shape("winlogbeat", lambda d: type(d.get("winlog")) is dict, _windows(flatten_winlogbeat)),
    Shape("sentinel-windows", _is_sentinel_windows, _sentinel_windows),
    Shape(
        "nxlog",
        lambda d: "EventID" in d and ("Channel" in d or "SourceName" in d),
        _windows(flatten_nxlog),
    ),
    Shape("sentinel-syslog", lambda d: "SyslogMessage" in d, _sentinel_syslog),
    Shape("zeek", zeek.looks_like_json, _zeek),
    Shape("suricata", _is_suricata, _suricata),
    Shape("cloudtrail", _is_cloudtrail, _plain("aws.cloudtrail")),
    Shape("kubernetes", _is_k8s_audit, _plain("kubernetes.audit")),
    Shape("gcp", _is_gcp_audit, _plain("gcp.audit")),
    Shape("azure", _is_azure, _azure),
    Shape("okta", _is_okta, _plain("okta.system")),
    Shape("google-workspace", _is_gworkspace, _gworkspace),
    Shape("m365", _is_m365, _m365),
    Shape("proofpoint", _is_proofpoint, _plain("proofpoint")),
)
BY_NAME = {shape.name: shape for shape in SHAPES}
GENERIC = Shape("json", lambda d: True, _plain("json"))

# Panther's log type names -> our shapes (for fixtures that say what they hold).
PANTHER_TYPES = {
    "AWS.CloudTrail": "cloudtrail",
    "Amazon.EKS.Audit": "kubernetes",
    "GCP.AuditLog": "gcp",
    "Azure.MonitorActivity": "azure",
    "Azure.Audit": "azure",
    "Okta.SystemLog": "okta",
    "GSuite.ActivityEvent": "google-workspace",
    "Proofpoint.Event": "proofpoint",
    "Suricata.Alert": "suricata",
}


def is_panther_fixture(doc: dict[str, Any]) -> bool:
    return "log" in doc and "log_types" in doc and "rule_id" in doc


class Classifier:
    """Finds each record's shape, trying the last one that matched first."""

    def __init__(self, forced: str | None = None) -> None:
        self.last: Shape | None = None
        self.forced = BY_NAME.get(forced) if forced else None

    def shape_of(self, doc: dict[str, Any]) -> Shape:
        if self.forced is not None:
            return self.forced
        last = self.last
        if last is not None and last.test(doc):
            return last
        for shape in SHAPES:
            if shape.test(doc):
                self.last = shape
                return shape
        self.last = None
        return GENERIC

    def build(self, doc: dict[str, Any], hint: str | None) -> Built:
        if is_panther_fixture(doc):
            log = doc["log"]
            if type(log) is not dict:
                return {}, None
            types = doc.get("log_types")
            # a list of one name says what the log is; anything else does not
            one = types[0] if type(types) is list and len(types) == 1 else None
            named = BY_NAME.get(PANTHER_TYPES.get(one, "")) if type(one) is str else None
            shape = named if named is not None and named.test(log) else self.shape_of(log)
            return shape.build(log, hint)
        return self.shape_of(doc).build(doc, hint)
