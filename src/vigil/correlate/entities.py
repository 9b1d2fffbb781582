"""The entities an alert names (host, user, ip, process, file hash, cloud principal), from
the native fields of the event behind it: one table of field names per entity kind, across
the logs Vigil reads (Windows and Sysmon, auditd, Zeek, CloudTrail, Okta, ECS-style JSON)."""

from __future__ import annotations

import ipaddress
from typing import Any

from vigil.correlate.model import Entity
from vigil.detect.detection import Detection

FIELDS: dict[str, tuple[str, ...]] = {
    "host": ("Computer", "Hostname", "host.name", "hostname", "ComputerName", "host", "node"),
    "user": (
        "TargetUserName", "SubjectUserName", "User", "AccountName", "user.name", "username",
        "actor.alternateId", "userName", "acct", "auid",
    ),
    "ip": (
        "IpAddress", "SourceIp", "DestinationIp", "SourceAddress", "ClientAddress",
        "sourceIPAddress", "id.orig_h", "id.resp_h", "source.ip", "destination.ip",
        "client.ipAddress", "src_ip", "dest_ip", "addr",
    ),
    "process": ("Image", "NewProcessName", "ParentImage", "process.executable", "exe"),
    "hash": ("Hashes", "sha256", "md5", "sha1", "file.hash.sha256", "file.hash.md5"),
    "principal": ("userIdentity.arn", "userIdentity.principalId", "actor.id"),
}  # fmt: skip

# Values that name nobody (machine accounts of the local system, placeholders).
_NOBODY = {"", "-", "system", "local service", "network service", "n/a", "unknown", "null"}
_SHARED_IPS = {"127.0.0.1", "::1", "0.0.0.0", "::"}  # noqa: S104 - a value to ignore, not a bind


def entities_of(fields: dict[str, Any], host: str | None = None) -> tuple[Entity, ...]:
    """The (kind, value) pairs of one event's fields, values lower-cased, each once."""
    found: list[Entity] = []
    if host:
        found.append(("host", host.lower()))
    for kind, names in FIELDS.items():
        for name in names:
            value = fields.get(name)
            if value is None or isinstance(value, dict | list):
                continue
            for text in _values(kind, str(value)):
                entity = (kind, text)
                if entity not in found:
                    found.append(entity)
    return tuple(found)


def detection_entities(detection: Detection) -> tuple[Entity, ...]:
    return entities_of(detection.event, detection.host)


def _values(kind: str, text: str) -> list[str]:
    value = text.strip().lower()
    if value in _NOBODY:
        return []
    if kind == "ip":
        try:
            address = ipaddress.ip_address(value.split("%")[0].removeprefix("::ffff:"))
        except ValueError:
            return []
        return [] if str(address) in _SHARED_IPS else [str(address)]
    if kind == "hash":
        # Sysmon's `SHA1=..,MD5=..,SHA256=..`: each digest is the file's
        digests = [part.partition("=")[2] or part for part in value.split(",")]
        return [d for d in digests if len(d) in (32, 40, 64) and d.isalnum()]
    if kind == "user" and value.endswith("$"):
        return []  # a machine account: the host says it
    if kind == "user" and "\\" in value:
        value = value.rpartition("\\")[2]
    return [value]
