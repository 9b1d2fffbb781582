"""Routes over threat intelligence: indicators by value, the latest ones, their sightings
and the store's figures."""

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from vigil.api.auth import Principal
from vigil.api.context import BIGINT, Context


class ManualIndicator(BaseModel):
    type: str = Field(max_length=16)  # vigil.intel.model.TYPES
    value: str = Field(min_length=1, max_length=8192)
    confidence: int | None = Field(None, ge=0, le=100)
    description: str | None = Field(None, max_length=4096)


def router(context: Context) -> APIRouter:
    backend, require = context.backend, context.require
    routes = APIRouter()

    @routes.get("/api/v1/indicators", tags=["indicators"])
    def indicators(
        value: Annotated[str, Query(min_length=1, max_length=8192)],
        _: Annotated[Principal, Depends(require("indicators:read"))],
    ) -> list[dict[str, Any]]:
        return backend.indicators(value)

    @routes.post("/api/v1/indicators", status_code=201, tags=["indicators"])
    def add_indicator(
        body: ManualIndicator,
        principal: Annotated[Principal, Depends(require("indicators:write"))],
    ) -> dict[str, Any]:
        """An indicator added by hand (source `manual`, the caller's say: sent again, it
        replaces it); 400 for a value not of its type. Detection matches it from its next
        load of the indicators."""
        return backend.add_indicator(
            body.type,
            body.value,
            author=principal.name,
            confidence=body.confidence,
            description=body.description,
        )

    @routes.get("/api/v1/indicators/stats", tags=["indicators"])
    def indicator_stats(
        _: Annotated[Principal, Depends(require("indicators:read"))],
    ) -> dict[str, Any]:
        return orjson.loads(orjson.dumps(backend.intel_stats(), default=str))  # type: ignore[no-any-return]

    @routes.get("/api/v1/indicators/recent", tags=["indicators"])
    def recent_indicators(
        _: Annotated[Principal, Depends(require("indicators:read"))],
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        offset: Annotated[int, Query(ge=0, le=BIGINT)] = 0,
    ) -> list[dict[str, Any]]:
        """The indicators most recently added first."""
        return backend.recent_indicators(limit=limit, offset=offset)

    @routes.get("/api/v1/indicators/sightings", tags=["indicators"])
    def sightings(
        _: Annotated[Principal, Depends(require("indicators:read"))],
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        offset: Annotated[int, Query(ge=0, le=BIGINT)] = 0,
    ) -> list[dict[str, Any]]:
        """Indicators seen in events (where, which field, how often, first and last
        time), the latest first."""
        return backend.sightings(limit=limit, offset=offset)

    return routes
