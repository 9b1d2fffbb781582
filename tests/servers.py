"""Real servers on free loopback ports, for the tests (fixtures in conftest.py) and the
benches (`bench/distributed.py`): nats-server with JetStream and PostgreSQL, from the Debian
packages `make test` installs."""

from __future__ import annotations

import os
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class MissingServer(RuntimeError):
    """The server's program is not installed."""


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout: float = 20.0) -> None:
    import socket
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


class NatsServer:
    """A real nats-server with JetStream, its store in a folder of its own; `restart` keeps
    the port and the store (what a crash and a restart of the server do)."""

    def __init__(self, folder: Path) -> None:
        import shutil

        binary = shutil.which("nats-server")
        if binary is None:
            raise MissingServer("nats-server is not installed (make test installs it)")
        self.binary = binary
        self.folder = folder
        self.port = _free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: Any = None
        self.start()

    def start(self) -> None:
        import subprocess

        self.process = subprocess.Popen(
            [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port),
             "-sd", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_port(self.port)

    def stop(self, *, kill: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            self.process.wait(20)
        self.process = None

    def restart(self, *, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.start()


class PostgresServer:
    """A real PostgreSQL server in a folder of its own (initdb, trust on loopback), run as
    the `postgres` user when the tests run as root (PostgreSQL refuses root); `database()`
    makes a fresh database and gives its SQLAlchemy URL."""

    def __init__(self) -> None:
        import glob
        import shutil
        import subprocess
        import tempfile

        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise MissingServer("PostgreSQL is not installed (make test installs it)")
        self.bin = Path(found[-1]).parent
        self.folder = Path(tempfile.mkdtemp(prefix="vigil-pg-", dir="/tmp"))
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.port = _free_port()
        self.count = 0
        subprocess.run(
            [*self.prefix, str(self.bin / "initdb"), "-D", str(self.folder / "data"),
             "-A", "trust", "-U", "vigil", "-E", "UTF8", "--locale=C"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.process = subprocess.Popen(
            [*self.prefix, str(self.bin / "postgres"), "-D", str(self.folder / "data"),
             "-p", str(self.port), "-k", str(self.folder), "-c", "listen_addresses=127.0.0.1",
             "-c", "fsync=off", "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_port(self.port, 60)

    def database(self) -> str:
        import psycopg

        self.count += 1
        name = f"vigil_test_{os.getpid()}_{self.count}"
        admin = f"host=127.0.0.1 port={self.port} user=vigil dbname=postgres"
        for _ in range(50):  # the server may still be starting up
            try:
                with psycopg.connect(admin, autocommit=True) as db:
                    db.execute(f'CREATE DATABASE "{name}"')
                break
            except psycopg.OperationalError:
                import time

                time.sleep(0.1)
        return f"postgresql+psycopg://vigil@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        import shutil

        self.process.terminate()
        self.process.wait(30)
        shutil.rmtree(self.folder, ignore_errors=True)


class SlapdServer:
    """A real OpenLDAP slapd with the password-policy overlay, its configuration and
    database in a folder of its own, on a free loopback port; `admin` binds as the root DN."""

    SUFFIX = "dc=vigil,dc=test"
    ADMIN = f"cn=admin,{SUFFIX}"
    PASSWORD = "vigil-test-admin"
    POLICY = f"cn=default,{SUFFIX}"  # the password policy entry (made by the tests' data)

    def __init__(self, folder: Path) -> None:
        import shutil
        import subprocess

        binary = shutil.which("slapd") or ("/usr/sbin/slapd" if Path("/usr/sbin/slapd").exists()
                                           else None)  # fmt: skip
        if binary is None:
            raise MissingServer("slapd is not installed (make test installs it)")
        self.folder = folder
        (folder / "db").mkdir(parents=True, exist_ok=True)
        hashed = subprocess.run(["slappasswd", "-s", self.PASSWORD], capture_output=True,
                                check=True, text=True).stdout.strip()  # fmt: skip
        schema = Path("/etc/ldap/schema")
        config = [f"include {schema / name}.schema"
                  for name in ("core", "cosine", "inetorgperson", "nis")]  # fmt: skip
        config += [
            "modulepath /usr/lib/ldap", "moduleload back_mdb", "moduleload ppolicy",
            f"pidfile {folder / 'slapd.pid'}", "database mdb", f'suffix "{self.SUFFIX}"',
            f'rootdn "{self.ADMIN}"', f"rootpw {hashed}", f"directory {folder / 'db'}",
            "overlay ppolicy", f'ppolicy_default "{self.POLICY}"', "ppolicy_use_lockout",
        ]  # fmt: skip
        (folder / "slapd.conf").write_text("\n".join(config) + "\n")
        self.port = _free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        owner = ["-u", "root", "-g", "root"] if os.geteuid() == 0 else []
        subprocess.run(
            [binary, "-f", str(folder / "slapd.conf"), "-h", self.url + "/", *owner],
            check=True,
            capture_output=True,
        )  # fmt: skip (slapd detaches itself)
        _wait_port(self.port)

    def stop(self) -> None:
        import signal

        pid = self.folder / "slapd.pid"
        if pid.exists():
            os.kill(int(pid.read_text().strip()), signal.SIGTERM)


@contextmanager
def in_thread(server: socketserver.BaseServer) -> Iterator[Any]:
    """A `socketserver` server (http.server's too) serving in a thread, then shut down."""
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class Inbox(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """A real HTTP endpoint on a free loopback port that takes what is POSTed to it (a
    Shared Signals push receiver: answers 202, or 503 while `up` is false) and serves `page`
    on GET (an application behind a proxy). `got`: (content type, body) of each POST."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, page: bytes = b"") -> None:
        from http.server import BaseHTTPRequestHandler

        self.got: list[tuple[str, str]] = []
        self.up = True
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                if not inbox.up:
                    self.send_response(503)
                    self.end_headers()
                    return
                inbox.got.append((self.headers.get("Content-Type", ""), body))
                self.send_response(202)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def tokens(self) -> list[str]:
        return [body for _, body in self.got]
