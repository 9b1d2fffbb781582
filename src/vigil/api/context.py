"""What every router of the API is built from (`Context`): the backend, the token store, the
limits, the metrics registry and the auth dependency `create_app` makes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request
from prometheus_client import CollectorRegistry

from vigil.api.auth import Principal, TokenStore
from vigil.api.backend import Backend
from vigil.api.hunting import Hunts
from vigil.api.rate import RateLimit
from vigil.errors import TooLarge
from vigil.ingest.body import BodyLimits, read_body

BIGINT = (1 << 63) - 1  # the largest integer the state database keeps


@dataclass(frozen=True, slots=True)
class Context:
    backend: Backend
    tokens: TokenStore
    registry: CollectorRegistry  # what `/metrics` renders
    limits: BodyLimits  # of a request body (`max_bytes`) and of the events in one
    rate: RateLimit  # requests per token (ingest)
    hunts: Hunts  # where hunts run (API and console share the places)
    # the auth dependency: `Depends(require("alerts:read"))` gives the caller's Principal
    # (401 without a valid token, 403 without the permission)
    require: Callable[[str], Callable[..., Awaitable[Principal]]]
    bearer: Callable[[Request], Principal | None]  # the caller, if its token is valid

    async def body(self, request: Request, *, gzip: bool = False) -> bytearray:
        """The request body, refused with 413 past `limits.max_bytes` (read as it streams;
        for gzip, counted inflated as well)."""
        most = self.limits.max_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > most:
            raise TooLarge(f"body larger than {most:,} bytes")
        return await read_body(request.stream(), max_bytes=most, gzip=gzip)
