"""The entities a Vigil alert names, read from the native fields of the event behind it (one
table of field names per entity kind): what alerts carry until their entities come from the
event's ECS view (`vigil.events.entities.entities_of`), whose value rules it shares."""

from __future__ import annotations

from typing import Any

from vigil.detect.detection import Detection
from vigil.events.entities import MAX_VALUE, NOBODY, bounded, entity_values, system_binary
from vigil.events.records import Entity

__all__ = ["FIELDS", "MAX_VALUE", "detection_entities", "entities_of"]

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


def entities_of(fields: dict[str, Any], host: str | None = None) -> tuple[Entity, ...]:
    """The (kind, value) pairs of one event's native fields, values lower-cased, each once."""
    found: list[Entity] = []
    image = fields.get("Image") or fields.get("NewProcessName")
    if host:
        found.append(("host", bounded(host.lower())))
    for kind, names in FIELDS.items():
        for name in names:
            value = fields.get(name)
            if value is None or isinstance(value, dict | list):
                continue
            if kind == "process":
                # the first name present says which process; an image only counts on its host
                text = str(value).strip().lower()
                if text and text not in NOBODY:
                    scope = (
                        "" if "guid" in name.lower() or "entity_id" in name else f"@{host or ''}"
                    )
                    found.append(("process", text + scope.lower()))
                break
            if kind == "hash" and system_binary(image):
                continue  # Windows' own binaries are on every host: their hashes link nothing
            for text in entity_values(kind, value):
                entity = (kind, text)
                if entity not in found:
                    found.append(entity)
    return tuple(found)


def detection_entities(detection: Detection) -> tuple[Entity, ...]:
    return entities_of(detection.event, detection.host)
