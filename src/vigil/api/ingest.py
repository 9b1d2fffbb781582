"""Routes that bring data in: events (`/api/v1/ingest`) and other tools' alerts
(`/api/v1/alerts/import`)."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from vigil.api.auth import Principal
from vigil.api.context import Context
from vigil.ingest.body import body_kind, split_records


class Rejected(BaseModel):
    record: int | str | None  # the line (NDJSON) or element (JSON array), from 1
    reason: str


class IngestReply(BaseModel):
    accepted: int
    first_offset: int | None
    last_offset: int | None
    rejected: int = 0  # records set aside (kept with their reason), not stored
    problems: list[Rejected] = []  # the first of them


def router(context: Context) -> APIRouter:
    backend, require = context.backend, context.require
    routes = APIRouter()

    @routes.post("/api/v1/ingest", status_code=202, response_model=IngestReply, tags=["events"])
    async def ingest(
        request: Request, who: Annotated[Principal, Depends(require("events:write"))]
    ) -> IngestReply:
        """Events as NDJSON (one JSON object per line; `application/x-ndjson`) or JSON (one
        object or an array; `application/json`), plain or `Content-Encoding: gzip`. A record
        nested too deeply is set aside with its reason (`rejected`, `problems`); the rest
        is stored. 202 once on disk; 413 past the size or count limits, 415 for another
        content type, 503 (backlog full, data folder not writable) and 507 (disk full) with
        Retry-After."""
        context.rate.check(who)
        backend.check_intake()  # before the body is read
        shape, gzip = body_kind(
            request.headers.get("content-type"), request.headers.get("content-encoding")
        )
        body = await context.body(request, gzip=gzip)
        split = await run_in_threadpool(split_records, body, shape, context.limits)
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

    @routes.post("/api/v1/alerts/import", status_code=201, tags=["alerts"])
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
        body = await context.body(request)
        return await run_in_threadpool(backend.import_alerts, name, bytes(body), format, mapping)

    return routes
