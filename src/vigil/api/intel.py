"""Routes over threat intelligence: indicators by value and the store's figures."""

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query

from vigil.api.auth import Principal
from vigil.api.context import Context


def router(context: Context) -> APIRouter:
    backend, require = context.backend, context.require
    routes = APIRouter()

    @routes.get("/api/v1/indicators", tags=["indicators"])
    def indicators(
        value: Annotated[str, Query(min_length=1, max_length=8192)],
        _: Annotated[Principal, Depends(require("indicators:read"))],
    ) -> list[dict[str, Any]]:
        return backend.indicators(value)

    @routes.get("/api/v1/indicators/stats", tags=["indicators"])
    def indicator_stats(
        _: Annotated[Principal, Depends(require("indicators:read"))],
    ) -> dict[str, Any]:
        return orjson.loads(orjson.dumps(backend.intel_stats(), default=str))  # type: ignore[no-any-return]

    return routes
