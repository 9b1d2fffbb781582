"""What the asset inventory tells the decision point: each host's posture (managed, and
disk encryption, EDR and patch age where an import recorded them) and each asset's tags and
segment, so policies on `device` and on resource `tags`/`segments` decide from it. Loaded at
start and again every minute; only a change is passed on (and re-decides the sessions of
that host)."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from vigil.assets.store import AssetStore
from vigil.zerotrust.pdp import Knowledge

POSTURE = ("disk_encrypted", "edr", "patch_age_days")
_APPLYING = threading.Lock()  # one reader-and-writer of the inventory's nodes at a time
PAGE = 10_000
MOST = 1_000_000  # assets read at most


def posture_of(node: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """A host's posture: managed (in an inventory, not only seen in telemetry), and what an
    import recorded of disk encryption, EDR and patching; a host's patch age is counted from
    when it was last patched (`last_patched`, epoch s) when the import says so."""
    attrs = node.get("attrs") or {}
    out: dict[str, Any] = {"managed": bool(node.get("managed"))}
    out.update({k: attrs[k] for k in POSTURE if k in attrs})
    patched = attrs.get("last_patched")
    if isinstance(patched, int | float) and not isinstance(patched, bool):
        elapsed = (time.time() if now is None else now) - patched
        out["patch_age_days"] = max(0, int(elapsed // 86400))
    return out


def compliant(posture: dict[str, Any] | None) -> bool:
    """Managed, and neither without EDR nor unencrypted where the inventory says so."""
    if not posture or not posture.get("managed"):
        return False
    return posture.get("edr") is not False and posture.get("disk_encrypted") is not False


def load(
    knowledge: Knowledge,
    store: AssetStore,
    compliance: Callable[[str, bool, bool], object] | None = None,
) -> int:
    """Bring the knowledge up to date with the inventory; how many entries changed.
    `compliance(host, was, now)` is told when a known host's compliance changes."""
    changed = 0
    with _APPLYING:  # a page read, then applied, with no newer node applied in between
        for offset in range(0, MOST, PAGE):
            nodes = store.nodes(limit=PAGE, offset=offset)
            for node in nodes:
                changed += apply(knowledge, node, compliance)
            if len(nodes) < PAGE:
                break
    return changed


def refresh(
    knowledge: Knowledge,
    ids: Iterable[str],
    node_of: Callable[[str], dict[str, Any] | None],
    compliance: Callable[[str, bool, bool], object] | None = None,
) -> int:
    """These nodes, read from the inventory now, into the knowledge; how many entries
    changed. Serialised with `load`, so the minute's reload never puts back an older node."""
    changed = 0
    with _APPLYING:
        for node_id in ids:
            node = node_of(node_id)
            if node is not None:
                changed += apply(knowledge, node, compliance)
    return changed


def apply(
    knowledge: Knowledge,
    node: dict[str, Any],
    compliance: Callable[[str, bool, bool], object] | None = None,
) -> int:
    """One inventory node into the knowledge (a host's posture; an asset's tags and
    segment); how many entries changed (0 to 2)."""
    changed = 0
    name = str(node.get("name") or node["id"].split(":", 1)[-1]).lower()
    attrs = node.get("attrs") or {}
    if node.get("kind") == "host":
        posture = posture_of(node)
        before = knowledge.devices.get(name)
        if before != posture:
            knowledge.set_device(name, posture)
            changed += 1
            if (
                compliance is not None
                and before is not None
                and compliant(before) != compliant(posture)
            ):
                compliance(name, compliant(before), compliant(posture))
    tags = frozenset(str(t) for t in attrs.get("tags") or ())
    segment = attrs.get("segment")
    if tags or segment:
        kept = (tags, str(segment) if segment else None)
        if knowledge.resources.get(name) != kept:
            knowledge.set_resource(name, tags, kept[1])
            changed += 1
    return changed


def tagged_addresses(store: AssetStore) -> dict[str, list[str]]:
    """Each tag of the inventory's hosts → the hosts' addresses (their `ip` and every address
    they have), so a segment may be given by tag (`tags: [pci]`)."""
    addresses: dict[str, list[str]] = {}
    for edge in store.edges(["has_address"]):
        kind, _, address = str(edge["dst"]).partition(":")
        if kind == "address" and _is_ip(address):  # not a scanner's MAC address
            addresses.setdefault(edge["src"], []).append(address)
    out: dict[str, dict[str, None]] = {}
    for offset in range(0, MOST, PAGE):
        hosts = store.nodes(kind="host", limit=PAGE, offset=offset)
        for host in hosts:
            attrs = host.get("attrs") or {}
            own = [str(attrs["ip"])] if _is_ip(attrs.get("ip")) else []
            for tag in attrs.get("tags") or ():
                held = out.setdefault(str(tag), {})
                held.update(dict.fromkeys([*own, *addresses.get(host["id"], [])]))
        if len(hosts) < PAGE:
            break
    return {tag: list(held) for tag, held in out.items()}


def _is_ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return value is not None


__all__ = ["apply", "compliant", "load", "posture_of", "refresh", "tagged_addresses"]
