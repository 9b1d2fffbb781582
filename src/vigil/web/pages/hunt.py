"""Hunt: SQL and Sigma hunts over the stored events with their result tables, the saved
hunts (save the current query, delete), and a notebook per saved hunt (its queries, each with
what it found, and the analysts' notes, in order). Hunts run as the API runs them
(`Backend.hunt_sql`, `Backend.hunt_sigma`, in a thread of their own through the API's `Hunts`,
stopped when the browser goes away); the notebook is `Backend.hunt_notebook` and
`Backend.add_hunt_note`, as GET and POST /api/v1/hunts/saved/{name}/notebook."""

# No `from __future__ import annotations`: FastAPI reads the routes' signatures.
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from vigil.api.hunts import SavedHunt
from vigil.errors import InputError, NotFound, Unavailable
from vigil.web.console import PREFIX, Console
from vigil.web.sessions import Session

ROWS = 500  # rows of a result the page shows (a hunt asks for no more)
NAME = r"^[A-Za-z0-9_.-]+$"  # a saved hunt's name, as the API takes it
EXAMPLE_SQL = (
    "SELECT time, host_name, user_name, process_command_line\nFROM events\n"
    "ORDER BY time DESC\nLIMIT 100"
)
EXAMPLE_SIGMA = """title: Whoami
logsource: {product: windows, category: process_creation}
detection:
    selection: {Image|endswith: '\\\\whoami.exe'}
    condition: selection
level: medium
"""
SIGMA_COLUMNS = ("timestamp", "rule_title", "level", "host", "record_id")


def router(console: Console) -> APIRouter:
    routes = console.routes()
    reader = console.reader("hunts:run")
    runner = console.writer("hunts:run")
    manager = console.writer("hunts:manage")
    hunts = console.context.hunts  # the API's places: one limit for both

    def page(request: Request, session: Session, status: int = 200, **values: Any) -> HTMLResponse:
        shown = {"sql": "", "sigma": "", "since": "", "result": None, "problem": "",
                 "mode": "sql", **values}  # fmt: skip
        return console.render(
            request,
            session,
            "hunt.html",
            status=status,
            saved=console.backend.saved_hunts(),
            example_sql=EXAMPLE_SQL,
            example_sigma=EXAMPLE_SIGMA,
            rows_most=ROWS,
            **shown,
        )

    async def run(request: Request, work: Any) -> tuple[dict[str, Any] | None, str, int]:
        """A hunt's answer, or the reason it gave none (a SQL error, a refused statement, a
        time limit, every hunt place taken) and the status to answer with."""
        try:
            return await hunts.run(request, work), "", 200
        except InputError as exc:
            return None, str(exc), 400
        except Unavailable as exc:
            return None, str(exc), 503

    @routes.get(f"{PREFIX}/hunt")
    async def hunt(
        request: Request,
        session: Annotated[Session, Depends(reader)],
        sql: Annotated[str, Query(max_length=100_000)] = "",
    ) -> HTMLResponse:
        """The hunt forms; with `sql`, that query run (a pivot from an alert links here)."""
        if not sql.strip():
            return await run_in_threadpool(page, request, session)
        found, problem, status = await run(
            request, lambda cancel: console.backend.hunt_sql(sql, limit=ROWS, cancel=cancel)
        )
        return await run_in_threadpool(
            page, request, session, status, sql=sql, result=table(found), problem=problem
        )

    @routes.post(f"{PREFIX}/hunt/sigma")
    async def hunt_sigma(
        request: Request,
        session: Annotated[Session, Depends(runner)],
        rule: Annotated[str, Form(min_length=1, max_length=1_000_000)],
        since: Annotated[str, Form(max_length=64)] = "",
    ) -> HTMLResponse:
        """A Sigma retro-hunt, its detections shown as a table (not stored: a read)."""
        found, problem, status = await run(
            request,
            lambda cancel: console.backend.hunt_sigma(
                rule, since=since.strip() or None, cancel=cancel
            ),
        )
        return await run_in_threadpool(
            page, request, session, status, mode="sigma", sigma=rule, since=since,
            result=table(found), problem=problem,
        )  # fmt: skip

    @routes.post(f"{PREFIX}/hunt/saved")
    async def save(
        session: Annotated[Session, Depends(manager)],
        name: Annotated[str, Form(max_length=128)],
        query: Annotated[str, Form(max_length=100_000)] = "",
        sigma: Annotated[str, Form(max_length=1_000_000)] = "",
        every_seconds: Annotated[int, Form()] = 3600,
    ) -> RedirectResponse:
        """Keep the current query (SQL or Sigma) as a saved hunt, as POST
        /api/v1/hunts/saved does; its notebook is next."""
        try:
            body = SavedHunt(
                name=name.strip(),
                query=query if query.strip() else None,
                sigma=sigma if sigma.strip() else None,
                every_seconds=every_seconds,
            )
        except ValidationError as exc:
            reasons = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise InputError(f"the hunt cannot be saved: {reasons}") from None
        await run_in_threadpool(
            lambda: console.backend.save_hunt(
                body.name, query=body.query, sigma=body.sigma, every_seconds=body.every_seconds
            )
        )
        return console.back(notebook_path(body.name))

    @routes.post(f"{PREFIX}/hunt/{{name}}/delete")
    async def delete(
        session: Annotated[Session, Depends(manager)],
        name: Annotated[str, Path(max_length=128, pattern=NAME)],
    ) -> RedirectResponse:
        if not await run_in_threadpool(console.backend.delete_hunt, name):
            raise NotFound(f"no saved hunt {name!r}")
        return console.back(f"{PREFIX}/hunt")

    @routes.get(f"{PREFIX}/hunt/{{name}}")
    def notebook(
        request: Request,
        session: Annotated[Session, Depends(reader)],
        name: Annotated[str, Path(max_length=128, pattern=NAME)],
    ) -> HTMLResponse:
        """A saved hunt and its notebook: queries with their results and notes, in order."""
        hunt = console.backend.hunt_notebook(name)
        entries = [{**entry, "table": table(entry["result"])} for entry in hunt["notebook"]]
        return console.render(request, session, "hunt_notebook.html", hunt=hunt, entries=entries)

    @routes.post(f"{PREFIX}/hunt/{{name}}/run")
    async def run_in_notebook(
        request: Request,
        session: Annotated[Session, Depends(manager)],
        name: Annotated[str, Path(max_length=128, pattern=NAME)],
        kind: Annotated[str, Form(pattern="^(sql|sigma)$")],
        text: Annotated[str, Form(min_length=1, max_length=1_000_000)],
        since: Annotated[str, Form(max_length=64)] = "",
    ) -> RedirectResponse:
        """Run a query from the notebook: kept in it with what it found (or its error)."""
        await hunts.run(
            request,
            lambda cancel: console.backend.add_hunt_note(
                name,
                kind=kind,
                text=text,
                author=session.principal.name,
                since=since.strip() or None,
                cancel=cancel,
            ),
        )
        return console.back(notebook_path(name) + "#latest")

    @routes.post(f"{PREFIX}/hunt/{{name}}/note")
    async def note(
        session: Annotated[Session, Depends(manager)],
        name: Annotated[str, Path(max_length=128, pattern=NAME)],
        text: Annotated[str, Form(min_length=1, max_length=100_000)],
    ) -> RedirectResponse:
        await run_in_threadpool(
            lambda: console.backend.add_hunt_note(
                name, kind="note", text=text, author=session.principal.name
            )
        )
        return console.back(notebook_path(name) + "#latest")

    return routes


def cell(value: Any) -> str | None:
    """A result's value as the table shows it (a time in UTC, to the microsecond if any)."""
    if isinstance(value, datetime):
        naive: datetime = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
        return naive.isoformat(" ", timespec="microseconds" if naive.microsecond else "seconds")
    return None if value is None else str(value)


def notebook_path(name: str) -> str:
    return f"{PREFIX}/hunt/{quote(name, safe='')}"


def table(found: dict[str, Any] | None) -> dict[str, Any] | None:
    """A hunt's answer (SQL: columns and rows; Sigma: detections; a notebook's summary) as
    the page's table: columns, at most ROWS rows, how many, seconds, truncated, or error."""
    if found is None:
        return None
    if "error" in found:
        return {"error": found["error"]}
    if "detections" in found:
        columns = list(SIGMA_COLUMNS)
        rows = [[d.get(c) for c in columns] for d in found["detections"]]
    else:
        columns, rows = found["columns"], found["rows"]
    return {
        "columns": columns,
        "rows": [[cell(value) for value in row] for row in rows[:ROWS]],
        "count": found.get("count", len(rows)),
        "seconds": found.get("seconds"),
        "truncated": bool(found.get("truncated")) or len(rows) > ROWS,
    }


__all__ = ["router"]
