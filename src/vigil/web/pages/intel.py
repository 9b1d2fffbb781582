"""Intel: indicators (looked up by value, and the latest added, paged), the sources with their
counts and last update, and the sightings of indicators in events, the latest first."""

# No `from __future__ import annotations`: FastAPI reads the routes' signatures.
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from vigil.api.context import BIGINT
from vigil.web.console import PREFIX, Console, relink
from vigil.web.sessions import Session

PAGE = 50  # indicators per page
SIGHTINGS = 50  # sightings per page


def router(console: Console) -> APIRouter:
    routes = console.routes()
    reader = console.reader("indicators:read")  # as the API's indicator routes

    @routes.get(f"{PREFIX}/intel")
    def intel(
        request: Request,
        session: Annotated[Session, Depends(reader)],
        value: Annotated[str, Query(max_length=8192)] = "",
        offset: Annotated[int, Query(ge=0, le=BIGINT)] = 0,
        sighting_offset: Annotated[int, Query(ge=0, le=BIGINT)] = 0,
    ) -> HTMLResponse:
        backend = console.backend
        value = value.strip()
        sightings = backend.sightings(limit=SIGHTINGS, offset=sighting_offset)
        return console.render(
            request,
            session,
            "intel.html",
            value=value,
            found=backend.indicators(value) if value else None,
            recent=backend.recent_indicators(limit=PAGE, offset=offset),
            offset=offset,
            limit=PAGE,
            stats=backend.intel_stats(),
            sightings=sightings,
            sighting_pages={
                "previous": relink(request, sighting_offset=max(0, sighting_offset - SIGHTINGS))
                if sighting_offset
                else None,
                "next": relink(request, sighting_offset=sighting_offset + SIGHTINGS)
                if len(sightings) >= SIGHTINGS
                else None,
                "first": sighting_offset + 1 if sightings else 0,
                "last": sighting_offset + len(sightings),
            },
        )

    return routes
