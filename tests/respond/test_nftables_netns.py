"""The nftables connector for real, in network namespaces (root, `ip netns`, `nft`): a test
host (10.231.0.2) and a peer on one link, the peer holding a workstation address (.1) and a
management address (.3). Blocking .1 makes its connections to the host fail while .3's go
through; isolating the host with .3 allowed drops .1 and keeps .3; undo restores both. The
dry-run changes nothing."""

from __future__ import annotations

import pytest

from netlab import MANAGEMENT, WORKSTATION, connects
from vigil.respond.nftables import Nftables


def test_block_and_isolate_really_drop_traffic_and_undo_restores_it(lab) -> None:
    host, peer = lab
    firewall = Nftables(prefix=["ip", "netns", "exec", host])
    assert connects(peer, WORKSTATION) and connects(peer, MANAGEMENT)

    planned = Nftables(dry_run=True, prefix=["ip", "netns", "exec", host]).block(WORKSTATION)
    assert planned.dry_run and planned.commands and connects(peer, WORKSTATION)

    assert firewall.block(WORKSTATION, timeout_s=300).state["blocked"] == [WORKSTATION]
    assert not connects(peer, WORKSTATION)
    assert connects(peer, MANAGEMENT)
    assert firewall.unblock(WORKSTATION).state["blocked"] == []
    assert connects(peer, WORKSTATION)

    assert firewall.isolate([f"{MANAGEMENT}/32"]).state["isolated"] is True
    assert not connects(peer, WORKSTATION)  # the host is cut off…
    assert connects(peer, MANAGEMENT)  # …but its management path works
    assert firewall.release().state["isolated"] is False
    assert connects(peer, WORKSTATION) and connects(peer, MANAGEMENT)


def test_a_block_lapses_by_itself(lab) -> None:
    import time

    host, peer = lab
    firewall = Nftables(prefix=["ip", "netns", "exec", host])
    firewall.block(WORKSTATION, timeout_s=2)
    assert not connects(peer, WORKSTATION)
    time.sleep(3)
    assert firewall.state()["blocked"] == [] and connects(peer, WORKSTATION)


def test_bad_addresses_are_refused_before_anything_runs() -> None:
    from vigil.errors import InputError

    firewall = Nftables(dry_run=True)
    with pytest.raises(InputError, match="not an IP address or network: 'host; rm -rf /'"):
        firewall.block("host; rm -rf /")
    with pytest.raises(InputError):
        firewall.isolate(["10.0.0.0/8", "nope"])
    planned = firewall.isolate(["10.0.0.0/8", "2001:db8::/32"])
    elements = [c["add"]["element"] for c in planned.commands if "element" in c.get("add", {})]
    assert [e["name"] for e in elements] == ["allowed4", "allowed6"]
