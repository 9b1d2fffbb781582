"""Guardrails, checked by the engine before every action whatever the playbook says: an
address of our own (loopback, internal ranges, the never-block list) is never blocked; a
protected asset (a crown jewel, a domain controller, a host named protected) is never acted
on without approval, nor one whose blast radius in the access graph is over the limit; and
past its rate per action type, a step waits for approval instead of acting.

    guard = Guardrails(settings.respond.guardrails, assets, graph)
    guard.check(ACTIONS["firewall.block"], {"address": "10.1.2.3"}, recent=count)
    # Verdict("refuse", "10.1.2.3 is in the never-block list (10.0.0.0/8)")
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from limits import parse

from vigil.assets.graph import AccessGraph
from vigil.assets.store import AssetStore
from vigil.config import GuardrailSettings
from vigil.respond.actions import ActionSpec

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: Literal["allow", "approve", "refuse"]
    reason: str = ""


ALLOW = Verdict("allow")


class Guardrails:
    def __init__(
        self,
        settings: GuardrailSettings,
        assets: AssetStore | None = None,
        graph: Callable[[], AccessGraph | None] | None = None,
    ) -> None:
        self.settings = settings
        self.assets = assets
        self.graph = graph
        self.never: list[Network] = [
            ipaddress.ip_network(n, strict=False) for n in settings.never_block
        ]
        self.protected = {h.lower() for h in settings.protected_hosts}
        self.tags = set(settings.protected_tags)
        storm = parse(settings.runs)
        self.runs = (storm.amount, float(storm.get_expiry()))  # of one playbook, then held
        # action → (how many, in how many seconds)
        self.rates: dict[str, tuple[int, float]] = {}
        for action, text in settings.rates.items():
            item = parse(text)
            self.rates[action] = (item.amount, float(item.get_expiry()))

    def check(
        self, spec: ActionSpec, inputs: Mapping[str, Any], *, recent: Callable[[str, float], int]
    ) -> Verdict:
        """Refuse, hold for approval, or allow `spec` with these inputs; `recent(action,
        seconds)` counts the actions of that type begun in the last `seconds`."""
        target = str(inputs.get(spec.target, "") if spec.target else "").strip().lower()
        if spec.target_kind == "ip" and target:
            refused = self._never_blocked(target)
            if refused:
                return Verdict("refuse", refused)
        if target and spec.target_kind in ("host", "user", "ip"):
            held = self._protected(spec.target_kind, target)
            if held:
                return Verdict("approve", held)
        rate = self.rates.get(spec.name)
        if rate is not None:
            amount, seconds = rate
            if recent(spec.name, seconds) >= amount:
                return Verdict(
                    "approve",
                    f"rate limit of {spec.name} reached ({amount} per {seconds:g} s): held "
                    "for approval",
                )
        return ALLOW

    def _never_blocked(self, target: str) -> str:
        try:
            network = ipaddress.ip_network(target, strict=False)
        except ValueError:
            return f"{target!r} is not an IP address or network"
        if (network.num_addresses > 256 and network.version == 4) or (
            network.prefixlen < 64 and network.version == 6
        ):
            return f"{target} is wider than a /24 (or an IPv6 /64): too wide to block"
        for own in self.never:
            if own.version == network.version and (
                network.subnet_of(own) or own.subnet_of(network)  # type: ignore[arg-type]
            ):
                return f"{target} is in the never-block list ({own})"
        return ""

    def _protected(self, kind: str, target: str) -> str:
        if kind == "host" and target in self.protected:
            return f"host {target} is protected (guardrails protected_hosts)"
        if self.assets is None:
            return ""
        entity = f"{kind}:{target}"
        context = self.assets.context([entity]).get(entity)
        if context is None:
            return ""
        if context.get("crown_jewel") is True:
            return f"{kind} {target} is a crown jewel: approval first"
        tags = set(context.get("tags") or ())
        if tags & self.tags:
            return (
                f"{kind} {target} is tagged {', '.join(sorted(tags & self.tags))}: approval first"
            )
        graph = self.graph() if self.graph is not None else None
        if graph is not None and self.settings.max_blast_radius:
            reach = len(graph.blast_radius(str(context["asset"])))
            if reach > self.settings.max_blast_radius:
                return (
                    f"{kind} {target} reaches {reach} assets in the access graph (over "
                    f"{self.settings.max_blast_radius}): approval first"
                )
        return ""


__all__ = ["ALLOW", "Guardrails", "Verdict"]
