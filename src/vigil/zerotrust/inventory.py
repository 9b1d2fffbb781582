"""What the asset inventory tells the decision point: each host's posture (managed, and
disk encryption, EDR and patch age where an import recorded them) and each asset's tags and
segment, so policies on `device` and on resource `tags`/`segments` decide from it. Loaded at
start and again every minute; only a change is passed on (and re-decides the sessions of
that host)."""

from __future__ import annotations

from typing import Any

from vigil.assets.store import AssetStore
from vigil.zerotrust.pdp import Knowledge

POSTURE = ("disk_encrypted", "edr", "patch_age_days")
PAGE = 10_000
MOST = 1_000_000  # assets read at most


def posture_of(node: dict[str, Any]) -> dict[str, Any]:
    attrs = node.get("attrs") or {}
    out: dict[str, Any] = {"managed": bool(node.get("managed"))}
    out.update({k: attrs[k] for k in POSTURE if k in attrs})
    return out


def load(knowledge: Knowledge, store: AssetStore) -> int:
    """Bring the knowledge up to date with the inventory; how many entries changed."""
    changed = 0
    for offset in range(0, MOST, PAGE):
        nodes = store.nodes(limit=PAGE, offset=offset)
        for node in nodes:
            name = str(node.get("name") or node["id"].split(":", 1)[-1]).lower()
            attrs = node.get("attrs") or {}
            if node.get("kind") == "host":
                posture = posture_of(node)
                if knowledge.devices.get(name) != posture:
                    knowledge.set_device(name, posture)
                    changed += 1
            tags = frozenset(str(t) for t in attrs.get("tags") or ())
            segment = attrs.get("segment")
            if tags or segment:
                kept = (tags, str(segment) if segment else None)
                if knowledge.resources.get(name) != kept:
                    knowledge.set_resource(name, tags, kept[1])
                    changed += 1
        if len(nodes) < PAGE:
            break
    return changed


__all__ = ["load", "posture_of"]
