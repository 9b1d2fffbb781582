"""Running `vigil serve`: the service, its API on uvicorn, and a clean stop on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import uvicorn

from vigil.config import Settings
from vigil.detect.core import tune_collector
from vigil.detect.sigma import LoadedRules
from vigil.serve.service import Service

log = logging.getLogger("vigil.serve")


def build_app(service: Service) -> Any:
    """The FastAPI app over a service (started and stopped with the app)."""
    from vigil.api.app import create_app
    from vigil.api.auth import TokenStore

    settings = service.settings
    app = create_app(
        service,
        TokenStore(service.engine),
        service.registry,
        max_body_bytes=settings.api.max_body_bytes,
        max_records=settings.api.max_records,
        rate_per_token=settings.api.rate_per_token,
        metrics=service.metrics,
        docs=settings.api.docs,
        hunts_at_once=settings.hunt.concurrent,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        service.start()
        listeners = await _start_listeners(service)
        try:
            yield
        finally:
            for listener in listeners:
                await listener.stop()
            await asyncio.to_thread(service.stop)

    app.router.lifespan_context = lifespan
    return app


async def _start_listeners(service: Service) -> list[Any]:
    """Syslog over UDP/TCP as configured: each batch goes to the intake stream."""
    settings = service.settings.listeners
    if "intake" not in service.roles or (
        settings.syslog_udp is None and settings.syslog_tcp is None
    ):
        return []
    from vigil.ingest.listen import Received, SyslogServer
    from vigil.serve.pipeline import SYSLOG

    async def sink(batch: list[Received]) -> None:
        by_peer: dict[str, list[bytes]] = {}
        for item in batch:
            by_peer.setdefault(f"syslog:{item.peer}", []).append(item.data)
        for source, payloads in by_peer.items():
            await asyncio.to_thread(service.events_out.publish, SYSLOG, source, payloads)

    server = SyslogServer(
        sink, host=settings.host, udp_port=settings.syslog_udp, tcp_port=settings.syslog_tcp
    )
    await server.start()
    return [server]


def serve(
    settings: Settings,
    *,
    loaded: LoadedRules | None = None,
    on_ready: Callable[[Service, str], None] | None = None,
) -> None:
    service = Service(settings, loaded=loaded)
    tune_collector(collect=True)
    app = build_app(service)
    config = uvicorn.Config(
        app,
        host=settings.api.host,
        port=settings.api.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    if on_ready is not None:
        url = f"http://{settings.api.host}:{settings.api.port}"
        original = server.startup

        async def startup(sockets: Any = None) -> None:
            await original(sockets)
            on_ready(service, url)

        server.startup = startup  # type: ignore[method-assign]
    server.run()
