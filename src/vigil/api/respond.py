"""Routes over response: the playbooks (list, show, validate, the JSON Schema, CACAO export),
running one by hand, the runs (list, show, steps waiting for approval), approve and deny a
step, undo a run, and the response figures (runs, approvals, detection → first action)."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from vigil.api.auth import Principal
from vigil.api.context import Context
from vigil.errors import Unavailable

RUN_ID = r"^[0-9a-f]{32}$"
STEP_ID = r"^[a-z0-9][a-z0-9_-]{0,63}$"
RUN_ID_PATH = Path(pattern=RUN_ID)
STEP_ID_PATH = Path(pattern=STEP_ID)


class RunRequest(BaseModel):
    host: str | None = Field(None, max_length=255)
    user: str | None = Field(None, max_length=255)
    ip: str | None = Field(None, max_length=64)
    incident: str | None = Field(None, max_length=64)
    dry_run: bool = True  # real mode only when asked (and [respond] dry_run is false)


class Decision(BaseModel):
    decision: Literal["approve", "deny"]
    reason: str = Field("", max_length=2000)


def router(context: Context) -> APIRouter:
    backend, require = context.backend, context.require
    routes = APIRouter()

    def responder() -> Any:
        found = backend.responder
        if found is None:
            raise Unavailable("response is off on this server ([respond] enabled = false)")
        return found

    @routes.get("/api/v1/playbooks", tags=["respond"])
    def playbooks(
        _: Annotated[Principal, Depends(require("playbooks:read"))],
    ) -> list[dict[str, Any]]:
        engine = responder()
        return [
            {**p.to_dict(), "dry_run": p.dry_run or engine.settings.dry_run}
            for p in sorted(engine.playbooks.values(), key=lambda p: p.id)
        ]

    @routes.get("/api/v1/playbooks/schema", tags=["respond"])
    def playbook_schema(
        _: Annotated[Principal, Depends(require("playbooks:read"))],
    ) -> dict[str, Any]:
        from vigil.respond.playbook import schema

        return schema()

    @routes.post("/api/v1/playbooks/validate", tags=["respond"])
    def validate(
        _: Annotated[Principal, Depends(require("playbooks:read"))],
        document: Annotated[dict[str, Any], Body(max_length=1 << 20)],
    ) -> dict[str, Any]:
        """Check a playbook (its YAML as JSON): `ok`, and the problems found."""
        from vigil.errors import InputError
        from vigil.respond.actions import ACTIONS
        from vigil.respond.playbook import parse

        try:
            parse(document, "playbook", ACTIONS)
        except InputError as exc:
            return {"ok": False, "problems": str(exc).removeprefix("playbook: ").split("; ")}
        return {"ok": True, "problems": []}

    @routes.get("/api/v1/playbooks/{playbook_id}", tags=["respond"])
    def playbook(
        playbook_id: Annotated[str, STEP_ID_PATH],
        _: Annotated[Principal, Depends(require("playbooks:read"))],
    ) -> dict[str, Any]:
        return responder().playbook(playbook_id).to_dict()  # type: ignore[no-any-return]

    @routes.get("/api/v1/playbooks/{playbook_id}/cacao", tags=["respond"])
    def cacao(
        playbook_id: Annotated[str, STEP_ID_PATH],
        _: Annotated[Principal, Depends(require("playbooks:read"))],
    ) -> dict[str, Any]:
        """The playbook as an OASIS CACAO v2.0 document."""
        from vigil.respond.cacao import to_cacao

        return to_cacao(responder().playbook(playbook_id))

    @routes.post("/api/v1/playbooks/{playbook_id}/runs", tags=["respond"], status_code=202)
    async def start(
        playbook_id: Annotated[str, STEP_ID_PATH],
        principal: Annotated[Principal, Depends(require("playbooks:run"))],
        given: RunRequest,
    ) -> dict[str, Any]:
        """Run a playbook by hand for an entity; the run's id (it goes on in the
        background)."""
        entity = {
            k: v for k, v in (("host", given.host), ("user", given.user), ("ip", given.ip)) if v
        }
        context: dict[str, Any] = {"entity": entity}
        if given.incident:
            context["incident"] = {"id": given.incident}
        run_id = await run_in_threadpool(
            responder().start_run,
            playbook_id,
            f"token:{principal.name}",
            context=context,
            subject=given.incident or "",
            dry_run=given.dry_run,
        )
        return {"run": run_id}

    @routes.get("/api/v1/runs", tags=["respond"])
    def runs(
        _: Annotated[Principal, Depends(require("playbooks:read"))],
        state: Annotated[str | None, Query(max_length=16)] = None,
        playbook: Annotated[str | None, Query(max_length=64)] = None,
        subject: Annotated[str | None, Query(max_length=128)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        return responder().runs(  # type: ignore[no-any-return]
            state=state, playbook=playbook, subject=subject, limit=limit
        )

    @routes.get("/api/v1/runs/pending", tags=["respond"])
    def pending(
        _: Annotated[Principal, Depends(require("playbooks:read"))],
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        """Steps waiting for approval, and runs held by the storm guard, the oldest first."""
        engine = responder()
        return [*engine.pending(limit), *engine.held(limit=limit)]

    @routes.get("/api/v1/runs/{run_id}", tags=["respond"])
    def run(
        run_id: Annotated[str, RUN_ID_PATH],
        _: Annotated[Principal, Depends(require("playbooks:read"))],
    ) -> dict[str, Any]:
        return responder().run(run_id)  # type: ignore[no-any-return]

    @routes.post("/api/v1/runs/{run_id}/steps/{step_id}/decision", tags=["respond"])
    async def decide(
        run_id: Annotated[str, RUN_ID_PATH],
        step_id: Annotated[str, STEP_ID_PATH],
        principal: Annotated[Principal, Depends(require("playbooks:approve"))],
        given: Decision,
    ) -> dict[str, Any]:
        """Approve or deny a step waiting for approval: the caller's role must be one the
        step names (admin always may)."""
        engine = responder()
        actor = f"token:{principal.name}"
        if given.decision == "approve":
            await run_in_threadpool(engine.approve, run_id, step_id, actor, {principal.role})
        else:
            await run_in_threadpool(
                engine.deny, run_id, step_id, actor, {principal.role}, given.reason
            )
        return {"run": run_id, "step": step_id, "decision": given.decision}

    @routes.post("/api/v1/runs/{run_id}/decision", tags=["respond"])
    async def decide_run(
        run_id: Annotated[str, RUN_ID_PATH],
        principal: Annotated[Principal, Depends(require("playbooks:approve"))],
        given: Decision,
    ) -> dict[str, Any]:
        """Let a run the storm guard held start, or end it."""
        decision = "approved" if given.decision == "approve" else "denied"
        await run_in_threadpool(
            responder().decide_run,
            run_id,
            decision,
            f"token:{principal.name}",
            {principal.role},
            given.reason,
        )
        return {"run": run_id, "decision": given.decision}

    @routes.post("/api/v1/runs/{run_id}/undo", tags=["respond"], status_code=202)
    async def undo(
        run_id: Annotated[str, RUN_ID_PATH],
        principal: Annotated[Principal, Depends(require("playbooks:run"))],
    ) -> dict[str, Any]:
        """Compensate what a finished run did, newest action first (in the background)."""
        await run_in_threadpool(responder().undo, run_id, f"token:{principal.name}")
        return {"run": run_id, "state": "undoing"}

    @routes.get("/api/v1/respond/metrics", tags=["respond"])
    def figures(
        _: Annotated[Principal, Depends(require("metrics:read"))],
        days: Annotated[int, Query(ge=1, le=3650)] = 30,
    ) -> dict[str, Any]:
        """Runs by state, approvals waiting, detection → first action (p50, p99), and the
        incidents' MTTD, MTTA, MTTC and MTTR with their trend per day."""
        return {
            **responder().figures(),
            "incidents": backend.incident_store.response_metrics(days),
        }

    return routes
