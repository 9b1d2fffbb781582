"""Sightings out: what Vigil saw of its indicators, as a STIX 2.1 bundle of `sighting` objects.

Each (indicator, where, field) the store counted becomes one `sighting` with its first and
last time and count, `sighting_of_ref` the source's own STIX indicator when the indicator
came from STIX (so a TAXII or MISP server recognises it), else a STIX `indicator` made here
with a deterministic id, and `where_sighted_refs` an `identity` for the host or file. Ids are
UUIDv5, so exporting twice gives the same objects.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import stix2

from vigil.intel.store import IndicatorStore, StoredIndicator

# Vigil's own namespace for deterministic STIX ids.
NAMESPACE = uuid.UUID("6f1c3f0e-3d2a-5b7e-9a51-2b9c1c0d7e11")

PATTERN_PATHS: dict[str, str | None] = {
    "ipv4": "ipv4-addr:value",
    "ipv6": "ipv6-addr:value",
    "cidr": None,  # by address family, below
    "domain": "domain-name:value",
    "url": "url:value",
    "md5": "file:hashes.MD5",
    "sha1": "file:hashes.'SHA-1'",
    "sha256": "file:hashes.'SHA-256'",
    "sha512": "file:hashes.'SHA-512'",
    "email": "email-addr:value",
    "filename": "file:name",
    # ja3: STIX 2.1 has no object path for it, so no pattern (and no sighting export)
}


def _stamp(epoch: float | None) -> datetime:
    return datetime.fromtimestamp(epoch if epoch is not None else 0, tz=UTC)


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def pattern(kind: str, value: str) -> str:
    """The STIX pattern for an indicator (`[domain-name:value = 'evil.com']`)."""
    if kind == "cidr":
        path = "ipv6-addr:value" if ":" in value else "ipv4-addr:value"
        return f"[{path} = {_quoted(value)}]"
    if kind == "ip-port":
        address, _, port = value.rpartition(":")
        address = address.strip("[]")
        family = "ipv6-addr" if ":" in address else "ipv4-addr"
        return (
            f"[network-traffic:dst_ref.type = {_quoted(family)} AND "
            f"network-traffic:dst_ref.value = {_quoted(address)} AND "
            f"network-traffic:dst_port = {int(port)}]"
        )
    if kind == "url" and "://" not in value:
        value = "http://" + value
    found = PATTERN_PATHS.get(kind)
    if found is None:
        raise ValueError(f"no STIX pattern for indicator type {kind!r}")
    return f"[{found} = {_quoted(value)}]"


def _id(kind: str, *parts: Any) -> str:
    return f"{kind}--{uuid.uuid5(NAMESPACE, '|'.join(str(p) for p in parts))}"


def export_bundle(store: IndicatorStore) -> dict[str, Any]:
    """Every recorded sighting as one STIX 2.1 bundle (a dict ready for JSON)."""
    rows = store.sightings()
    indicators = store.get([row["key"] for row in rows])
    vigil = stix2.Identity(
        id=_id("identity", "vigil"),
        name="Vigil",
        identity_class="system",
        created=_stamp(0),
        modified=_stamp(0),
    )
    objects: dict[str, Any] = {vigil.id: vigil}
    for row in rows:
        indicator = indicators.get(row["key"])
        if indicator is None:
            continue
        target = _indicator_ref(indicator, vigil.id, objects)
        if target is None:
            continue
        place = stix2.Identity(
            id=_id("identity", "where", row["where"]),
            name=row["where"],
            identity_class="system",
            created_by_ref=vigil.id,
            created=_stamp(0),
            modified=_stamp(0),
        )
        objects.setdefault(place.id, place)
        first, last = _stamp(row["first_seen"]), _stamp(row["last_seen"])
        sighting = stix2.Sighting(
            id=_id("sighting", indicator.key, row["where"], row["field"]),
            created_by_ref=vigil.id,
            created=_stamp(row["recorded"]),
            modified=_stamp(row["recorded"]),
            sighting_of_ref=target,
            where_sighted_refs=[place.id],
            first_seen=first,
            last_seen=max(first, last),
            count=row["count"],
            description=f"{indicator.type} {indicator.value} seen in {row['field']}",
        )
        objects[sighting.id] = sighting
    bundle = stix2.Bundle(objects=list(objects.values()), allow_custom=False)
    parsed: dict[str, Any] = json.loads(bundle.serialize())
    return parsed


def _indicator_ref(indicator: StoredIndicator, creator: str, objects: dict[str, Any]) -> str | None:
    """The STIX indicator a sighting is of: a source's own when it has one, else one made
    here (once per indicator)."""
    for say in indicator.sources:
        if say.reference.startswith("indicator--"):
            return say.reference
    try:
        text = pattern(indicator.type, indicator.value)
    except ValueError:
        return None
    made = stix2.Indicator(
        id=_id("indicator", indicator.key),
        created_by_ref=creator,
        created=_stamp(indicator.created),
        modified=_stamp(indicator.created),
        name=f"{indicator.type} {indicator.value}",
        pattern=text,
        pattern_type="stix",
        valid_from=_stamp(indicator.created),
        labels=list(indicator.tags[:16]) or None,
    )
    objects.setdefault(made.id, made)
    return str(made.id)
