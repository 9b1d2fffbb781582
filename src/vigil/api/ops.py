"""Routes of the service itself: `/health` (open to anyone) and the Prometheus `/metrics`."""

# No `from __future__ import annotations` in the router modules: FastAPI reads the route
# signatures when they are defined, and their `Depends(require(...))` refer to the context.
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vigil.api.auth import Principal
from vigil.api.context import Context


def router(context: Context) -> APIRouter:
    backend, require = context.backend, context.require
    routes = APIRouter()

    @routes.get("/health", tags=["service"])
    def health(request: Request) -> dict[str, Any]:
        """Served to anyone: the status and the kinds of problem; with a valid token, the
        reasons and the figures too."""
        return backend.health(detail=context.bearer(request) is not None)

    @routes.get("/metrics", tags=["service"])
    def metrics_text(_: Annotated[Principal, Depends(require("metrics:read"))]) -> Response:
        return Response(generate_latest(context.registry), media_type=CONTENT_TYPE_LATEST)

    return routes
