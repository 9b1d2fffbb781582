"""The firewall connector on nftables: block an address (a named set with a timeout, so a
block lapses by itself) and isolate a host (everything dropped but loopback and a
management allow-list), each with its undo (unblock, release). Commands go to `nft -j -f -`
as JSON (libnftables' JSON schema), never through a shell; in dry-run they are only
returned.

    firewall = Nftables()                          # the local ruleset (root)
    firewall.block("203.0.113.9", timeout_s=3600)  # ActionResult(ok=True, commands=[…])
    firewall.isolate(["10.0.0.0/24"])              # management still reaches the host
    firewall.release()
    firewall.unblock("203.0.113.9")

Everything lives in one table (`inet vigil`): sets `blocked4`/`blocked6` (with timeouts),
`allowed4`/`allowed6` (the management allow-list), and base chains `input`, `output`,
`forward` at priority -10 that drop what is blocked and, while isolated, jump to `isolate`.
The table is Vigil's alone: making it again is harmless, and removing it undoes everything.
On a gateway the `forward` chain does the same for the hosts behind it.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

import orjson

from vigil.errors import InputError, Unavailable
from vigil.respond.result import ActionResult

TABLE = "vigil"
FAMILY = "inet"
HOOKS = ("input", "output", "forward")
TIMEOUT_S = 30.0  # an nft command that takes longer has failed


class NftablesError(Unavailable):
    """nft refused a command or could not run."""


def _address(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise InputError(f"not an IP address or network: {text!r}") from None


def _element(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Any:
    if network.num_addresses == 1:
        return str(network.network_address)
    return {"prefix": {"addr": str(network.network_address), "len": network.prefixlen}}


class Nftables:
    """`prefix`: what runs nft (e.g. `["ip", "netns", "exec", "lab"]` for a namespace)."""

    def __init__(self, *, dry_run: bool = False, prefix: Sequence[str] = ()) -> None:
        self.dry_run = dry_run
        self.prefix = list(prefix)
        self.nft = shutil.which("nft") or "/usr/sbin/nft"

    # --- actions and their undo --------------------------------------------------------------

    def block(self, address: str, *, timeout_s: int = 3600) -> ActionResult:
        """Drop traffic from and to `address` (or a network) for `timeout_s` seconds."""
        network = _address(address)
        element: dict[str, Any] = {"elem": {"val": _element(network), "timeout": int(timeout_s)}}
        isolated = False if self.dry_run else bool(self.state()["isolated"])
        return self._run(
            [
                *self._base(),
                *self._hooks(isolated=isolated),
                {"add": {"element": self._set(self._blocked(network), [element])}},
            ]
        )

    def unblock(self, address: str) -> ActionResult:
        network = _address(address)
        name = self._blocked(network)
        if not self.dry_run and not self._holds(name, network):
            return ActionResult(True, False, [], "not blocked")
        return self._run([{"delete": {"element": self._set(name, [_element(network)])}}])

    def isolate(self, allow: Sequence[str]) -> ActionResult:
        """Drop everything but loopback and the management allow-list (`allow`: addresses or
        networks that still reach the host, and that it still reaches)."""
        networks = [_address(a) for a in allow]
        commands = [*self._base(), {"flush": {"chain": self._chain("isolate")}}]
        for version in (4, 6):
            name = f"allowed{version}"
            commands.append({"flush": {"set": self._set(name)}})
            elements = [_element(n) for n in networks if n.version == version]
            if elements:
                commands.append({"add": {"element": self._set(name, elements)}})
        for rule in self._isolation_rules():
            commands.append({"add": {"rule": self._rule("isolate", rule)}})
        return self._run([*commands, *self._hooks(isolated=True)])

    def release(self) -> ActionResult:
        """Undo `isolate`: the base chains no longer jump to the isolation chain."""
        commands = [*self._base(), *self._hooks(isolated=False)]
        commands.append({"flush": {"chain": self._chain("isolate")}})
        return self._run(commands)

    def state(self) -> dict[str, Any]:
        """What the table holds now: blocked addresses, and whether the host is isolated."""
        listed = self._nft(["-j", "list", "table", FAMILY, TABLE], check=False)
        if listed.returncode != 0:
            return {"blocked": [], "isolated": False}
        items = orjson.loads(listed.stdout).get("nftables", [])
        blocked: list[str] = []
        isolated = False
        for item in items:
            found = item.get("set")
            if found and found["name"].startswith("blocked"):
                for element in found.get("elem", []):
                    value = element.get("elem", {}).get("val", element)
                    if isinstance(value, dict) and "prefix" in value:
                        value = f"{value['prefix']['addr']}/{value['prefix']['len']}"
                    blocked.append(str(value))
            rule = item.get("rule")
            if rule and rule.get("chain") in HOOKS:
                isolated = isolated or any("jump" in e for e in rule.get("expr", []))
        return {"blocked": sorted(blocked), "isolated": isolated}

    # --- the commands ----------------------------------------------------------------------

    def _base(self) -> list[dict[str, Any]]:
        """The table, sets and chains, made if missing (`add` leaves what exists)."""
        commands: list[dict[str, Any]] = [{"add": {"table": {"family": FAMILY, "name": TABLE}}}]
        for version in (4, 6):
            kind = f"ipv{version}_addr"
            commands.append({"add": {"set": {**self._set(f"blocked{version}"), "type": kind,
                                             "flags": ["interval", "timeout"]}}})  # fmt: skip
            commands.append({"add": {"set": {**self._set(f"allowed{version}"), "type": kind,
                                             "flags": ["interval"]}}})  # fmt: skip
        for hook in HOOKS:
            chain = {**self._chain(hook), "type": "filter", "hook": hook, "prio": -10}
            commands.append({"add": {"chain": {**chain, "policy": "accept"}}})
        commands.append({"add": {"chain": self._chain("isolate")}})
        return commands

    def _base_rules(self, hook: str, *, isolated: bool) -> list[dict[str, Any]]:
        rules: list[list[dict[str, Any]]] = []
        for version in (4, 6):
            family = f"ip{'' if version == 4 else '6'}"
            for end in ("saddr", "daddr"):
                left = {"payload": {"protocol": family, "field": end}}
                blocked = {"match": {"op": "==", "left": left, "right": f"@blocked{version}"}}
                rules.append([blocked, {"drop": None}])
        if isolated:
            rules.append([{"jump": {"target": "isolate"}}])
        return [{"add": {"rule": self._rule(hook, expr)}} for expr in rules]

    @staticmethod
    def _isolation_rules() -> list[list[dict[str, Any]]]:
        """Loopback and established management traffic pass, the allow-list both ways,
        everything else is dropped."""
        rules: list[list[dict[str, Any]]] = []
        for meta in ("iifname", "oifname"):
            rules.append([{"match": {"op": "==", "left": {"meta": {"key": meta}},
                                     "right": "lo"}}, {"accept": None}])  # fmt: skip
        for version in (4, 6):
            family = f"ip{'' if version == 4 else '6'}"
            for end in ("saddr", "daddr"):
                left = {"payload": {"protocol": family, "field": end}}
                allowed = {"match": {"op": "==", "left": left, "right": f"@allowed{version}"}}
                rules.append([allowed, {"accept": None}])
        rules.append([{"drop": None}])
        return rules

    @staticmethod
    def _blocked(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
        return f"blocked{network.version}"

    @staticmethod
    def _set(name: str, elements: list[Any] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"family": FAMILY, "table": TABLE, "name": name}
        if elements is not None:
            out["elem"] = elements
        return out

    @staticmethod
    def _chain(name: str) -> dict[str, Any]:
        return {"family": FAMILY, "table": TABLE, "name": name}

    @staticmethod
    def _rule(chain: str, expr: list[dict[str, Any]]) -> dict[str, Any]:
        return {"family": FAMILY, "table": TABLE, "chain": chain, "expr": expr}

    def _hooks(self, *, isolated: bool) -> list[dict[str, Any]]:
        """The base chains' rules written afresh: drop what is blocked; while isolated,
        jump to the isolation chain."""
        commands: list[dict[str, Any]] = []
        for hook in HOOKS:
            commands.append({"flush": {"chain": self._chain(hook)}})
            commands.extend(self._base_rules(hook, isolated=isolated))
        return commands

    def _holds(self, name: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
        wanted = str(network.network_address) if network.num_addresses == 1 else str(network)
        return wanted in self.state()["blocked"] if name.startswith("blocked") else False

    def _run(self, commands: list[dict[str, Any]]) -> ActionResult:
        if self.dry_run:
            return ActionResult(True, True, commands, "dry run: nothing applied")
        done = self._nft(["-j", "-f", "-"], body=orjson.dumps({"nftables": commands}))
        return ActionResult(True, False, commands, done.stdout.decode("utf-8", "replace"),
                            self.state())  # fmt: skip

    def _nft(self, args: list[str], *, body: bytes | None = None,
             check: bool = True) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
        try:
            done = subprocess.run(
                [*self.prefix, self.nft, *args], input=body, capture_output=True,
                timeout=TIMEOUT_S, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NftablesError(f"nft could not run: {exc}") from None
        if check and done.returncode != 0:
            reason = done.stderr.decode("utf-8", "replace").strip()[:500]
            raise NftablesError(f"nft refused the change: {reason}")
        return done


__all__ = ["ActionResult", "Nftables", "NftablesError"]
