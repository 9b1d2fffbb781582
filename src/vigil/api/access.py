"""Routes of the Zero Trust decision point: a policy enforcement point asks whether a subject
may do an action on a resource; the answer (allow, step_up, deny, with reasons and
obligations) is in the decision log before it is returned."""

import dataclasses
import queue
import time
import uuid
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from vigil.api.auth import Principal
from vigil.api.context import BIGINT, Context
from vigil.errors import Unavailable
from vigil.zerotrust.pdp import Decision
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
    session: str | None = Field(None, pattern=r"^[0-9a-f]{32}$")  # a session it belongs to
    open_session: bool = False  # on an allow, open a session (verified continuously)


class GrantAsked(BaseModel):
    subject: str = NAME
    resource: str = NAME
    actions: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=32
    )
    seconds: float = Field(gt=0, le=30 * 86400)
    reason: str = Field(min_length=1, max_length=500)
    groups: list[Annotated[str, Field(max_length=256)]] = Field([], max_length=256)


class GrantDecision(BaseModel):
    decision: Literal["approve", "deny"]


class Poll(BaseModel):
    """RFC 8936: acknowledge what was received, ask for what waits."""

    receiver: str = NAME
    ack: list[Annotated[str, Field(max_length=64)]] = Field([], max_length=1000)
    maxEvents: int = Field(100, ge=0, le=1000)  # RFC 8936 names it so


def router(context: Context) -> APIRouter:
    backend, require = context.backend, context.require
    routes = APIRouter()

    @routes.post(
        "/api/v1/access/decision",
        tags=["zerotrust"],
        response_class=Response,
        responses={200: {"content": {"application/json": {}}, "description": "The decision"}},
    )
    async def decide(
        asked: DecisionAsked,
        _: Annotated[Principal, Depends(require("access:decide"))],
    ) -> Response:
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
        refused = None
        if asked.session and not backend.sessions.holds(asked.session):  # why not: a query
            refused = await run_in_threadpool(backend.sessions.check, asked.session)
        if refused is not None:  # a revoked or expired session decides nothing more
            decision = Decision(uuid.uuid4().hex, time.time(), "deny", request, reasons=(refused,))
        else:
            decision = backend.pdp.decide(request, logged=False)
        try:
            seq = backend.decision_log.append(decision, wait=False)
        except queue.Full:
            raise Unavailable("the decision log is full: try again", retry_after=1) from None
        kept = await backend.decision_log.kept(seq)
        if not kept:
            raise Unavailable("the decision log is not keeping up: the decision was not kept")
        answer = decision.as_dict()
        if decision.outcome == "allow" and asked.open_session and not asked.session:
            answer["session"] = (
                await run_in_threadpool(backend.sessions.open, request, decision)
            ).id
        # written here, once: an answer asked for on every request needs no second pass
        return Response(orjson.dumps(answer), media_type="application/json")

    @routes.post("/api/v1/access/grants", tags=["zerotrust"], status_code=201)
    async def ask(
        asked: GrantAsked, _: Annotated[Principal, Depends(require("access:decide"))]
    ) -> dict[str, Any]:
        """Just-in-time access asked for a user (by the portal, a PEP): active at once, or
        waiting for a person when its grant rule says so."""
        grant = await run_in_threadpool(
            backend.grants.ask,
            asked.subject,
            asked.resource,
            asked.actions,
            asked.seconds,
            asked.reason,
            groups=asked.groups,
        )
        return dataclasses.asdict(grant)

    @routes.get("/api/v1/access/grants", tags=["zerotrust"])
    def grants(
        _: Annotated[Principal, Depends(require("playbooks:read"))],
        state: Annotated[str | None, Query(max_length=16)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=BIGINT)] = 0,
    ) -> list[dict[str, Any]]:
        return backend.grants.find(state=state, limit=limit, offset=offset)

    @routes.get("/api/v1/access/decisions", tags=["zerotrust"])
    def decisions(
        _: Annotated[Principal, Depends(require("playbooks:read"))],
        subject: Annotated[str | None, Query(max_length=256)] = None,
        outcome: Literal["allow", "step_up", "deny"] | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    ) -> dict[str, Any]:
        """The latest decisions first, with their reasons (of `subject`, with `outcome`),
        read back from the decision log: a page of the last 20,000 decisions at most
        (`complete` false when older ones were not read; `more` when another page
        follows)."""
        return backend.decision_log.recent(
            subject=subject, outcome=outcome, limit=limit, offset=offset
        )

    @routes.get("/api/v1/access/sessions", tags=["zerotrust"])
    def sessions(
        _: Annotated[Principal, Depends(require("playbooks:read"))],
        subject: Annotated[str | None, Query(max_length=256)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """The live sessions, verified continuously, the latest opened first."""
        return backend.sessions.listed(subject=subject, limit=limit)

    @routes.post("/api/v1/access/grants/{grant_id}/decision", tags=["zerotrust"])
    async def decide_grant(
        grant_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")],
        given: GrantDecision,
        principal: Annotated[Principal, Depends(require("playbooks:approve"))],
    ) -> dict[str, Any]:
        """Approve (its window starts now) or deny a grant waiting for a person."""
        decision = "approved" if given.decision == "approve" else "denied"
        grant = await run_in_threadpool(
            backend.grants.decide, grant_id, decision, f"token:{principal.name}", {principal.role}
        )
        return dataclasses.asdict(grant)

    @routes.get("/api/v1/segments", tags=["zerotrust"])
    def segments(_: Annotated[Principal, Depends(require("assets:read"))]) -> dict[str, Any]:
        """The segment policy in force: its segments (CIDRs, tags), the flows it allows, and
        the flows checked and violations found since start (`stage`, where this process runs
        the segments stage). A violation is an alert of kind `segmentation`."""
        return backend.segments()

    @routes.get("/api/v1/ssf/jwks", tags=["zerotrust"])
    def jwks(_: Annotated[Principal, Depends(require("access:decide"))]) -> dict[str, Any]:
        """The keys that verify Vigil's Security Event Tokens."""
        return backend.transmitter.key.jwks()

    @routes.post("/api/v1/ssf/poll", tags=["zerotrust"])
    async def poll(
        asked: Poll, _: Annotated[Principal, Depends(require("access:decide"))]
    ) -> dict[str, Any]:
        """RFC 8936 poll delivery: the Security Event Tokens waiting for a receiver."""
        return await run_in_threadpool(
            backend.transmitter.poll, asked.receiver, ack=asked.ack, max_events=asked.maxEvents
        )

    return routes
