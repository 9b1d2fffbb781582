"""The nftables connector for real, in network namespaces (root, `ip netns`, `nft`): a test
host (10.231.0.2) and a peer on one link, the peer holding a workstation address (.1) and a
management address (.3). Blocking .1 makes its connections to the host fail while .3's go
through; isolating the host with .3 allowed drops .1 and keeps .3; undo restores both. The
dry-run changes nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

from vigil.respond.nftables import Nftables

HOST, WORKSTATION, MANAGEMENT, PORT = "10.231.0.2", "10.231.0.1", "10.231.0.3", 8022
SERVER = (
    "import socket\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    f"s.bind(('0.0.0.0', {PORT})); s.listen(16); print('up', flush=True)\n"
    "while True:\n    c, _ = s.accept(); c.sendall(b'hi'); c.close()\n"
)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def lab():
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nft") is None:
        pytest.skip("network namespaces need root, iproute2 and nftables (make test installs)")
    tag = uuid.uuid4().hex[:6]
    host, peer = f"vh{tag}", f"vp{tag}"
    try:
        _ip("netns", "add", host)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"network namespaces are not permitted here: {exc.stderr.decode().strip()}")
    server = None
    try:
        _ip("netns", "add", peer)
        _ip("link", "add", f"a{tag}", "netns", host, "type", "veth", "peer", "name", f"b{tag}",
            "netns", peer)  # fmt: skip
        _ip("-n", host, "addr", "add", f"{HOST}/24", "dev", f"a{tag}")
        _ip("-n", peer, "addr", "add", f"{WORKSTATION}/24", "dev", f"b{tag}")
        _ip("-n", peer, "addr", "add", f"{MANAGEMENT}/24", "dev", f"b{tag}")
        for ns, dev in ((host, f"a{tag}"), (peer, f"b{tag}")):
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        server = subprocess.Popen(["ip", "netns", "exec", host, sys.executable, "-c", SERVER],
                                  stdout=subprocess.PIPE)  # fmt: skip
        assert server.stdout is not None and server.stdout.readline().strip() == b"up"
        yield host, peer
    finally:
        if server is not None:
            server.kill()
            server.wait()
        for ns in (host, peer):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def connects(peer: str, source: str) -> bool:
    """Whether a TCP connection from `source` (an address of the peer) reaches the host."""
    probe = (
        "import socket, sys\n"
        "try:\n"
        f"    c = socket.create_connection(('{HOST}', {PORT}), timeout=1.0, "
        f"source_address=('{source}', 0))\n"
        "    sys.exit(0 if c.recv(2) == b'hi' else 1)\n"
        "except OSError:\n    sys.exit(1)\n"
    )
    done = subprocess.run(["ip", "netns", "exec", peer, sys.executable, "-c", probe],
                          capture_output=True, timeout=20)  # fmt: skip
    return done.returncode == 0


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
