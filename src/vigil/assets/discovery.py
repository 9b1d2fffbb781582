"""Passive discovery: the hosts, users, addresses and relationships that telemetry shows,
read from events' ECS view (`vigil.events.ecs`), as an `Inventory` of source `telemetry`.

What each kind of event shows is a table (`SHOWS`): a successful Windows logon (4624) or a
process started as a user (4688) is a logon of the user on the host; a Sysmon network
connection (3), a Zeek conn or SMB record is a flow from one host to another's port; a
Kerberos or NTLM exchange is a logon of the user from the client machine (which then holds
the user's credentials); an sshd `Accepted` line is a logon; a CloudTrail AssumeRole is a
principal that can assume the role, any other call a principal using a service. Failed
logons (4625) and ticket requests (4768) show the user and the machine, no access; nor
does any attempt that failed (a refused AssumeRole, an unauthorised call).

Hosts are keyed by name when the event gives one, else by address; an address node is tied
to its host. A node whose only source is telemetry is not in any inventory: unmanaged
(`managed` in `vigil.assets.store`).

    inventory = discover(events)
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from vigil.assets.model import Inventory, Node
from vigil.events import Event

SOURCE = "telemetry"
LOGON_TYPE = re.compile(r"[0-9]{1,5}")  # Windows logon types are small numbers


@dataclass(frozen=True, slots=True)
class Shows:
    """What one kind of event shows: relationships (kind, from end, to end), the ends that
    are only nodes, and a native-field condition (name, a value it contains)."""

    edges: tuple[tuple[str, str, str], ...] = ()
    nodes: tuple[str, ...] = ()
    when: tuple[str, str] | None = None
    outcome: str | None = None  # only events with this event.outcome


# (dataset, event code or action; None: any) → what it shows. The ends: user, host (the
# event's own), source and destination (by name, else address), principal (the cloud
# identity acting), role (the role assumed), service (the cloud service called).
SHOWS: dict[tuple[str, str | None], Shows] = {
    ("windows", "4624"): Shows((("logon", "user", "host"), ("logon", "user", "source"))),
    ("windows", "4688"): Shows((("logon", "user", "host"),)),
    ("windows", "4625"): Shows(nodes=("user", "host", "source")),
    ("windows", "4768"): Shows(nodes=("user", "source")),
    ("windows", "4769"): Shows((("logon", "user", "source"),)),
    ("windows", "1"): Shows((("logon", "user", "host"),), when=("Channel", "Sysmon")),
    ("windows", "3"): Shows((("flow", "host", "destination"),), when=("Channel", "Sysmon")),
    ("linux.auth", None): Shows((("logon", "user", "host"),), outcome="success"),
    ("zeek.conn", None): Shows((("flow", "source", "destination"),)),
    ("zeek.smb_files", None): Shows((("flow", "source", "destination"),)),
    ("zeek.smb_mapping", None): Shows((("flow", "source", "destination"),)),
    ("zeek.kerberos", None): Shows((("logon", "user", "source"),)),
    ("zeek.ntlm", None): Shows((("logon", "user", "source"),)),
    ("aws.cloudtrail", "AssumeRole"): Shows((("can_assume", "principal", "role"),)),
    ("aws.cloudtrail", None): Shows((("has_permission", "principal", "service"),)),
}

# accounts that are the system itself, not someone (lower case)
NOT_PEOPLE = frozenset(
    {"-", "", "system", "local service", "network service", "anonymous logon", "dwm-1",
     "umfd-0", "umfd-1", "dwm-2", "umfd-2", "window manager", "font driver host"}
)  # fmt: skip
NOT_DOMAINS = frozenset({"-", "nt authority", "window manager", "font driver host"})
LOCAL_ACCOUNTS = frozenset({"linux.auth", "linux.auditd", "syslog"})  # accounts of the host


# The native fields that decide what an event shows, per dataset: an event that repeats an
# earlier one's values on them (the thousands of process starts of one user on one host)
# adds nothing, and is passed over before its ECS view is made.
SAME_AS = {
    "windows": ("EventID", "Channel", "Computer", "User", "TargetUserName", "SubjectUserName",
                "AccountName", "TargetDomainName", "SubjectDomainName", "IpAddress",
                "SourceIp", "SourceAddress", "ClientAddress", "SourceHostname",
                "WorkstationName", "DestinationIp", "DestAddress", "DestinationHostname",
                "DestinationPort", "DestPort", "Protocol", "LogonType"),
    "zeek.conn": ("id.orig_h", "id.resp_h", "id.resp_p", "proto"),
    "aws.cloudtrail": ("eventName", "eventSource", "userIdentity.arn",
                       "requestParameters.roleArn", "errorCode"),
}  # fmt: skip


def discover(events: Iterable[Event], *, source: str = SOURCE) -> Inventory:
    inventory = Inventory(source)
    repeats: set[tuple[Any, ...]] = set()
    for event in events:
        shows = _shows(event)
        if shows is None:
            continue
        names = SAME_AS.get(event.dataset or "")
        if names is not None:
            fields = event.fields
            signature = (event.dataset, *(str(fields.get(name)) for name in names))
            if signature in repeats:
                inventory.report.records_read += 1
                continue
            repeats.add(signature)
        ecs = event.ecs
        if shows.outcome is not None and ecs.get("event.outcome") != shows.outcome:
            continue
        if shows.when is not None:
            name, part = shows.when
            if part not in str(event.fields.get(name, "")):
                continue
        inventory.report.records_read += 1
        try:
            _show(inventory, event, shows)
        except (ValueError, TypeError) as exc:  # a hostile field: this event shows nothing
            inventory.report.reject(event.record, f"discovery: {exc}")
    return inventory


def _show(inventory: Inventory, event: Event, shows: Shows) -> None:
    """The nodes and relationships one event shows, into the inventory."""
    ecs = event.ecs
    seen = _time(event)
    roles = dict.fromkeys([*shows.nodes, *(r for _, a, b in shows.edges for r in (a, b))])
    ends = {role: ENDS[role](inventory, event, ecs, seen) for role in roles}
    if ecs.get("event.outcome") == "failure":  # an attempt refused shows no access
        return
    for kind, start, finish in shows.edges:
        a, b = ends[start], ends[finish]
        if a is not None and b is not None and a.id != b.id:
            inventory.edge(kind, a, b, **_edge_attrs(kind, event, ecs))


CODE_FIELD = {"windows": "EventID", "aws.cloudtrail": "eventName"}  # the native field keyed on
DATASETS = frozenset(dataset for dataset, _ in SHOWS)


def _shows(event: Event) -> Shows | None:
    """What the event shows, from its dataset and native code (its ECS view is made only
    for the events that show something)."""
    dataset = event.dataset or ""
    if dataset not in DATASETS:
        return None
    field = CODE_FIELD.get(dataset)
    code = event.fields.get(field) if field is not None else None
    shown = SHOWS.get((dataset, str(code))) if code is not None else None
    return shown if shown is not None else SHOWS.get((dataset, None))


def _time(event: Event) -> float | None:
    try:
        return event.time
    except (ValueError, TypeError):
        return None


def _edge_attrs(kind: str, event: Event, ecs: dict[str, Any]) -> dict[str, Any]:
    if kind == "flow":
        return {"port": ecs.get("destination.port"), "proto": ecs.get("network.transport")}
    if kind == "logon":
        kind_of = str(event.fields.get("LogonType", ""))  # a number, or its text in JSON
        return {"logon_type": int(kind_of) if LOGON_TYPE.fullmatch(kind_of) else None}
    if kind == "has_permission":
        return {"action": ecs.get("event.action"), "observed": True}
    return {}


# --- the ends of a relationship ----------------------------------------------------------


def _seen(node: Node, seen: float | None) -> Node:
    if seen is not None:
        first = node.attrs.get("first_event")
        node.attrs["first_event"] = seen if first is None else min(first, seen)
        node.attrs["last_event"] = max(node.attrs.get("last_event", seen), seen)
    return node


def _user(
    inventory: Inventory, event: Event, ecs: dict[str, Any], seen: float | None
) -> Node | None:
    name = str(ecs.get("user.name") or "").strip()
    domain = str(ecs.get("user.domain") or "").strip()
    for mark in ("/", "@"):  # a Kerberos principal (name/REALM), a UPN (name@domain)
        if mark in name:
            name, _, realm = name.partition(mark)
            domain = domain or realm
    if name.lower() in NOT_PEOPLE or name.endswith("$"):  # a machine account is a host
        return None
    if not domain and event.dataset in LOCAL_ACCOUNTS:  # root on one host is not on another
        domain = str(ecs.get("host.name") or "")
    # DOMAIN\name, the domain's first label: DMEVALS, dmevals.local and DMEVALS.LOCAL agree
    short = domain.split(".")[0]
    key = f"{short}\\{name}" if short and domain.lower() not in NOT_DOMAINS else name
    return _seen(inventory.node("user", key.lower(), name=key), seen)


def _host_named(inventory: Inventory, name: Any, address: Any, seen: float | None) -> Node | None:
    text = str(name or "").strip().rstrip(".").lower()
    ip = _address(address)
    if text and text != "-" and _address(text) is None:
        host = inventory.node("host", text)
        if ip is not None:
            inventory.edge("has_address", host, inventory.node("address", ip))
        return _seen(host, seen)
    if ip is None:
        return None
    host = inventory.node("host", ip, ip=ip)
    inventory.edge("has_address", host, inventory.node("address", ip))
    return _seen(host, seen)


def _address(value: Any) -> str | None:
    try:
        ip = ipaddress.ip_address(str(value).strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:10.23.23.9 is 10.23.23.9
    if ip.is_unspecified or ip.is_loopback or ip.is_multicast:
        return None
    if ip.version == 4 and str(ip).endswith(".255"):  # a broadcast, as far as can be told
        return None
    return str(ip)


def _host(
    inventory: Inventory, event: Event, ecs: dict[str, Any], seen: float | None
) -> Node | None:
    return _host_named(inventory, ecs.get("host.name"), ecs.get("host.ip"), seen)


def _source(
    inventory: Inventory, event: Event, ecs: dict[str, Any], seen: float | None
) -> Node | None:
    return _host_named(inventory, ecs.get("source.domain"), ecs.get("source.ip"), seen)


def _destination(
    inventory: Inventory, event: Event, ecs: dict[str, Any], seen: float | None
) -> Node | None:
    return _host_named(inventory, ecs.get("destination.domain"), ecs.get("destination.ip"), seen)


def _principal(
    inventory: Inventory, event: Event, ecs: dict[str, Any], seen: float | None
) -> Node | None:
    """The identity a CloudTrail call was made as: its IAM user or role (an assumed-role
    session is its role), keyed by ARN as the IAM importer keys them."""
    arn = str(event.fields.get("userIdentity.arn") or "")
    parts = arn.split(":", 5)
    if len(parts) < 6:
        return None
    account, resource = parts[4], parts[5]
    if resource.startswith("assumed-role/"):
        # the role's own ARN (with its path, e.g. aws-reserved/sso.amazonaws.com/) when the
        # record names the session's issuer
        issuer = str(event.fields.get("userIdentity.sessionContext.sessionIssuer.arn") or "")
        role = resource.split("/")[1]
        if not issuer.startswith("arn:aws:iam::"):
            issuer = f"arn:aws:iam::{account}:role/{role}"
        return _seen(inventory.node("role", issuer, name=role), seen)
    kind = "role" if resource.startswith("role/") else "user"
    return _seen(inventory.node(kind, arn, name=resource.rsplit("/", 1)[-1]), seen)


def _role(
    inventory: Inventory, event: Event, ecs: dict[str, Any], seen: float | None
) -> Node | None:
    arn = str(event.fields.get("requestParameters.roleArn") or "")
    if not arn.startswith("arn:"):
        return None
    return _seen(inventory.node("role", arn, name=arn.rsplit("/", 1)[-1]), seen)


def _service(
    inventory: Inventory, event: Event, ecs: dict[str, Any], seen: float | None
) -> Node | None:
    name = str(ecs.get("event.provider") or "")
    if not name:
        return None
    # `api:`, not `service:`: the API called is not the service principal a trust names
    return _seen(inventory.node("cloud_resource", f"api:{name}", name=name), seen)


ENDS = {
    "user": _user,
    "host": _host,
    "source": _source,
    "destination": _destination,
    "principal": _principal,
    "role": _role,
    "service": _service,
}

__all__ = ["SHOWS", "SOURCE", "discover"]
