"""Zero Trust: the decisions with their reasons (the latest first, by subject and outcome),
the just-in-time grants (approved or denied here by the roles the API lets decide), the live
sessions verified continuously, and the segment policy in force with what the staged one
would block."""

# No `from __future__ import annotations`: FastAPI reads the routes' signatures.
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse

from vigil.web.console import PREFIX, Console, relink
from vigil.web.sessions import Session

PAGE = 50  # decisions per page
GRANTS = 50  # grants per page
SESSIONS = 100  # live sessions shown
GRANT_STATES = ("waiting", "active", "expired", "denied", "revoked")
OUTCOMES = ("allow", "step_up", "deny")


def shown(grants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Grants as rows (`Grants.find`) with their actions read (the row holds JSON)."""
    return [{**g, "actions": orjson.loads(g["actions"])} for g in grants]


def router(console: Console) -> APIRouter:
    routes = console.routes()
    reader = console.reader("playbooks:read")  # as the API's grant, decision, session lists
    approver = console.writer("playbooks:approve")  # as POST /api/v1/access/grants/{id}/decision

    @routes.get(f"{PREFIX}/zerotrust")
    def zerotrust(
        request: Request,
        session: Annotated[Session, Depends(reader)],
        subject: Annotated[str, Query(max_length=256)] = "",
        outcome: Annotated[str, Query(pattern="^(|allow|step_up|deny)$")] = "",
        offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
        grant_state: Annotated[
            str, Query(pattern="^(|waiting|active|expired|denied|revoked)$")
        ] = "",
        grant_offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    ) -> HTMLResponse:
        backend = console.backend
        decisions = backend.decision_log.recent(
            subject=subject or None, outcome=outcome or None, limit=PAGE, offset=offset
        )
        grants = shown(
            backend.grants.find(state=grant_state or None, limit=GRANTS, offset=grant_offset)
        )
        waiting = shown(backend.grants.find(state="waiting", limit=GRANTS))
        previous = relink(request, grant_offset=max(0, grant_offset - GRANTS))
        return console.render(
            request,
            session,
            "zerotrust.html",
            decisions=decisions,
            subject=subject,
            outcome=outcome,
            outcomes=OUTCOMES,
            offset=offset,
            limit=PAGE,
            grants=grants,
            waiting=waiting,
            grant_state=grant_state,
            grant_states=GRANT_STATES,
            grant_pages={
                "previous": previous if grant_offset else None,
                "next": relink(request, grant_offset=grant_offset + GRANTS)
                if len(grants) >= GRANTS
                else None,
                "first": grant_offset + 1 if grants else 0,
                "last": grant_offset + len(grants),
            },
            live=backend.sessions.listed(limit=SESSIONS),
            # as GET /api/v1/segments: its own permission
            segments=backend.segments() if session.may("assets:read") else None,
        )

    @routes.post(f"{PREFIX}/zerotrust/grants/{{grant_id}}")
    async def decide_grant(
        grant_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")],
        decision: Annotated[Literal["approve", "deny"], Form()],
        session: Annotated[Session, Depends(approver)],
    ) -> RedirectResponse:
        """Approve (its window starts now) or deny a grant waiting for a person: as the API,
        by the roles its grant rule names (and admin)."""
        principal = session.principal
        await run_in_threadpool(
            console.backend.grants.decide,
            grant_id,
            "approved" if decision == "approve" else "denied",
            f"token:{principal.name}",
            {principal.role},
        )
        return console.back(f"{PREFIX}/zerotrust")

    return routes
