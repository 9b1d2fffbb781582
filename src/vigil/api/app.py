"""The REST API (FastAPI): the app, the one mapping of error kinds to HTTP status, auth and
request counting; the routes are in one module per domain (`ops`, `ingest`, `alerts`, `hunts`,
`intel`, `incidents`, `tokens`), each a router built from a `Context`. Every route but
`/health` needs a bearer token whose role holds the route's permission (see
`vigil.api.auth`): 401 without a valid token, 403 without the permission."""

# No `from __future__ import annotations` here: FastAPI reads `check`'s signature when it is
# defined, and its `Depends(principal)` refers to a closure of `create_app`.
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter

from vigil.api import (
    access,
    alerts,
    assets,
    exercises,
    hunts,
    incidents,
    ingest,
    intel,
    ops,
    respond,
)
from vigil.api import tokens as token_routes  # `tokens` is create_app's TokenStore
from vigil.api.auth import PREFIX, Principal, TokenStore
from vigil.api.backend import Backend
from vigil.api.context import Context
from vigil.api.hunting import Hunts
from vigil.api.rate import RateLimit
from vigil.errors import (
    Conflict,
    Forbidden,
    InputError,
    NotFound,
    StorageFull,
    TooLarge,
    Unavailable,
    Unsupported,
    VigilError,
)
from vigil.ingest.body import BodyLimits
from vigil.serve.metrics import PipelineMetrics

log = logging.getLogger("vigil.api")
# Each kind of error is one HTTP status, here and nowhere else (most specific first).
STATUS: tuple[tuple[type[VigilError], int], ...] = (
    (StorageFull, 507),
    (Unavailable, 503),
    (TooLarge, 413),
    (Unsupported, 415),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (InputError, 400),
    (VigilError, 400),
)
# The routers, one module per domain (routes of a router keep their order in the app).
# matched in this order: the decision route first, as enforcement points ask it on every request
DOMAINS = (
    access,
    ops,
    ingest,
    alerts,
    hunts,
    intel,
    incidents,
    assets,
    exercises,
    respond,
    token_routes,
)


def status_of(exc: VigilError) -> int:
    return next(code for kind, code in STATUS if isinstance(exc, kind))


def create_app(
    backend: Backend,
    tokens: TokenStore,
    registry: CollectorRegistry,
    *,
    max_body_bytes: int = 32 << 20,
    max_records: int = 100_000,
    rate_per_token: float | None = None,
    metrics: PipelineMetrics | None = None,
    docs: bool = True,
    hunts_at_once: int = 2,
) -> FastAPI:
    app = FastAPI(
        title="Vigil",
        version="0.1",
        description="Proactive threat defense: ingest, alerts, hunting, intelligence.",
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )

    def bearer(request: Request) -> Principal | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return tokens.verify(token.strip()) if scheme.lower() == "bearer" else None

    async def principal(request: Request) -> Principal:
        """The caller: a token found valid within the second is taken at once (no thread, no
        query); any other is looked up in a worker thread, off the event loop."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        found = tokens.known(token)
        if found is None and token.startswith(PREFIX):  # anything else: refused at once
            found = await run_in_threadpool(tokens.verify, token)
        if found is None:
            raise HTTPException(
                401, "a valid API token is needed", headers={"WWW-Authenticate": "Bearer"}
            )
        return found

    def require(permission: str) -> Callable[..., Awaitable[Principal]]:
        async def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
            if not who.may(permission):
                raise HTTPException(403, f"the {who.role} role may not {permission}")
            return who

        return check

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": exc.status_code, "detail": exc.detail},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(VigilError)
    async def vigil_error(_: Request, exc: VigilError) -> JSONResponse:
        code = status_of(exc)
        headers = None
        if isinstance(exc, Unavailable):
            headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
        return JSONResponse({"error": code, "detail": str(exc)}, status_code=code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"where": [str(p) for p in e.get("loc", ())], "problem": e.get("msg", "")}
            for e in exc.errors()
        ]
        return JSONResponse({"error": 422, "detail": problems}, status_code=422)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse(
            {"error": 500, "detail": "internal error (logged by the server)"}, status_code=500
        )

    context = Context(
        backend=backend,
        tokens=tokens,
        registry=registry,
        limits=BodyLimits(max_body_bytes, max_records),
        rate=RateLimit(rate_per_token),
        hunts=Hunts(hunts_at_once),
        require=require,
        bearer=bearer,
    )
    app.state.context = context  # what the console's pages are built from too
    for domain in DOMAINS:
        app.include_router(domain.router(context))
    if metrics is not None:
        app.add_middleware(CountRequests, counter=metrics.http_requests)
    return app


class CountRequests:
    """Counts requests by route and status. Plain ASGI: a request's own `receive` reaches
    the route, so a route can tell when its client went away (hunts stop then)."""

    def __init__(self, app: Any, counter: Counter) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "other")
            self.counter.labels(route=route, status=status).inc()
