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

from vigil.errors import Overloaded
from vigil.web.console import COOKIE, PREFIX, Console
from vigil.web.sessions import Session

LEVELS = ("critical", "high", "medium", "low", "informational")
TICK_S = 2.0  # between live updates
STREAM_S = 60.0  # a stream ends after this; the browser opens the next one itself
STREAMS_PER_SESSION = 4  # live streams open at once (tabs)
STREAMS_MOST = 64  # for the whole server


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


class Live:
    """What every open overview shows, computed once a tick whatever the number of
    streams, and the streams open (bounded per session and in all)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.rates = Rates()
        self._lock = threading.Lock()
        self._last: tuple[float, dict[str, Any]] | None = None
        self.open: dict[str, int] = {}  # session id: streams

    def figures(self) -> dict[str, Any]:
        with self._lock:
            if self._last is None or time.monotonic() - self._last[0] >= TICK_S * 0.9:
                self._last = (time.monotonic(), figures(self.console, self.rates))
            return self._last[1]

    def enter(self, session: Session) -> None:
        if sum(self.open.values()) >= STREAMS_MOST:
            raise Overloaded("too many live views are open on this server", retry_after=STREAM_S)
        if self.open.get(session.id, 0) >= STREAMS_PER_SESSION:
            raise Overloaded("this session has too many live views open", retry_after=STREAM_S)
        self.open[session.id] = self.open.get(session.id, 0) + 1

    def leave(self, session: Session) -> None:
        left = self.open.get(session.id, 1) - 1
        if left > 0:
            self.open[session.id] = left
        else:
            self.open.pop(session.id, None)


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
    routes = console.routes()
    reader = console.reader("incidents:read")
    watcher = console.reader("incidents:read", touch=False)
    live = Live(console)

    @routes.get(f"{PREFIX}/")
    def overview(request: Request, session: Annotated[Session, Depends(reader)]) -> HTMLResponse:
        backend = console.backend
        metrics = backend.incident_store.response_metrics(days=30)
        return console.render(
            request,
            session,
            "overview.html",
            live=live.figures(),
            metrics=metrics,
            mttd=list(metrics["mttd_by_day"].items()),
            mttr=list(metrics["mttr_by_day"].items()),
            entities=backend.entities(limit=10),
        )

    @routes.get(f"{PREFIX}/stream")
    async def stream(
        request: Request, session: Annotated[Session, Depends(watcher)]
    ) -> StreamingResponse:
        """Server-sent events: `overview`, the live figures as HTML, every TICK_S, while
        the session lives (checked each tick; the stream does not count as use)."""
        template = console.env.get_template("overview_live.html")
        secret = request.cookies.get(COOKIE, "")
        live.enter(session)

        async def events() -> AsyncIterator[str]:
            try:
                ends = time.monotonic() + STREAM_S
                yield "retry: 3000\n\n"
                while time.monotonic() < ends and not await request.is_disconnected():
                    now = console.sessions.known(secret) or await run_in_threadpool(
                        console.sessions.find, secret, touch=False
                    )
                    if now is None:
                        yield "event: ended\ndata: signed out\n\n"
                        return
                    shown = await run_in_threadpool(live.figures)
                    html = template.render(live=shown, session=session, csrf=session.csrf)
                    data = "".join(f"data: {line}\n" for line in html.splitlines())
                    yield f"event: overview\n{data}\n"
                    await asyncio.sleep(TICK_S)
            finally:
                live.leave(session)

        return StreamingResponse(events(), media_type="text/event-stream")

    return routes
