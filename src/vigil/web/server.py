"""Running `vigil serve`: the service, its API and console on uvicorn (HTTPS when a
certificate is configured), and a clean stop on SIGINT/SIGTERM."""

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
    """The FastAPI app over a service (started and stopped with the app): the API, and the
    console under /console unless it is turned off."""
    from vigil.api.app import create_app
    from vigil.api.auth import TokenStore
    from vigil.web.sessions import ConsoleSessions
    from vigil.web.site import mount

    settings = service.settings
    tokens = TokenStore(service.engine)
    app = create_app(
        service,
        tokens,
        service.registry,
        max_body_bytes=settings.api.max_body_bytes,
        max_records=settings.api.max_records,
        rate_per_token=settings.api.rate_per_token,
        metrics=service.metrics,
        docs=settings.api.docs,
        hunts_at_once=settings.hunt.concurrent,
    )
    if settings.console.enabled:
        sessions = ConsoleSessions(
            service.engine, tokens, idle_s=settings.console.idle_s, max_s=settings.console.max_s
        )
        secure = settings.console.secure_cookies
        if secure is None:
            secure = settings.api.tls_cert is not None
        mount(app, app.state.context, sessions, secure=secure, origins=settings.console.origins)

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
        timeout_graceful_shutdown=5,  # the console's live streams do not hold a stop
        ssl_certfile=settings.api.tls_cert,
        ssl_keyfile=settings.api.tls_key,
    )
    server = uvicorn.Server(config)
    if on_ready is not None:
        scheme = "https" if settings.api.tls_cert is not None else "http"
        url = f"{scheme}://{settings.api.host}:{settings.api.port}"
        original = server.startup

        async def startup(sockets: Any = None) -> None:
            await original(sockets)
            on_ready(service, url)

        server.startup = startup  # type: ignore[method-assign]
    server.run()
