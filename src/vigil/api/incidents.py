"""Routes over incidents and their cases (status, assignee, notes, tasks, evidence), the
entities they involve, by risk, and the response figures (MTTD, MTTR)."""

import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from vigil.api.auth import Principal
from vigil.api.context import BIGINT, Context


class StatusChange(BaseModel):
    status: str
    note: str = Field("", max_length=10_000)


class Assignment(BaseModel):
    assignee: str = Field(min_length=1, max_length=256)


class Note(BaseModel):
    text: str = Field(min_length=1, max_length=100_000)


class NewTask(BaseModel):
    title: str = Field(min_length=1, max_length=1000)


def router(context: Context) -> APIRouter:
    backend, require = context.backend, context.require
    cases = backend.incident_store
    routes = APIRouter()

    @routes.get("/api/v1/incidents", tags=["incidents"])
    def incidents(
        _: Annotated[Principal, Depends(require("incidents:read"))],
        status: Annotated[str | None, Query(max_length=16)] = None,
        level: Annotated[str | None, Query(max_length=16)] = None,
        assignee: Annotated[str | None, Query(max_length=256)] = None,
        entity: Annotated[str | None, Query(max_length=512)] = None,
        sort: Literal["risk", "opened", "last", "alerts"] = "risk",
        order: Literal["asc", "desc"] = "desc",
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        offset: Annotated[int, Query(ge=0, le=BIGINT)] = 0,
    ) -> list[dict[str, Any]]:
        """Incidents, the riskiest first: `status` (or `open`: neither resolved nor false
        positive), `level`, `assignee` and `entity` (`host:ws-1`) narrow them."""
        return cases.ranked(
            status=status, level=level, assignee=assignee, entity=entity, sort=sort,
            order=order, limit=limit, offset=offset,
        )  # fmt: skip

    @routes.get("/api/v1/incidents/{incident_id}", tags=["incidents"])
    def incident(
        incident_id: str, _: Annotated[Principal, Depends(require("incidents:read"))]
    ) -> dict[str, Any]:
        """The incident, its case, its first alerts, its assets and its playbook runs."""
        return backend.incident(incident_id)

    @routes.post("/api/v1/incidents/{incident_id}/status", tags=["cases"])
    def set_status(
        incident_id: str,
        body: StatusChange,
        who: Annotated[Principal, Depends(require("cases:write"))],
    ) -> dict[str, Any]:
        cases.set_status(incident_id, body.status, who.name, body.note)
        return {"id": incident_id, "status": body.status}

    @routes.post("/api/v1/incidents/{incident_id}/assignee", tags=["cases"])
    def assign(
        incident_id: str,
        body: Assignment,
        who: Annotated[Principal, Depends(require("cases:write"))],
    ) -> dict[str, Any]:
        cases.assign(incident_id, body.assignee, who.name)
        return {"id": incident_id, "assignee": body.assignee}

    @routes.post("/api/v1/incidents/{incident_id}/notes", status_code=201, tags=["cases"])
    def note(
        incident_id: str, body: Note, who: Annotated[Principal, Depends(require("cases:write"))]
    ) -> dict[str, Any]:
        return {"id": cases.note(incident_id, who.name, body.text)}

    @routes.post("/api/v1/incidents/{incident_id}/tasks", status_code=201, tags=["cases"])
    def add_task(
        incident_id: str, body: NewTask, who: Annotated[Principal, Depends(require("cases:write"))]
    ) -> dict[str, Any]:
        return {"id": cases.add_task(incident_id, who.name, body.title)}

    @routes.post("/api/v1/incidents/{incident_id}/tasks/{task_id}/done", tags=["cases"])
    def task_done(
        incident_id: str,
        task_id: Annotated[int, Path(ge=0, le=BIGINT)],
        who: Annotated[Principal, Depends(require("cases:write"))],
    ) -> dict[str, Any]:
        cases.complete_task(incident_id, task_id, who.name)
        return {"id": task_id, "done": True}

    @routes.post("/api/v1/incidents/{incident_id}/evidence", status_code=201, tags=["cases"])
    async def add_evidence(
        incident_id: str,
        request: Request,
        who: Annotated[Principal, Depends(require("cases:write"))],
        name: Annotated[str, Query(min_length=1, max_length=255)],
    ) -> dict[str, Any]:
        """The request body is the file (any content type), kept under its SHA-256; its
        name is kept cleaned (no path, control or bidi characters)."""
        body = await context.body(request)
        stream = io.BytesIO(body)
        return await run_in_threadpool(cases.add_evidence, incident_id, who.name, name, stream)

    @routes.get("/api/v1/evidence/{sha256}", tags=["cases"])
    def evidence(
        sha256: Annotated[str, Path(pattern="^[0-9a-f]{64}$")],
        _: Annotated[Principal, Depends(require("incidents:read"))],
    ) -> FileResponse:
        path = cases.evidence_path(sha256)
        return FileResponse(path, media_type="application/octet-stream", filename=sha256)

    @routes.get("/api/v1/entities", tags=["incidents"])
    def entities(
        _: Annotated[Principal, Depends(require("incidents:read"))],
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> list[dict[str, Any]]:
        return backend.entities(limit=limit)

    @routes.get("/api/v1/response-metrics", tags=["incidents"])
    def response_metrics(
        _: Annotated[Principal, Depends(require("incidents:read"))],
        days: Annotated[int, Query(ge=1, le=3650)] = 30,
    ) -> dict[str, Any]:
        return cases.response_metrics(days=days)

    return routes
