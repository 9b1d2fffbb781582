"""Routes of the Zero Trust decision point: a policy enforcement point asks whether a subject
may do an action on a resource; the answer (allow, step_up, deny, with reasons and
obligations) is in the decision log before it is returned."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from vigil.api.auth import Principal
from vigil.api.context import Context
from vigil.errors import Unavailable
from vigil.zerotrust.policy import AccessRequest

NAME = Field(min_length=1, max_length=256)


class DecisionAsked(BaseModel):
    subject: str = NAME
    action: str = NAME
    resource: str = NAME
    groups: list[Annotated[str, Field(max_length=256)]] = Field([], max_length=256)
    service: bool = False
    mfa: bool = False
    device: str | None = Field(None, max_length=256)
    source_ip: str | None = Field(None, max_length=64)


def router(context: Context) -> APIRouter:
    backend, require = context.backend, context.require
    routes = APIRouter()

    @routes.post("/api/v1/access/decision", tags=["zerotrust"])
    async def decide(
        asked: DecisionAsked,
        _: Annotated[Principal, Depends(require("access:decide"))],
    ) -> dict[str, Any]:
        """Decide one request: allow, step_up or deny, with the reasons, the policy that
        decided and the obligations (session lifetime, what to step up to)."""
        request = AccessRequest(
            subject=asked.subject,
            action=asked.action,
            resource=asked.resource,
            groups=tuple(asked.groups),
            service=asked.service,
            mfa=asked.mfa,
            device=asked.device,
            source_ip=asked.source_ip,
        )
        decision = backend.pdp.decide(request, logged=False)
        seq = backend.decision_log.append(decision)
        kept = await run_in_threadpool(backend.decision_log.wait, seq)
        if not kept:
            raise Unavailable("the decision log is not keeping up: the decision was not kept")
        return decision.as_dict()

    return routes
