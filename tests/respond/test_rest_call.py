"""The generic REST connector against a real HTTP server on loopback (the standard library's,
in a thread, recording what it receives): credentials and the idempotency key arrive, the
answer is checked against the expected status and JSON values (a mismatch or a 500 is
`ok=False`, not an exception), a path that would leave the base URL is refused before
anything is sent, secrets never show in the commands or the output, and dry-run sends
nothing."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from servers import in_thread
from vigil.errors import InputError, Unavailable
from vigil.respond.rest import RestCall, resolve

TOKEN = "edr-bearer-token-0123456789"
PASSWORD = "s3cret-basic-pass"
HOST = {"id": "h-42", "state": "contained", "isolated": True, "since": 1.0,
        "tags": ["lab", "a/b"], "odd~key": {"x/y": 7}}  # fmt: skip


class Recorder(ThreadingHTTPServer):
    """Answers a few EDR-like paths and keeps every request it gets."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[dict[str, Any]] = []


class Handler(BaseHTTPRequestHandler):
    server: Recorder

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.seen.append({"method": self.command, "path": self.path,
                                 "headers": dict(self.headers.items()), "body": body})  # fmt: skip
        path = self.path.split("?")[0]
        status, payload, kind = 404, b'{"error": "no such path"}', "application/json"
        if path == "/api/v2/hosts/h-42/contain" and self.command == "POST":
            status, payload = 202, json.dumps(HOST).encode()
        elif path == "/api/v2/hosts/h-42":
            status, payload = 200, json.dumps(HOST).encode()
        elif path == "/api/v2/echo":  # a debug endpoint that gives the request's headers back
            status, payload = 200, json.dumps(dict(self.headers.items())).encode()
        elif path == "/api/v2/boom":
            status, payload = 500, b'{"error": "internal"}'
        elif path == "/api/v2/big":
            status, payload, kind = 200, b"x" * 10_000, "text/plain"
        elif path == "/api/v2/plain":
            status, payload, kind = 200, b"contained", "text/plain"
        elif path == "/api/v2/moved":
            self.send_response(302)
            self.send_header("Location", "http://198.51.100.7/steal")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        elif path == "/api/v2/hosts/h-42/tags" and self.command == "DELETE":
            status, payload = 204, b""
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer


@pytest.fixture
def server() -> Iterator[Recorder]:
    with in_thread(Recorder()) as running:
        yield running


def base(server: Recorder) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/api/v2"


def test_credentials_and_idempotency_key_arrive_and_the_answer_is_checked(server) -> None:
    edr = RestCall(base_url=base(server), auth={"bearer": TOKEN}, headers={"X-Tenant": "corp"})
    done = edr.request("POST", "hosts/h-42/contain", json={"reason": "INC-7"},
                       expect={"/state": "contained", "/isolated": True, "/tags/1": "a/b",
                               "/odd~0key/x~1y": 7, "/since": 1},
                       idempotency_key="INC-7-contain")  # fmt: skip
    assert done.ok and not done.dry_run, done.output
    assert done.output.startswith("202 Accepted") and '"contained"' in done.output
    assert done.state == {"status": 202, "checked": {"/state": "contained", "/isolated": True,
                          "/tags/1": "a/b", "/odd~0key/x~1y": 7, "/since": 1.0}}  # fmt: skip
    [got] = server.seen
    assert got["method"] == "POST" and got["path"] == "/api/v2/hosts/h-42/contain"
    assert got["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert got["headers"]["Idempotency-Key"] == "INC-7-contain"
    assert got["headers"]["X-Tenant"] == "corp"
    assert json.loads(got["body"]) == {"reason": "INC-7"}
    [command] = done.commands
    assert command["headers"]["Authorization"] == "***" and TOKEN not in str(done)
    assert command["url"] == f"{base(server)}/hosts/h-42/contain"


def test_params_go_in_the_query_and_204_is_fine(server) -> None:
    edr = RestCall(base_url=base(server) + "/")
    assert edr.request("GET", "/hosts/h-42", params={"fields": "state"}).ok
    assert edr.request("DELETE", "hosts/h-42/tags").ok
    assert [s["path"] for s in server.seen] == ["/api/v2/hosts/h-42?fields=state",
                                                "/api/v2/hosts/h-42/tags"]  # fmt: skip


def test_basic_and_header_auth_arrive_and_echoed_secrets_are_blanked(server) -> None:
    basic = RestCall(base_url=base(server), auth={"basic": ["vigil", PASSWORD]})
    echoed = basic.request("GET", "echo")
    sent = server.seen[-1]["headers"]["Authorization"]
    assert base64.b64decode(sent.removeprefix("Basic ")).decode() == f"vigil:{PASSWORD}"
    encoded = sent.removeprefix("Basic ")
    assert echoed.ok and "***" in echoed.output
    assert encoded not in str(echoed) and PASSWORD not in str(echoed)

    keyed = RestCall(base_url=base(server), auth={"header": ["X-Api-Key", TOKEN]})
    echoed = keyed.request("GET", "echo")
    assert server.seen[-1]["headers"]["X-Api-Key"] == TOKEN
    assert echoed.commands[0]["headers"] == {"X-Api-Key": "***"}
    assert TOKEN not in str(echoed)

    planned = RestCall(base_url=base(server), headers={"Cookie": "session=abc123"},
                       auth={"header": ["X-Custom-Auth", TOKEN]}, dry_run=True)  # fmt: skip
    shown = planned.request("GET", "echo").commands[0]["headers"]
    assert shown == {"Cookie": "***", "X-Custom-Auth": "***"}
    assert TOKEN not in repr(planned)


def test_a_mismatch_or_an_unexpected_status_is_not_ok(server) -> None:
    edr = RestCall(base_url=base(server))
    wrong = edr.request("GET", "hosts/h-42", expect={"/state": "isolated", "/nope": 1})
    assert not wrong.ok
    assert "/state: expected 'isolated', got 'contained'" in wrong.output
    assert "/nope: expected 1, missing" in wrong.output
    # JSON equality: true is not 1, "1" is not 1
    assert not edr.request("GET", "hosts/h-42", expect={"/isolated": 1}).ok
    assert not edr.request("GET", "hosts/h-42", expect={"/tags/01": "a/b"}).ok
    assert edr.request("GET", "hosts/h-42", expect={"": HOST}).ok

    boom = edr.request("POST", "boom")
    assert not boom.ok and boom.state == {"status": 500}
    assert boom.output.startswith("expected status 200/201/202/204, got 500 Internal Server Error")
    assert '"internal"' in boom.output
    assert edr.request("POST", "boom", expect_status=(500,)).ok

    plain = edr.request("GET", "plain", expect={"/state": "contained"})
    assert not plain.ok and "not JSON" in plain.output
    missing = edr.request("GET", "hosts/h-99")
    assert not missing.ok and "got 404" in missing.output


def test_redirects_are_not_followed(server) -> None:
    moved = RestCall(base_url=base(server), auth={"bearer": TOKEN}).request("GET", "moved")
    assert not moved.ok and "got 302" in moved.output
    assert len(server.seen) == 1  # the credentials went nowhere else


def test_the_output_is_bounded(server) -> None:
    big = RestCall(base_url=base(server)).request("GET", "big")
    assert big.ok and len(big.output) < 4096 + 100 and "10000 bytes, cut" in big.output


@pytest.mark.parametrize(
    "path",
    [
        "http://198.51.100.7/api/v2/hosts",
        "//198.51.100.7/api/v2/hosts",
        "https:198.51.100.7",
        "../admin",
        "hosts/../../admin",
        "%2e%2e/admin",
        "hosts/%2E%2E/%2e%2e/admin",
        "hosts%2f..%2f..%2fadmin",
        "\\\\198.51.100.7\\x",
        "hosts/h-42#frag",
        "hosts/h 42",
        "hosts/h-42\r\nX-Evil: 1",
    ],
)
def test_a_path_that_leaves_the_base_url_is_refused(server, path: str) -> None:
    edr = RestCall(base_url=base(server), auth={"bearer": TOKEN})
    with pytest.raises(InputError):
        edr.request("GET", path)
    assert server.seen == []


def test_bad_requests_are_refused_before_anything_is_sent(server) -> None:
    edr = RestCall(base_url=base(server))
    with pytest.raises(InputError, match="not a method"):
        edr.request("TRACE", "hosts")
    with pytest.raises(InputError, match="JSON pointer"):
        edr.request("GET", "hosts", expect={"state": "x"})
    with pytest.raises(InputError, match="idempotency key"):
        edr.request("POST", "hosts", idempotency_key="k\r\nX-Evil: 1")
    for auth in ({"bearer": "a\nb"}, {"digest": "x"}, {"bearer": "t", "basic": ["u", "p"]},
                 {"basic": ["only-user"]}, {"header": ["Bad Name", "v"]}):  # fmt: skip
        with pytest.raises(InputError):
            RestCall(base_url=base(server), auth=auth)
    with pytest.raises(InputError):
        RestCall(base_url="ftp://127.0.0.1/")
    assert server.seen == []


def test_an_unreachable_server_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(Unavailable, match=r"cannot reach 127\.0\.0\.1"):
        RestCall(base_url=f"http://127.0.0.1:{port}", auth={"bearer": TOKEN},
                 timeout_s=2).request("GET", "hosts")  # fmt: skip


def test_dry_run_sends_nothing(server) -> None:
    edr = RestCall(base_url=base(server), auth={"bearer": TOKEN}, dry_run=True)
    planned = edr.request("POST", "hosts/h-42/contain", json={"reason": "INC-7"},
                          idempotency_key="INC-7-contain")  # fmt: skip
    assert planned.ok and planned.dry_run
    assert planned.commands == [{"method": "POST", "url": f"{base(server)}/hosts/h-42/contain",
                                 "headers": {"Authorization": "***",
                                             "Idempotency-Key": "INC-7-contain"},
                                 "json": {"reason": "INC-7"}}]  # fmt: skip
    assert server.seen == []


def test_json_pointers_follow_rfc_6901() -> None:
    document = {"foo": ["bar", "baz"], "": 0, "a/b": 1, "m~n": 8, " ": 7}
    assert resolve(document, "") == document
    assert resolve(document, "/foo") == ["bar", "baz"]
    assert resolve(document, "/foo/0") == "bar"
    assert resolve(document, "/") == 0
    assert resolve(document, "/a~1b") == 1
    assert resolve(document, "/m~0n") == 8
    assert resolve(document, "/ ") == 7
    for absent in ("/foo/2", "/foo/-", "/foo/00", "/nope", "/foo/0/x"):
        with pytest.raises(LookupError):
            resolve(document, absent)
