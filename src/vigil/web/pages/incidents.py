"""Incidents: the list (filtered, sorted, paged through any number) and one incident's page —
its alerts' timeline across layers, ATT&CK stages, entity graph, asset context, the case
(status, assignee, notes, tasks, evidence) and the playbook runs it started, with approve,
deny and undo. Every read is `Backend.incident` or `IncidentStore.ranked`, every change the
store or engine call the API's route makes, with the route's permission."""

# No `from __future__ import annotations`: FastAPI reads the routes' signatures.
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import orjson
from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from starlette.datastructures import UploadFile

from vigil.api.context import BIGINT
from vigil.api.respond import RUN_ID, STEP_ID
from vigil.correlate.store import SORTS, STATUSES, TRANSITIONS, clean_file_name
from vigil.errors import Invalid, Unavailable
from vigil.web.console import PREFIX, Console
from vigil.web.sessions import Session

LEVELS = ("critical", "high", "medium", "low", "informational")
PAGE = 50  # incidents a page
PIVOTS = ("host", "user", "ip")  # the entities the alerts page filters by
NAMED = (*PIVOTS, "principal")  # the entities the list shows (not processes nor hashes)
# event fields worth a look beside the ones the rule matched, in this order
KEY_FIELDS = (
    "CommandLine", "Image", "ParentImage", "TargetFilename", "TargetImage", "User",
    "TargetUserName", "SubjectUserName", "IpAddress", "SourceIp", "DestinationIp",
    "DestinationHostname", "QueryName", "ServiceName", "eventName", "sourceIPAddress",
    "userIdentity.arn", "id.orig_h", "id.resp_h", "query", "uri", "message",
)  # fmt: skip
KEY_MOST = 6  # key fields shown per alert
TEXT_MOST = 400  # characters of a field's value shown
FINISHED = ("done", "failed", "denied")  # the runs undo takes (as the engine's `undo`)


def router(console: Console) -> APIRouter:
    routes = console.routes()
    reader = console.reader("incidents:read")
    cases = console.writer("cases:write")
    approver = console.writer("playbooks:approve")
    runner = console.writer("playbooks:run")

    def store() -> Any:
        return console.backend.incident_store

    def responder() -> Any:
        found = console.backend.responder
        if found is None:
            raise Unavailable("response is off on this server ([respond] enabled = false)")
        return found

    def back(incident_id: str, part: str = "") -> RedirectResponse:
        return console.back(f"{PREFIX}/incidents/{quote(incident_id, safe='')}{part}")

    @routes.get(f"{PREFIX}/incidents")
    def incidents(
        request: Request,
        session: Annotated[Session, Depends(reader)],
        status: Annotated[str, Query(max_length=16)] = "",
        level: Annotated[str, Query(max_length=16)] = "",
        assignee: Annotated[str, Query(max_length=256)] = "",
        entity: Annotated[str, Query(max_length=512)] = "",
        sort: Annotated[str, Query(max_length=16)] = "risk",
        order: Annotated[str, Query(max_length=4)] = "desc",
        offset: Annotated[int, Query(ge=0, le=BIGINT)] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = PAGE,
    ) -> HTMLResponse:
        filters = {
            "status": status or None,
            "level": level or None,
            "assignee": assignee.strip() or None,
            "entity": entity.strip() or None,
        }
        rows = [
            {**row, "named": [e for e in row["entities"] if e.partition(":")[0] in NAMED]}
            for row in store().ranked(**filters, sort=sort, order=order, limit=limit, offset=offset)
        ]
        total = store().count(**filters)
        kept = {k: v for k, v in filters.items() if v}
        headers = {
            column: f"{PREFIX}/incidents?"
            + urlencode(
                {
                    **kept,
                    "sort": column,
                    "order": "asc" if (column, order) == (sort, "desc") else "desc",
                }
            )
            for column in SORTS
        }
        return console.render(
            request,
            session,
            "incidents.html",
            rows=rows,
            total=total,
            filters=kept,
            sort=sort,
            order=order,
            offset=offset,
            limit=limit,
            headers=headers,
            statuses=("open", *STATUSES),
            levels=LEVELS,
        )

    @routes.get(f"{PREFIX}/incidents/{{incident_id}}")
    def incident(
        request: Request,
        session: Annotated[Session, Depends(reader)],
        incident_id: Annotated[str, Path(max_length=64)],
    ) -> HTMLResponse:
        found = console.backend.incident(incident_id)
        alerts = sorted(found["alerts_detail"], key=lambda a: a.get("time") or 0.0)
        role = session.principal.role
        runs = [
            {
                **run,
                "undoable": run["state"] in FINISHED and session.may("playbooks:run"),
                "steps": [
                    {
                        **step,
                        "inputs_text": text_of(step["inputs"]),
                        "decidable": decidable(step, role, session),
                    }
                    for step in run["steps"]
                ],
                "undo": [{**step, "inputs_text": text_of(step["inputs"])} for step in run["undo"]],
            }
            for run in found["runs"]
        ]
        return console.render(
            request,
            session,
            "incident.html",
            incident=found,
            alerts=[timeline_row(alert) for alert in alerts],
            more=len(found["alert_ids"]) - len(alerts),
            graph=graph(found, alerts),
            transitions=TRANSITIONS.get(found["status"], ()),
            runs=runs,
            writes=session.may("cases:write"),
        )

    @routes.get(f"{PREFIX}/incidents/{{incident_id}}/evidence/{{sha256}}")
    def evidence(
        session: Annotated[Session, Depends(reader)],
        incident_id: Annotated[str, Path(max_length=64)],
        sha256: Annotated[str, Path(pattern="^[0-9a-f]{64}$")],
        name: Annotated[str, Query(max_length=255)] = "evidence",
    ) -> FileResponse:
        path = store().evidence_path(sha256)
        return FileResponse(
            path, media_type="application/octet-stream", filename=clean_file_name(name)
        )

    # --- the case: the same store calls as /api/v1/incidents/{id}/... --------------------

    @routes.post(f"{PREFIX}/incidents/{{incident_id}}/status")
    def set_status(
        session: Annotated[Session, Depends(cases)],
        incident_id: Annotated[str, Path(max_length=64)],
        status: Annotated[str, Form(max_length=16)] = "",
        note: Annotated[str, Form(max_length=10_000)] = "",
    ) -> RedirectResponse:
        store().set_status(incident_id, status, session.principal.name, note)
        return back(incident_id)

    @routes.post(f"{PREFIX}/incidents/{{incident_id}}/assignee")
    def assign(
        session: Annotated[Session, Depends(cases)],
        incident_id: Annotated[str, Path(max_length=64)],
        assignee: Annotated[str, Form(max_length=256)] = "",
    ) -> RedirectResponse:
        store().assign(incident_id, required(assignee, "an assignee"), session.principal.name)
        return back(incident_id)

    @routes.post(f"{PREFIX}/incidents/{{incident_id}}/notes")
    def note(
        session: Annotated[Session, Depends(cases)],
        incident_id: Annotated[str, Path(max_length=64)],
        text: Annotated[str, Form(max_length=100_000)] = "",
    ) -> RedirectResponse:
        store().note(incident_id, session.principal.name, required(text, "a note's text"))
        return back(incident_id, "#case")

    @routes.post(f"{PREFIX}/incidents/{{incident_id}}/tasks")
    def add_task(
        session: Annotated[Session, Depends(cases)],
        incident_id: Annotated[str, Path(max_length=64)],
        title: Annotated[str, Form(max_length=1000)] = "",
    ) -> RedirectResponse:
        store().add_task(incident_id, session.principal.name, required(title, "a task's title"))
        return back(incident_id, "#tasks")

    @routes.post(f"{PREFIX}/incidents/{{incident_id}}/tasks/{{task_id}}/done")
    def task_done(
        session: Annotated[Session, Depends(cases)],
        incident_id: Annotated[str, Path(max_length=64)],
        task_id: Annotated[int, Path(ge=0, le=BIGINT)],
    ) -> RedirectResponse:
        store().complete_task(incident_id, task_id, session.principal.name)
        return back(incident_id, "#tasks")

    @routes.post(f"{PREFIX}/incidents/{{incident_id}}/evidence", **console.upload())
    async def add_evidence(
        request: Request,
        session: Annotated[Session, Depends(cases)],
        incident_id: Annotated[str, Path(max_length=64)],
    ) -> RedirectResponse:
        """A file posted as multipart form data (field `file`), kept as the API keeps it."""
        form = await request.form()  # read once: the anti-forgery check may have read it
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise Invalid("choose a file to add as evidence")
        await run_in_threadpool(
            store().add_evidence, incident_id, session.principal.name, upload.filename, upload.file
        )
        return back(incident_id, "#case")

    # --- the playbook runs: the engine calls of /api/v1/runs/... -------------------------

    @routes.post(f"{PREFIX}/incidents/{{incident_id}}/runs/{{run_id}}/steps/{{step_id}}/decision")
    def decide(
        session: Annotated[Session, Depends(approver)],
        incident_id: Annotated[str, Path(max_length=64)],
        run_id: Annotated[str, Path(pattern=RUN_ID)],
        step_id: Annotated[str, Path(pattern=STEP_ID)],
        decision: Annotated[str, Form(max_length=8)] = "",
        reason: Annotated[str, Form(max_length=2000)] = "",
    ) -> RedirectResponse:
        """Approve or deny a step waiting for approval: the role must be one the step
        names (admin always may), as the engine checks."""
        engine, principal = responder(), session.principal
        actor = f"token:{principal.name}"
        if decision == "approve":
            engine.approve(run_id, step_id, actor, {principal.role})
        elif decision == "deny":
            engine.deny(run_id, step_id, actor, {principal.role}, reason)
        else:
            raise Invalid(f"a decision is approve or deny, not {decision!r}")
        return back(incident_id, "#runs")

    @routes.post(f"{PREFIX}/incidents/{{incident_id}}/runs/{{run_id}}/undo")
    def undo(
        session: Annotated[Session, Depends(runner)],
        incident_id: Annotated[str, Path(max_length=64)],
        run_id: Annotated[str, Path(pattern=RUN_ID)],
    ) -> RedirectResponse:
        """Compensate what a finished run did, newest action first (in the background)."""
        responder().undo(run_id, f"token:{session.principal.name}")
        return back(incident_id, "#runs")

    return routes


def required(text: str, what: str) -> str:
    if not text.strip():
        raise Invalid(f"{what} is needed")
    return text.strip()


def decidable(step: dict[str, Any], role: str, session: Session) -> bool:
    """Whether this session is offered approve and deny for the step (the engine decides)."""
    if step["state"] != "waiting" or step.get("decided") is not None:
        return False
    roles = set(step.get("approval_roles") or [])
    return session.may("playbooks:approve") and (role == "admin" or role in roles)


def text_of(value: Any) -> str:
    """A field's value as text, cut short (the template escapes it)."""
    shown = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return shown if len(shown) <= TEXT_MOST else shown[:TEXT_MOST] + "…"


def timeline_row(alert: dict[str, Any]) -> dict[str, Any]:
    """One alert as the timeline shows it: its key fields as (name, text), its pivots as
    (kind, value)."""
    event = alert.get("event") or {}
    fields: dict[str, str] = {
        str(name): text_of(value) for name, value in (alert.get("matched_fields") or {}).items()
    }
    for name in KEY_FIELDS:
        if len(fields) >= KEY_MOST:
            break
        if name not in fields and event.get(name) not in (None, "", "-"):
            fields[name] = text_of(event[name])
    pivots = [(kind, value) for kind, value in alert.get("entities", []) if kind in PIVOTS]
    pivots.sort(key=lambda pivot: PIVOTS.index(pivot[0]))
    return {**alert, "fields": list(fields.items())[:KEY_MOST], "pivots": pivots}


def graph(incident: dict[str, Any], alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """The incident, its alerts (the first ones, as shown) and the entities each names."""
    assets = incident["assets"]
    nodes: list[dict[str, Any]] = [
        {"id": "incident", "label": incident["id"], "kind": "incident", "classes": ["focus"]}
    ]
    edges: list[dict[str, Any]] = []
    seen: set[str] = set()
    for n, alert in enumerate(alerts):
        node = f"a{n}"
        nodes.append(
            {
                "id": node,
                "label": alert["rule_title"][:60],
                "kind": "alert",
                "href": f"{PREFIX}/alerts/{quote(alert['id'], safe='')}",
            }
        )
        edges.append({"source": "incident", "target": node})
        for kind, value in alert.get("entities", []):
            entity = f"{kind}:{value}"
            if entity not in seen:
                seen.add(entity)
                made: dict[str, Any] = {"id": entity, "label": value[:60], "kind": kind}
                if kind in PIVOTS:
                    made["href"] = f"{PREFIX}/alerts?" + urlencode({kind: value})
                if assets.get(entity, {}).get("crown_jewel"):
                    made["classes"] = ["jewel"]
                nodes.append(made)
            edges.append({"source": node, "target": entity})
    return {"nodes": nodes, "edges": edges, "layout": "cose"}
