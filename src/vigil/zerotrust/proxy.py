"""The enforcement point: an identity-aware HTTP reverse proxy (`vigil zt proxy`) that asks
Vigil's decision point on every request before passing it to the application behind it.

It sits behind the front that authenticates people (oauth2-proxy, a load balancer with
OIDC), which sets `X-Forwarded-User`, `X-Forwarded-Groups`, `X-Forwarded-Mfa` and the
device's name in `X-Device-Id`; it trusts those headers from that front only. The first
allowed request opens a session (cookie `vigil_zt`); each next request is decided again in
that session, a decision being reused for at most `cache_s` (1 s) and forgotten at once when
Vigil revokes the session: the proxy is a Shared Signals push receiver (`POST /_vigil/ssf`),
and a signed CAEP session-revoked token for one of its sessions ends it here too.

    app = EnforcementPoint(upstream="http://127.0.0.1:8080", vigil="http://127.0.0.1:8400",
                           token="vgl_…", resource="intranet").app()
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vigil.zerotrust.ssf import SESSION_REVOKED

COOKIE = "vigil_zt"
READS = frozenset({"GET", "HEAD", "OPTIONS"})
HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
IDENTITY = ("x-forwarded-user", "x-forwarded-groups", "x-forwarded-mfa", "x-device-id")


class EnforcementPoint:
    def __init__(
        self,
        *,
        upstream: str,
        vigil: str,
        token: str,
        resource: str,
        audience: str = "",
        cache_s: float = 1.0,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.resource = resource
        self.audience = audience
        self.cache_s = cache_s
        self.vigil = httpx.AsyncClient(
            base_url=vigil.rstrip("/"), timeout=5.0, headers={"Authorization": f"Bearer {token}"}
        )
        self.forward = httpx.AsyncClient(
            base_url=self.upstream, timeout=30.0, follow_redirects=False
        )
        self._keys: KeySet | None = None
        self._cache: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self._revoked: set[str] = set()
        self._lock = threading.Lock()
        self.refused = 0
        self.passed = 0
        self.signals = 0

    def app(self) -> Starlette:
        @contextlib.asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            yield
            await self.vigil.aclose()
            await self.forward.aclose()

        methods = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"]
        return Starlette(
            routes=[
                Route("/_vigil/ssf", self.receive, methods=["POST"]),
                Route("/{path:path}", self.handle, methods=methods),
            ],
            lifespan=lifespan,
        )

    # --- Shared Signals: Vigil tells what it revoked ---------------------------------------

    async def keys(self) -> KeySet:
        if self._keys is None:
            answer = await self.vigil.get("/api/v1/ssf/jwks")
            answer.raise_for_status()
            self._keys = KeySet.import_key_set(answer.json())
        return self._keys

    async def receive(self, request: Request) -> Response:
        """RFC 8935 push: a Security Event Token, verified with Vigil's keys; 202 when taken."""
        body = (await request.body()).decode("ascii", "replace")
        try:
            token = jwt.decode(body, await self.keys())
        except (JoseError, ValueError) as exc:
            return JSONResponse({"err": "invalid_request", "description": str(exc)[:200]}, 400)
        claims = token.claims
        if token.header.get("typ") != "secevent+jwt" or (
            self.audience and claims.get("aud") != self.audience
        ):
            return JSONResponse({"err": "invalid_audience"}, 400)
        if SESSION_REVOKED in (claims.get("events") or {}):
            session = str((claims.get("sub_id") or {}).get("id", ""))
            with self._lock:
                self._revoked.add(session)
                self._cache = {k: v for k, v in self._cache.items() if k[0] != session}
        self.signals += 1
        return Response(status_code=202)

    # --- every request ---------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        headers = request.headers
        user = headers.get("x-forwarded-user", "").strip()
        if not user:
            self.refused += 1
            return JSONResponse({"outcome": "deny", "reasons": ["no authenticated user"]}, 401)
        action = "read" if request.method in READS else "write"
        session = request.cookies.get(COOKIE, "")
        if session in self._revoked:
            self.refused += 1
            return JSONResponse({"outcome": "deny", "reasons": ["the session was revoked"]}, 403)
        decision = await self.decide(user, action, session, headers)
        if decision.get("outcome") != "allow":
            self.refused += 1
            status = 401 if decision.get("outcome") == "step_up" else 403
            return JSONResponse(
                {k: decision.get(k) for k in ("outcome", "reasons", "obligations")}, status
            )
        response = await self.pass_on(request)
        if decision.get("session"):
            response.set_cookie(
                COOKIE,
                decision["session"],
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
        self.passed += 1
        return response

    async def decide(
        self, user: str, action: str, session: str, headers: Mapping[str, str]
    ) -> dict[str, Any]:
        key = (session or f"user:{user}", action)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < self.cache_s:
            return cached[1]
        asked: dict[str, Any] = {
            "subject": user,
            "action": action,
            "resource": self.resource,
            "groups": [
                g.strip() for g in headers.get("x-forwarded-groups", "").split(",") if g.strip()
            ][:256],
            "mfa": headers.get("x-forwarded-mfa", "").lower() == "true",
            "device": headers.get("x-device-id") or None,
        }
        if session:
            asked["session"] = session
        else:
            asked["open_session"] = True
        try:
            answer = await self.vigil.post("/api/v1/access/decision", json=asked)
            decision: dict[str, Any] = (
                answer.json()
                if answer.status_code == 200
                else {
                    "outcome": "deny",
                    "reasons": [f"the decision point answered {answer.status_code}"],
                }
            )
        except httpx.HTTPError as exc:  # no decision point: no access (fail closed)
            decision = {"outcome": "deny", "reasons": [f"no decision point: {type(exc).__name__}"]}
        if decision.get("outcome") == "allow":
            with self._lock:
                self._cache[(decision.get("session") or session or f"user:{user}", action)] = (
                    now,
                    decision,
                )
        return decision

    async def pass_on(self, request: Request) -> Response:
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in HOP and k.lower() not in IDENTITY
        }
        upstream = await self.forward.request(
            request.method,
            request.url.path,
            params=request.query_params,
            content=await request.body(),
            headers=headers,
        )
        kept = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP}
        return Response(upstream.content, upstream.status_code, kept)


__all__ = ["COOKIE", "EnforcementPoint"]
