"""Hunting routes: SQL and Sigma hunts over the stored events, each in a thread of its own
(a few at once, stopped when the client goes away), and saved hunts."""

import threading
from typing import Annotated, Any, Literal, TypeVar

import anyio
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from vigil.api.auth import Principal
from vigil.api.context import Context
from vigil.errors import NotFound

T = TypeVar("T")


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


class NotebookEntry(BaseModel):
    kind: Literal["sql", "sigma", "note"]
    text: str = Field(min_length=1, max_length=1_000_000)
    since: str | None = Field(None, max_length=64)  # a Sigma rule's, as in a Sigma hunt


def router(context: Context) -> APIRouter:
    backend, require = context.backend, context.require
    hunts = context.hunts  # shared with the console's hunt page
    routes = APIRouter()

    @routes.post("/api/v1/hunts/sql", tags=["hunts"])
    async def hunt_sql(
        request: Request, body: SqlHunt, _: Annotated[Principal, Depends(require("hunts:run"))]
    ) -> dict[str, Any]:
        """One SELECT over the view `events`; stopped past the hunt time limit or when the
        client goes away; rows cut off at `limit` or the result byte limit (`truncated`)."""
        return await hunts.run(
            request, lambda cancel: backend.hunt_sql(body.query, limit=body.limit, cancel=cancel)
        )

    @routes.post("/api/v1/hunts/sigma", tags=["hunts"])
    async def hunt_sigma(
        request: Request,
        body: SigmaHunt,
        _: Annotated[Principal, Depends(require("hunts:run"))],
    ) -> dict[str, Any]:
        """The stored events through one Sigma rule: its detections (`truncated` when cut
        off at the result byte limit)."""
        return await hunts.run(
            request, lambda cancel: backend.hunt_sigma(body.rule, since=body.since, cancel=cancel)
        )

    @routes.get("/api/v1/hunts/saved", tags=["hunts"])
    def saved(_: Annotated[Principal, Depends(require("hunts:run"))]) -> list[dict[str, Any]]:
        return backend.saved_hunts()

    @routes.post("/api/v1/hunts/saved", status_code=201, tags=["hunts"])
    def save(
        body: SavedHunt, _: Annotated[Principal, Depends(require("hunts:manage"))]
    ) -> dict[str, Any]:
        """Kept once its SQL or Sigma rule is known to run (400 naming what is wrong)."""
        return backend.save_hunt(
            body.name, query=body.query, sigma=body.sigma, every_seconds=body.every_seconds
        )

    @routes.get("/api/v1/hunts/saved/{name}/notebook", tags=["hunts"])
    def notebook(
        name: str, _: Annotated[Principal, Depends(require("hunts:run"))]
    ) -> dict[str, Any]:
        """The saved hunt with its notebook: its queries (each with what it found: columns,
        the first rows, count, seconds; or the error) and notes, in order."""
        return backend.hunt_notebook(name)

    @routes.post("/api/v1/hunts/saved/{name}/notebook", status_code=201, tags=["hunts"])
    async def add_to_notebook(
        request: Request,
        name: str,
        body: NotebookEntry,
        principal: Annotated[Principal, Depends(require("hunts:manage"))],
    ) -> dict[str, Any]:
        """A note, or a query (`sql`, or a `sigma` rule with `since`) run now as a hunt is
        and kept with its result summary (or the error that stopped it)."""

        def add(cancel: threading.Event | None = None) -> dict[str, Any]:
            return backend.add_hunt_note(
                name,
                kind=body.kind,
                text=body.text,
                author=principal.name,
                since=body.since,
                cancel=cancel,
            )

        if body.kind == "note":  # nothing to run: no hunt place taken
            return await anyio.to_thread.run_sync(add)
        return await hunts.run(request, add)

    @routes.delete("/api/v1/hunts/saved/{name}", status_code=204, tags=["hunts"])
    def unsave(name: str, _: Annotated[Principal, Depends(require("hunts:manage"))]) -> Response:
        if not backend.delete_hunt(name):
            raise NotFound("no such saved hunt")
        return Response(status_code=204)

    return routes
