"""Routes over what detection raised and with what: alerts and the loaded rules."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from vigil.api.auth import Principal
from vigil.api.context import BIGINT, Context
from vigil.errors import Invalid, NotFound
from vigil.events import parse_time


def _since(value: str | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    stamp = parse_time(value)
    if stamp is None:
        raise Invalid(f"since: not a time: {value!r}")
    return stamp


def router(context: Context) -> APIRouter:
    backend, require = context.backend, context.require
    routes = APIRouter()

    @routes.get("/api/v1/alerts", tags=["alerts"])
    def alerts(
        _: Annotated[Principal, Depends(require("alerts:read"))],
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=BIGINT)] = 0,
        since: str | None = None,
        level: str | None = None,
        rule_id: str | None = None,
        kind: str | None = None,
        event_from: Annotated[int | None, Query(ge=0, le=BIGINT)] = None,
        event_to: Annotated[int | None, Query(ge=0, le=BIGINT)] = None,
        host: Annotated[str | None, Query(max_length=1024)] = None,
        user: Annotated[str | None, Query(max_length=1024)] = None,
        ip: Annotated[str | None, Query(max_length=64)] = None,
        indicator: Annotated[str | None, Query(max_length=8192)] = None,
        incident: Annotated[str | None, Query(max_length=64)] = None,
    ) -> list[dict[str, Any]]:
        """Newest first, each with its `entities` and the `incidents` it is in.
        `event_from`/`event_to`: only the alerts on the events an ingest took (its reply's
        `first_offset` and `last_offset`), as an exercise asks. `host`, `user`, `ip`: only
        the alerts naming that entity; `indicator`: raised on that indicator's value;
        `incident`: the alerts of that incident."""
        if (event_from is None) != (event_to is None):
            raise Invalid("event_from and event_to go together")
        return backend.alerts(
            limit=limit,
            offset=offset,
            since=_since(since),
            level=level,
            rule_id=rule_id,
            kind=kind,
            events=None if event_from is None or event_to is None else (event_from, event_to),
            host=host,
            user=user,
            ip=ip,
            indicator=indicator,
            incident=incident,
        )

    @routes.get("/api/v1/alerts/{alert_id}", tags=["alerts"])
    def alert(
        alert_id: str, _: Annotated[Principal, Depends(require("alerts:read"))]
    ) -> dict[str, Any]:
        found = backend.alert(alert_id)
        if found is None:
            raise NotFound("no such alert")
        return found

    @routes.get("/api/v1/rules", tags=["rules"])
    def rules(_: Annotated[Principal, Depends(require("rules:read"))]) -> list[dict[str, Any]]:
        return backend.rules()

    return routes
