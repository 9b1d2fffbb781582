"""The REST API (FastAPI): ingest, alerts, incidents and their cases, entity risk, hunts,
rules, indicators, tokens, health and Prometheus metrics. Every route but `/health` needs a
bearer token whose role holds the route's permission (see `vigil.api.auth`): 401 without a
valid token, 403 without the permission."""

# No `from __future__ import annotations` here: FastAPI reads the route signatures when they
# are defined, and their `Depends(require(...))` refer to closures of `create_app`.
import io
import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import anyio
import orjson
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    generate_latest,
)
from pydantic import BaseModel, Field

from vigil.api.auth import ROLES, Principal, TokenStore
from vigil.api.backend import Backend
from vigil.errors import (
    Conflict,
    InputError,
    NotFound,
    Overloaded,
    StorageFull,
    TooLarge,
    Unavailable,
    Unsupported,
    VigilError,
)
from vigil.ingest.body import BodyLimits, body_kind, read_body, split_records
from vigil.serve.metrics import PipelineMetrics

log = logging.getLogger("vigil.api")
T = TypeVar("T")
BIGINT = (1 << 63) - 1  # the largest integer the state database keeps
# Each kind of error is one HTTP status, here and nowhere else (most specific first).
STATUS: tuple[tuple[type[VigilError], int], ...] = (
    (StorageFull, 507),
    (Unavailable, 503),
    (TooLarge, 413),
    (Unsupported, 415),
    (NotFound, 404),
    (Conflict, 409),
    (InputError, 400),
    (VigilError, 400),
)


def status_of(exc: VigilError) -> int:
    return next(code for kind, code in STATUS if isinstance(exc, kind))


class Rejected(BaseModel):
    record: int | str | None  # the line (NDJSON) or element (JSON array), from 1
    reason: str


class IngestReply(BaseModel):
    accepted: int
    first_offset: int | None
    last_offset: int | None
    rejected: int = 0  # records set aside (kept with their reason), not stored
    problems: list[Rejected] = []  # the first of them


class SqlHunt(BaseModel):
    query: str = Field(max_length=100_000)
    limit: int = Field(10_000, ge=1, le=100_000)


class SigmaHunt(BaseModel):
    rule: str = Field(max_length=1_000_000)
    since: str | None = None


class SavedHunt(BaseModel):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    query: str | None = Field(None, max_length=100_000)
    sigma: str | None = Field(None, max_length=1_000_000)
    every_seconds: int = Field(3600, ge=10, le=366 * 86400)


class StatusChange(BaseModel):
    status: str
    note: str = Field("", max_length=10_000)


class Assignment(BaseModel):
    assignee: str = Field(min_length=1, max_length=256)


class Note(BaseModel):
    text: str = Field(min_length=1, max_length=100_000)


class NewTask(BaseModel):
    title: str = Field(min_length=1, max_length=1000)


class NewToken(BaseModel):
    role: str
    name: str = Field(min_length=1, max_length=128)


def _since(value: str | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise HTTPException(400, f"since: not a time: {value!r}") from None


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
    buckets: dict[str, tuple[float, float]] = {}
    bucket_lock = threading.Lock()
    limits = BodyLimits(max_body_bytes, max_records)
    # hunts run in threads of their own, never in the pool requests share with ingest; a
    # hunt past the places free is refused at once, not queued
    hunt_slots = anyio.CapacityLimiter(hunts_at_once)
    hunt_threads = anyio.CapacityLimiter(hunts_at_once)

    def bearer(request: Request) -> Principal | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return tokens.verify(token.strip()) if scheme.lower() == "bearer" else None

    def principal(request: Request) -> Principal:
        found = bearer(request)
        if found is None:
            raise HTTPException(
                401, "a valid API token is needed", headers={"WWW-Authenticate": "Bearer"}
            )
        return found

    def require(permission: str) -> Callable[..., Principal]:
        def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
            if not who.may(permission):
                raise HTTPException(403, f"the {who.role} role may not {permission}")
            return who

        return check

    def limited(who: Principal) -> None:
        if rate_per_token is None:
            return
        now = time.monotonic()
        with bucket_lock:
            level, last = buckets.get(who.id, (rate_per_token, now))
            level = min(rate_per_token, level + (now - last) * rate_per_token)
            if level < 1:
                wait = math.ceil((1 - level) / rate_per_token)
                buckets[who.id] = (level, now)
                raise HTTPException(429, "too many requests", headers={"Retry-After": str(wait)})
            buckets[who.id] = (level - 1, now)

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

    @app.get("/health", tags=["service"])
    def health(request: Request) -> dict[str, Any]:
        """Served to anyone: the status and the kinds of problem; with a valid token, the
        reasons and the figures too."""
        return backend.health(detail=bearer(request) is not None)

    @app.get("/metrics", tags=["service"])
    def metrics_text(_: Annotated[Principal, Depends(require("metrics:read"))]) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def body_of(request: Request, *, gzip: bool = False) -> bytearray:
        """The request body, refused with 413 past `max_body_bytes` (read as it streams;
        for gzip, counted inflated as well)."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body_bytes:
            raise TooLarge(f"body larger than {max_body_bytes:,} bytes")
        return await read_body(request.stream(), max_bytes=max_body_bytes, gzip=gzip)

    @app.post("/api/v1/ingest", status_code=202, response_model=IngestReply, tags=["events"])
    async def ingest(
        request: Request, who: Annotated[Principal, Depends(require("events:write"))]
    ) -> IngestReply:
        """Events as NDJSON (one JSON object per line; `application/x-ndjson`) or JSON (one
        object or an array; `application/json`), plain or `Content-Encoding: gzip`. A record
        nested too deeply is set aside with its reason (`rejected`, `problems`); the rest
        is stored. 202 once on disk; 413 past the size or count limits, 415 for another
        content type, 503 (backlog full, data folder not writable) and 507 (disk full) with
        Retry-After."""
        limited(who)
        backend.check_intake()  # before the body is read
        shape, gzip = body_kind(
            request.headers.get("content-type"), request.headers.get("content-encoding")
        )
        body = await body_of(request, gzip=gzip)
        split = await run_in_threadpool(split_records, body, shape, limits)
        del body
        source = f"http:{who.name}"
        if split.rejected:
            await run_in_threadpool(backend.set_aside, source, split.rejected)
        ack = await run_in_threadpool(backend.ingest, split.records, source=source)
        return IngestReply(
            accepted=ack.accepted,
            first_offset=ack.first_offset,
            last_offset=ack.last_offset,
            rejected=len(split.rejected),
            problems=[Rejected(record=p.record, reason=p.reason) for p, _ in split.rejected[:20]],
        )

    async def hunt(request: Request, run: Callable[[threading.Event], T]) -> T:
        """Run a hunt in a thread of its own, stopped as soon as its client goes away; 503
        at once when every hunt place is taken (the rest of the API is never kept waiting
        for a hunt)."""
        try:
            hunt_slots.acquire_nowait()
        except anyio.WouldBlock:
            raise Overloaded(f"{hunts_at_once} hunts are running; try again shortly", 2.0) from None
        try:
            return await _hunt(request, run)
        finally:
            hunt_slots.release()

    async def _hunt(request: Request, run: Callable[[threading.Event], T]) -> T:
        cancel = threading.Event()

        async def watch() -> None:
            while not cancel.is_set():
                if await request.is_disconnected():
                    cancel.set()
                    return
                await anyio.sleep(0.2)

        outcome: list[Any] = []

        async def work() -> None:
            try:
                outcome.append(await anyio.to_thread.run_sync(run, cancel, limiter=hunt_threads))
            except Exception as exc:  # raised below, outside the task group (no group wrap)
                outcome.append(exc)
            finally:
                cancel.set()

        async with anyio.create_task_group() as group:
            group.start_soon(watch)
            await work()
        if isinstance(outcome[0], Exception):
            raise outcome[0]
        return outcome[0]  # type: ignore[no-any-return]

    @app.get("/api/v1/alerts", tags=["alerts"])
    def alerts(
        _: Annotated[Principal, Depends(require("alerts:read"))],
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=BIGINT)] = 0,
        since: str | None = None,
        level: str | None = None,
        rule_id: str | None = None,
        kind: str | None = None,
    ) -> list[dict[str, Any]]:
        return backend.alerts(
            limit=limit,
            offset=offset,
            since=_since(since),
            level=level,
            rule_id=rule_id,
            kind=kind,
        )

    @app.post("/api/v1/alerts/import", status_code=201, tags=["alerts"])
    async def import_alerts(
        request: Request,
        _: Annotated[Principal, Depends(require("events:write"))],
        format: Annotated[str, Query(pattern="^(wazuh|suricata|ait|csv|json)$")],
        name: Annotated[str, Query(min_length=1, max_length=255)] = "upload",
        mapping: Annotated[list[str] | None, Query(alias="map")] = None,
    ) -> dict[str, Any]:
        """Alerts raised by another tool (Wazuh alerts.json, Suricata EVE, the AIT CSV, or
        CSV / JSON lines with `map=time=COLUMN&map=rule=COLUMN&map=host=COLUMN...`; the body
        is the file, gzip or not): stored as alerts and grouped into incidents."""
        body = await body_of(request)
        return await run_in_threadpool(backend.import_alerts, name, bytes(body), format, mapping)

    @app.get("/api/v1/alerts/{alert_id}", tags=["alerts"])
    def alert(
        alert_id: str, _: Annotated[Principal, Depends(require("alerts:read"))]
    ) -> dict[str, Any]:
        found = backend.alert(alert_id)
        if found is None:
            raise HTTPException(404, "no such alert")
        return found

    @app.post("/api/v1/hunts/sql", tags=["hunts"])
    async def hunt_sql(
        request: Request, body: SqlHunt, _: Annotated[Principal, Depends(require("hunts:run"))]
    ) -> dict[str, Any]:
        """One SELECT over the view `events`; stopped past the hunt time limit or when the
        client goes away; rows cut off at `limit` or the result byte limit (`truncated`)."""
        return await hunt(
            request, lambda cancel: backend.hunt_sql(body.query, limit=body.limit, cancel=cancel)
        )

    @app.post("/api/v1/hunts/sigma", tags=["hunts"])
    async def hunt_sigma(
        request: Request,
        body: SigmaHunt,
        _: Annotated[Principal, Depends(require("hunts:run"))],
    ) -> dict[str, Any]:
        """The stored events through one Sigma rule: its detections (`truncated` when cut
        off at the result byte limit)."""
        return await hunt(
            request, lambda cancel: backend.hunt_sigma(body.rule, since=body.since, cancel=cancel)
        )

    @app.get("/api/v1/hunts/saved", tags=["hunts"])
    def saved(_: Annotated[Principal, Depends(require("hunts:run"))]) -> list[dict[str, Any]]:
        return backend.saved_hunts()

    @app.post("/api/v1/hunts/saved", status_code=201, tags=["hunts"])
    def save(
        body: SavedHunt, _: Annotated[Principal, Depends(require("hunts:manage"))]
    ) -> dict[str, Any]:
        """Kept once its SQL or Sigma rule is known to run (400 naming what is wrong)."""
        return backend.save_hunt(
            body.name, query=body.query, sigma=body.sigma, every_seconds=body.every_seconds
        )

    @app.delete("/api/v1/hunts/saved/{name}", status_code=204, tags=["hunts"])
    def unsave(name: str, _: Annotated[Principal, Depends(require("hunts:manage"))]) -> Response:
        if not backend.delete_hunt(name):
            raise HTTPException(404, "no such saved hunt")
        return Response(status_code=204)

    @app.get("/api/v1/rules", tags=["rules"])
    def rules(_: Annotated[Principal, Depends(require("rules:read"))]) -> list[dict[str, Any]]:
        return backend.rules()

    @app.get("/api/v1/indicators", tags=["indicators"])
    def indicators(
        value: Annotated[str, Query(min_length=1, max_length=8192)],
        _: Annotated[Principal, Depends(require("indicators:read"))],
    ) -> list[dict[str, Any]]:
        return backend.indicators(value)

    @app.get("/api/v1/indicators/stats", tags=["indicators"])
    def indicator_stats(
        _: Annotated[Principal, Depends(require("indicators:read"))],
    ) -> dict[str, Any]:
        return orjson.loads(orjson.dumps(backend.intel_stats(), default=str))  # type: ignore[no-any-return]

    cases = backend.incident_store

    @app.get("/api/v1/incidents", tags=["incidents"])
    def incidents(
        _: Annotated[Principal, Depends(require("incidents:read"))],
        status: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        offset: Annotated[int, Query(ge=0, le=BIGINT)] = 0,
    ) -> list[dict[str, Any]]:
        return cases.ranked(status=status, limit=limit, offset=offset)

    @app.get("/api/v1/incidents/{incident_id}", tags=["incidents"])
    def incident(
        incident_id: str, _: Annotated[Principal, Depends(require("incidents:read"))]
    ) -> dict[str, Any]:
        found = cases.get(incident_id)
        found["alerts_detail"] = [a for a in map(backend.alert, found["alert_ids"][:200]) if a]
        return found

    @app.post("/api/v1/incidents/{incident_id}/status", tags=["cases"])
    def set_status(
        incident_id: str,
        body: StatusChange,
        who: Annotated[Principal, Depends(require("cases:write"))],
    ) -> dict[str, Any]:
        cases.set_status(incident_id, body.status, who.name, body.note)
        return {"id": incident_id, "status": body.status}

    @app.post("/api/v1/incidents/{incident_id}/assignee", tags=["cases"])
    def assign(
        incident_id: str,
        body: Assignment,
        who: Annotated[Principal, Depends(require("cases:write"))],
    ) -> dict[str, Any]:
        cases.assign(incident_id, body.assignee, who.name)
        return {"id": incident_id, "assignee": body.assignee}

    @app.post("/api/v1/incidents/{incident_id}/notes", status_code=201, tags=["cases"])
    def note(
        incident_id: str, body: Note, who: Annotated[Principal, Depends(require("cases:write"))]
    ) -> dict[str, Any]:
        return {"id": cases.note(incident_id, who.name, body.text)}

    @app.post("/api/v1/incidents/{incident_id}/tasks", status_code=201, tags=["cases"])
    def add_task(
        incident_id: str, body: NewTask, who: Annotated[Principal, Depends(require("cases:write"))]
    ) -> dict[str, Any]:
        return {"id": cases.add_task(incident_id, who.name, body.title)}

    @app.post("/api/v1/incidents/{incident_id}/tasks/{task_id}/done", tags=["cases"])
    def task_done(
        incident_id: str,
        task_id: Annotated[int, Path(ge=0, le=BIGINT)],
        who: Annotated[Principal, Depends(require("cases:write"))],
    ) -> dict[str, Any]:
        cases.complete_task(incident_id, task_id, who.name)
        return {"id": task_id, "done": True}

    @app.post("/api/v1/incidents/{incident_id}/evidence", status_code=201, tags=["cases"])
    async def add_evidence(
        incident_id: str,
        request: Request,
        who: Annotated[Principal, Depends(require("cases:write"))],
        name: Annotated[str, Query(min_length=1, max_length=255)],
    ) -> dict[str, Any]:
        """The request body is the file (any content type), kept under its SHA-256; its
        name is kept cleaned (no path, control or bidi characters)."""
        body = await body_of(request)
        stream = io.BytesIO(body)
        return await run_in_threadpool(cases.add_evidence, incident_id, who.name, name, stream)

    @app.get("/api/v1/evidence/{sha256}", tags=["cases"])
    def evidence(
        sha256: Annotated[str, Path(pattern="^[0-9a-f]{64}$")],
        _: Annotated[Principal, Depends(require("incidents:read"))],
    ) -> FileResponse:
        path = cases.evidence_path(sha256)
        return FileResponse(path, media_type="application/octet-stream", filename=sha256)

    @app.get("/api/v1/entities", tags=["incidents"])
    def entities(
        _: Annotated[Principal, Depends(require("incidents:read"))],
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> list[dict[str, Any]]:
        return backend.entities(limit=limit)

    @app.get("/api/v1/response-metrics", tags=["incidents"])
    def response_metrics(
        _: Annotated[Principal, Depends(require("incidents:read"))],
        days: Annotated[int, Query(ge=1, le=3650)] = 30,
    ) -> dict[str, Any]:
        return cases.response_metrics(days=days)

    @app.get("/api/v1/tokens", tags=["tokens"])
    def token_list(
        _: Annotated[Principal, Depends(require("tokens:manage"))],
    ) -> list[dict[str, Any]]:
        return [_info(t) for t in tokens.list()]

    @app.post("/api/v1/tokens", status_code=201, tags=["tokens"])
    def token_create(
        body: NewToken, _: Annotated[Principal, Depends(require("tokens:manage"))]
    ) -> dict[str, Any]:
        if body.role not in ROLES:
            raise HTTPException(400, f"role must be one of {', '.join(ROLES)}")
        token, info = tokens.create(body.role, body.name)
        return {"token": token, **_info(info)}

    @app.delete("/api/v1/tokens/{token_id}", status_code=204, tags=["tokens"])
    def token_revoke(
        token_id: str, _: Annotated[Principal, Depends(require("tokens:manage"))]
    ) -> Response:
        if not tokens.revoke(token_id):
            raise HTTPException(404, "no such token")
        return Response(status_code=204)

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


def _info(info: Any) -> dict[str, Any]:
    return {
        "id": info.id,
        "name": info.name,
        "role": info.role,
        "created": info.created,
        "last_used": info.last_used,
        "revoked": info.revoked,
    }
