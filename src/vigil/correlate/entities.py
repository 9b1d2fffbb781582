"""The entities an alert names (host, user, ip, process, file hash, cloud principal), from
the native fields of the event behind it: one table of field names per entity kind, across
the logs Vigil reads (Windows and Sysmon, auditd, Zeek, CloudTrail, Okta, ECS-style JSON)."""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any

from vigil.detect.detection import Detection
from vigil.events.records import Entity

FIELDS: dict[str, tuple[str, ...]] = {
    # not `host`: Zeek's http log (and others) name the HTTP Host header so
    "host": ("Computer", "Hostname", "host.name", "hostname", "ComputerName", "node"),
    "user": (
        "TargetUserName", "SubjectUserName", "User", "AccountName", "user.name", "username",
        "actor.alternateId", "userName", "userIdentity.userName", "acct", "auid",
    ),
    "ip": (
        "IpAddress", "SourceIp", "DestinationIp", "SourceAddress", "ClientAddress",
        "sourceIPAddress", "id.orig_h", "id.resp_h", "source.ip", "destination.ip",
        "client.ipAddress", "src_ip", "dest_ip", "addr",
    ),
    # a process is one instance: its GUID (Sysmon), else its image on its host (below)
    "process": ("ProcessGuid", "SourceProcessGUID", "process.entity_id", "Image", "NewProcessName",
                "process.executable", "exe"),
    "hash": ("Hashes", "sha256", "md5", "sha1", "file.hash.sha256", "file.hash.md5"),
    "principal": ("userIdentity.arn", "userIdentity.principalId", "actor.id"),
}  # fmt: skip

# Values that name nobody (machine accounts of the local system, placeholders).
_NOBODY = {
    "",
    "-",
    "system",
    "local service",
    "network service",
    "localsystem",
    "n/a",
    "unknown",
    "null",
    "nt authority\\system",
    "anonymous logon",
}
_SHARED_IPS = {"127.0.0.1", "::1", "0.0.0.0", "::"}  # noqa: S104 - a value to ignore, not a bind


def entities_of(fields: dict[str, Any], host: str | None = None) -> tuple[Entity, ...]:
    """The (kind, value) pairs of one event's fields, values lower-cased, each once."""
    found: list[Entity] = []
    if host:
        found.append(("host", _bounded(host.lower())))
    for kind, names in FIELDS.items():
        for name in names:
            value = fields.get(name)
            if value is None or isinstance(value, dict | list):
                continue
            if kind == "process":
                # the first name present says which process; an image only counts on its host
                text = str(value).strip().lower()
                if text and text not in _NOBODY:
                    scope = (
                        "" if "guid" in name.lower() or "entity_id" in name else f"@{host or ''}"
                    )
                    found.append(("process", text + scope.lower()))
                break
            if kind == "hash" and _system_image(fields):
                continue  # Windows' own binaries are on every host: their hashes link nothing
            for text in _values(kind, str(value)):
                entity = (kind, _bounded(text))
                if entity not in found:
                    found.append(entity)
    return tuple(found)


def _system_image(fields: dict[str, Any]) -> bool:
    image = str(fields.get("Image") or fields.get("NewProcessName") or "").lower()
    return image.startswith(("c:\\windows\\", "c:\\program files\\windows"))


MAX_VALUE = 200  # longer values (they come from the data) keep a prefix and a digest


def _bounded(value: str) -> str:
    if len(value) <= MAX_VALUE:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:16]
    return f"{value[: MAX_VALUE - 18]}…{digest}"


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
