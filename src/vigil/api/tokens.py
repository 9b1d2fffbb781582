"""Routes over API tokens: list, make (the token is shown once) and revoke."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from vigil.api.auth import ROLES, Principal, TokenInfo
from vigil.api.context import Context
from vigil.errors import Invalid, NotFound


class NewToken(BaseModel):
    role: str
    name: str = Field(min_length=1, max_length=128)


def router(context: Context) -> APIRouter:
    tokens, require = context.tokens, context.require
    routes = APIRouter()

    @routes.get("/api/v1/tokens", tags=["tokens"])
    def token_list(
        _: Annotated[Principal, Depends(require("tokens:manage"))],
    ) -> list[dict[str, Any]]:
        return [_info(t) for t in tokens.list()]

    @routes.post("/api/v1/tokens", status_code=201, tags=["tokens"])
    def token_create(
        body: NewToken, _: Annotated[Principal, Depends(require("tokens:manage"))]
    ) -> dict[str, Any]:
        if body.role not in ROLES:
            raise Invalid(f"role must be one of {', '.join(ROLES)}")
        token, info = tokens.create(body.role, body.name)
        return {"token": token, **_info(info)}

    @routes.delete("/api/v1/tokens/{token_id}", status_code=204, tags=["tokens"])
    def token_revoke(
        token_id: str, _: Annotated[Principal, Depends(require("tokens:manage"))]
    ) -> Response:
        if not tokens.revoke(token_id):
            raise NotFound("no such token")
        return Response(status_code=204)

    return routes


def _info(info: TokenInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "name": info.name,
        "role": info.role,
        "created": info.created,
        "last_used": info.last_used,
        "revoked": info.revoked,
    }
