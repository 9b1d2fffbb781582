"""Routes over the asset inventory: list and show assets (managed or not), import a scan or
inventory, attack paths, blast radius, cloud privilege escalation, the risk register."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool

from vigil.api.auth import Principal
from vigil.api.context import BIGINT, Context
from vigil.errors import InputError, NotFound

NAME = r"^[\w.\- ]{1,200}$"  # an uploaded file's name, as the import reports it


def router(context: Context) -> APIRouter:
    backend, require = context.backend, context.require
    routes = APIRouter()

    @routes.get("/api/v1/assets", tags=["assets"])
    def assets(
        _: Annotated[Principal, Depends(require("assets:read"))],
        kind: str | None = None,
        search: Annotated[str | None, Query(max_length=200)] = None,
        managed: bool | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=BIGINT)] = 0,
    ) -> list[dict[str, Any]]:
        return backend.asset_store.nodes(
            kind=kind, search=search, managed=managed, limit=limit, offset=offset
        )

    @routes.get("/api/v1/assets/paths", tags=["assets"])
    def paths(
        _: Annotated[Principal, Depends(require("assets:read"))],
        start: Annotated[list[str] | None, Query(alias="from", max_length=100)] = None,
        end: Annotated[list[str] | None, Query(alias="to", max_length=100)] = None,
        per_target: Annotated[int, Query(ge=1, le=100)] = 5,
    ) -> dict[str, Any]:
        """From the internet-exposed assets (or `from`) to the crown jewels (or `to`)."""
        return backend.attack_paths(start, end, per_target=per_target)

    @routes.get("/api/v1/assets/blast-radius", tags=["assets"])
    def blast_radius(
        node: Annotated[str, Query(min_length=3, max_length=2048)],
        _: Annotated[Principal, Depends(require("assets:read"))],
        depth: Annotated[int | None, Query(ge=1, le=100)] = None,
    ) -> dict[str, Any]:
        return backend.blast_radius(node, depth=depth)

    @routes.get("/api/v1/assets/privesc", tags=["assets"])
    def privesc(
        _: Annotated[Principal, Depends(require("assets:read"))],
        principal: Annotated[str | None, Query(max_length=2048)] = None,
    ) -> dict[str, Any]:
        from vigil.assets.privesc import find_escalations

        kinds = ("user", "group", "role", "policy")
        found = find_escalations(backend.asset_store.inventory(kinds))
        return {
            "findings": [
                f.as_dict() for f in found.findings if principal is None or principal in f.principal
            ],
            "admins": [a.principal for a in found.admins],
        }

    @routes.get("/api/v1/risk", tags=["assets"])
    def risk(
        _: Annotated[Principal, Depends(require("assets:read"))],
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> dict[str, Any]:
        """The risk register: assets ranked with reasons, and the roadmap."""
        body = backend.risk_register().as_dict()
        return {"assets": body["assets"][:limit], "roadmap": body["roadmap"][:limit]}

    @routes.post("/api/v1/assets/import", tags=["assets"])
    async def import_(
        request: Request,
        _: Annotated[Principal, Depends(require("assets:write"))],
        name: Annotated[str, Query(pattern=NAME)],
        format: Annotated[str | None, Query(max_length=32)] = None,
    ) -> dict[str, Any]:
        """A scan, inventory or IAM export as the request body (its format told from `name`
        and its content unless `format` says)."""
        data = bytes(await context.body(request))
        if not data:
            raise InputError("an empty body: send the file's content")
        return await run_in_threadpool(backend.import_assets, data, name, format)

    # last: an id may hold slashes (ARNs)
    @routes.get("/api/v1/assets/{node_id:path}", tags=["assets"])
    def asset(
        node_id: str, _: Annotated[Principal, Depends(require("assets:read"))]
    ) -> dict[str, Any]:
        found = backend.asset_store.node(node_id)
        if found is None:
            raise NotFound(f"no asset {node_id!r}")
        return found

    return routes
