"""A network lab for response tests (root, `ip netns`, `nft`): a test host (10.231.0.2) and a
peer on one link, the peer holding a workstation address (.1) and a management address
(.3), a TCP server on the host; `connects` says whether the peer reaches it from an address.
Skips, naming why, where namespaces are not permitted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

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
