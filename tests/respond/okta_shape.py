"""A stand-in for Okta's Management API (Okta itself cannot be reached from the tests): the
few user endpoints the identity-provider connector calls, with Okta's status rules, its SSWS
token check and its error body, served by uvicorn on a free loopback port in a thread.

    okta = OktaShape(token="t0k3n")
    okta.add_user("00u1", "alice@corp.example", sessions=["s1", "s2"])
    with okta.serve() as url:   # http://127.0.0.1:PORT
        ...
    okta.users["00u1"].status, okta.users["00u1"].sessions, okta.requests
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class User:
    id: str
    login: str
    status: str = "ACTIVE"
    sessions: list[str] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "created": "2024-01-01T00:00:00.000Z",
            "statusChanged": None,
            "profile": {"login": self.login, "email": self.login},
            "_links": {"self": {"href": f"/api/v1/users/{self.id}"}},
        }


def error(status: int, code: str, summary: str, causes: Sequence[str] = ()) -> JSONResponse:
    """Okta's error body."""
    return JSONResponse(
        {
            "errorCode": code,
            "errorSummary": summary,
            "errorLink": code,
            "errorId": f"oae{uuid.uuid4().hex[:20]}",
            "errorCauses": [{"errorSummary": c} for c in causes],
        },
        status_code=status,
    )


class OktaShape:
    def __init__(self, token: str) -> None:
        self.token = token
        self.users: dict[str, User] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request seen
        self.url = ""  # while served
        self.app = Starlette(
            routes=[
                Route("/api/v1/users/{user}", self.get_user, methods=["GET"]),
                Route("/api/v1/users/{user}/lifecycle/{op}", self.lifecycle, methods=["POST"]),
                Route("/api/v1/users/{user}/sessions", self.clear_sessions, methods=["DELETE"]),
            ]
        )

    def add_user(self, id: str, login: str, *, status: str = "ACTIVE",
                 sessions: list[str] | None = None) -> User:  # fmt: skip
        self.users[id] = User(id, login, status, list(sessions or []))
        return self.users[id]

    # --- the endpoints -----------------------------------------------------------------------

    def _check(self, request: Request) -> User | Response:
        """The user the request names, or Okta's answer when the token or the user is wrong."""
        self.requests.append((request.method, request.url.path))
        if request.headers.get("authorization") != f"SSWS {self.token}":
            return error(401, "E0000011", "Invalid token provided")
        wanted = request.path_params["user"]
        for user in self.users.values():
            if wanted in (user.id, user.login):
                return user
        return error(404, "E0000007", f"Not found: Resource not found: {wanted} (User)")

    async def get_user(self, request: Request) -> Response:
        user = self._check(request)
        if isinstance(user, Response):
            return user
        return JSONResponse(user.body())

    async def lifecycle(self, request: Request) -> Response:
        user = self._check(request)
        if isinstance(user, Response):
            return user
        operation = request.path_params["op"]
        if operation == "suspend":
            if user.status != "ACTIVE":
                return error(400, "E0000001", "Api validation failed: suspend",
                             ["Cannot suspend a user that is not active"])  # fmt: skip
            user.status = "SUSPENDED"
        elif operation == "unsuspend":
            if user.status != "SUSPENDED":
                return error(400, "E0000001", "Api validation failed: unsuspend",
                             ["Cannot unsuspend a user that is not suspended"])  # fmt: skip
            user.status = "ACTIVE"
        else:
            return error(404, "E0000022", "The endpoint does not support the provided HTTP "
                         "method")  # fmt: skip
        return JSONResponse({})

    async def clear_sessions(self, request: Request) -> Response:
        user = self._check(request)
        if isinstance(user, Response):
            return user
        user.sessions.clear()
        return Response(status_code=204)

    # --- the server --------------------------------------------------------------------------

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Runs the stand-in on a free loopback port while the block lasts; gives its URL."""
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="off"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the Okta stand-in did not start")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{port}"
        try:
            yield self.url
        finally:
            server.should_exit = True
            thread.join(10)
            sock.close()
