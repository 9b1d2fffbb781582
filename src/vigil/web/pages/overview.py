"""Overview: open incidents by severity, MTTD and MTTR by day, events per second and lag
per stage, the riskiest entities and the last backup; kept live by server-sent events."""

# No `from __future__ import annotations`: FastAPI reads the routes' signatures.
import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, StreamingResponse

from vigil.web.console import PREFIX, Console
from vigil.web.sessions import Session

LEVELS = ("critical", "high", "medium", "low", "informational")
TICK_S = 2.0  # between live updates
STREAM_S = 60.0  # a stream ends after this; the browser opens the next one itself


class Rates:
    """Events per second per stage, from the processed counts of two readings at least a
    second apart (shared by every open page)."""

    def __init__(self) -> None:
        self._last: tuple[float, dict[str, int]] | None = None
        self._rates: dict[str, float] = {}
        self._lock = threading.Lock()

    def update(self, processed: dict[str, int]) -> dict[str, float]:
        now = time.monotonic()
        with self._lock:
            if self._last is None:
                self._last = (now, processed)
            elif now - self._last[0] >= 1.0:
                then, before = self._last
                self._rates = {
                    name: max(0.0, (count - before.get(name, count)) / (now - then))
                    for name, count in processed.items()
                }
                self._last = (now, processed)
            return dict(self._rates)


def figures(console: Console, rates: Rates) -> dict[str, Any]:
    """What the live part of the overview shows."""
    backend = console.backend
    health = backend.health(detail=True)
    stages = health.get("stages", {})
    processed = {name: int(stage.get("processed", 0)) for name, stage in stages.items()}
    processed["intake"] = int(health.get("events_processed", 0))
    by_level = backend.incident_store.open_by_level()
    return {
        "health": health,
        "stages": stages,
        "rates": rates.update(processed),
        "open": [(level, by_level.get(level, 0)) for level in LEVELS if by_level.get(level)]
        + [(level, n) for level, n in sorted(by_level.items()) if level not in LEVELS],
        "open_total": sum(by_level.values()),
    }


def router(console: Console) -> APIRouter:
    routes = APIRouter(include_in_schema=False)
    reader = console.reader("incidents:read")
    rates = Rates()

    @routes.get(f"{PREFIX}/")
    def overview(request: Request, session: Annotated[Session, Depends(reader)]) -> HTMLResponse:
        backend = console.backend
        metrics = backend.incident_store.response_metrics(days=30)
        return console.render(
            request,
            session,
            "overview.html",
            live=figures(console, rates),
            metrics=metrics,
            mttd=list(metrics["mttd_by_day"].items()),
            mttr=list(metrics["mttr_by_day"].items()),
            entities=backend.entities(limit=10),
        )

    @routes.get(f"{PREFIX}/stream")
    async def stream(
        request: Request, session: Annotated[Session, Depends(reader)]
    ) -> StreamingResponse:
        """Server-sent events: `overview`, the live figures as HTML, every TICK_S."""
        template = console.env.get_template("overview_live.html")

        async def events() -> AsyncIterator[str]:
            ends = time.monotonic() + STREAM_S
            yield "retry: 3000\n\n"
            while time.monotonic() < ends and not await request.is_disconnected():
                live = await run_in_threadpool(figures, console, rates)
                html = template.render(live=live, session=session, csrf=session.csrf)
                data = "".join(f"data: {line}\n" for line in html.splitlines())
                yield f"event: overview\n{data}\n"
                await asyncio.sleep(TICK_S)

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"cache-control": "no-store"}
        )

    return routes
