"""Coverage: the ATT&CK matrix of the loaded rules and the latest exercise (tested, detected,
missed) with that exercise's gaps; the exercise history (MTTD, MTTC and detection per run)
and each run; the risk register and its roadmap. Read through the API's own calls
(`attack_coverage`, `exercise_runs`, `risk_register`); exercise results are reported as the
API takes them (`vigil.api.exercises.results_of`)."""

# No `from __future__ import annotations`: FastAPI reads the routes' signatures.
import re
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.datastructures import UploadFile

from vigil.api.context import BIGINT
from vigil.api.exercises import results_of
from vigil.errors import InputError, NotFound, TooLarge
from vigil.intel.attack import AttackKB
from vigil.web.console import PREFIX, Console
from vigil.web.sessions import Session

PAGE = f"{PREFIX}/coverage"
TECHNIQUE = re.compile(r"T\d{4}(\.\d{3})?")
HISTORY = 30  # runs drawn in the trends
RUNS = 50  # runs a page of the list
ASSETS = 50  # assets a page of the register
STEPS = 50  # roadmap steps shown
SCENARIOS = 500  # a run's scenarios shown
TITLES = 12  # rule titles in a cell's tooltip


def tooltip(cell: dict[str, Any]) -> str:
    """A cell's title: the technique, its rules (the first few), its exercise figures."""
    rules = cell["rules"]
    parts = [f"{cell['id']} {cell['name']}"]
    if rules:
        titles = "; ".join(r["title"] or r["rule_id"] for r in rules[:TITLES])
        more = f" (and {len(rules) - TITLES} more)" if len(rules) > TITLES else ""
        parts.append(f"{len(rules)} rule{'s' if len(rules) != 1 else ''}: {titles}{more}")
    else:
        parts.append("no rule")
    if cell["tested"]:
        parts.append(f"exercise: {cell['detected']} of {cell['tested']} detected")
    return " — ".join(parts)


def trend_label(at: float) -> str:
    return time.strftime("%m-%d %H:%M", time.gmtime(at))


def history(runs: list[dict[str, Any]]) -> dict[str, list[tuple[str, float | None]]]:
    """The trends of runs (oldest first): MTTD, MTTC, and the share detected, per run."""
    ordered = list(reversed(runs))
    return {
        "mttd": [(trend_label(r["at"]), r["mttd_s"]) for r in ordered],
        "mttc": [(trend_label(r["at"]), r["mttc_s"]) for r in ordered],
        "detection": [
            (trend_label(r["at"]), 100.0 * r["detected"] / r["tested"] if r["tested"] else None)
            for r in ordered
        ],
    }


def router(console: Console) -> APIRouter:
    routes = console.routes()
    reader = console.reader("rules:read")  # as GET /api/v1/coverage and /api/v1/exercises
    writer = console.writer("exercises:write")  # as POST /api/v1/exercises

    @routes.get(PAGE)
    def matrix(
        request: Request,
        session: Annotated[Session, Depends(reader)],
        all: bool = False,
        technique: Annotated[str | None, Query(max_length=20)] = None,
    ) -> HTMLResponse:
        backend = console.backend
        coverage = backend.attack_coverage(everything=all)
        chosen = technique.strip().upper() if technique else None
        selected = None
        if chosen is not None and TECHNIQUE.fullmatch(chosen):
            selected = detail(console, coverage, chosen)
        return console.render(
            request,
            session,
            "coverage.html",
            coverage=coverage,
            everything=all,
            selected=selected,
            tooltip=tooltip,
        )

    @routes.get(f"{PAGE}/exercises")
    def exercises(
        request: Request,
        session: Annotated[Session, Depends(reader)],
        offset: Annotated[int, Query(ge=0, le=BIGINT)] = 0,
    ) -> HTMLResponse:
        runs = console.backend.exercise_runs
        return console.render(
            request,
            session,
            "coverage_exercises.html",
            trends=history(runs.list(limit=HISTORY)),
            runs=runs.list(limit=RUNS, offset=offset),
            total=runs.count(),
            offset=offset,
            limit=RUNS,
        )

    @routes.post(f"{PAGE}/exercises", **console.upload())
    async def report(
        request: Request, session: Annotated[Session, Depends(writer)]
    ) -> RedirectResponse:
        """A `results.json` uploaded: checked and kept as `POST /api/v1/exercises` does."""
        form = await request.form()
        upload = form.get("results")
        if not isinstance(upload, UploadFile):
            raise InputError("choose the run's results.json")
        most = console.context.limits.max_bytes
        data = await upload.read(most + 1)
        if len(data) > most:
            raise TooLarge(f"the file is larger than {most:,} bytes")
        results = await run_in_threadpool(results_of, data)
        results["reported_by"] = session.principal.name
        given = form.get("name")
        name = (given.strip()[:256] if isinstance(given, str) else "") or (
            f"{upload.filename or 'results.json'} (uploaded)"
        )
        added = await run_in_threadpool(console.backend.exercise_runs.add, results, name=name)
        return console.back(f"{PAGE}/exercises/{added['id']}")

    @routes.get(f"{PAGE}/exercises/{{run_id}}")
    def run(
        request: Request, session: Annotated[Session, Depends(reader)], run_id: str
    ) -> HTMLResponse:
        found = console.backend.exercise_runs.get(run_id[:64])
        if found is None:
            raise NotFound("no such exercise run")
        results = found["results"]
        kb = AttackKB.load()
        names = {
            key: (t.name if (t := kb.active(key)) is not None else "")
            for key in results.get("by_technique", {})
            if TECHNIQUE.fullmatch(key)
        }
        scenarios = results.get("scenarios", [])
        return console.render(
            request,
            session,
            "coverage_run.html",
            run=found,
            results=results,
            names=names,
            scenarios=scenarios[:SCENARIOS],
            more=max(0, len(scenarios) - SCENARIOS),
        )

    @routes.get(f"{PAGE}/risk")
    def risk(
        request: Request,
        session: Annotated[Session, Depends(console.reader("assets:read"))],  # as /api/v1/risk
        offset: Annotated[int, Query(ge=0, le=BIGINT)] = 0,
    ) -> HTMLResponse:
        register = console.backend.risk_register()
        return console.render(
            request,
            session,
            "coverage_risk.html",
            assets=register.assets[offset : offset + ASSETS],
            total=len(register.assets),
            roadmap=register.roadmap[:STEPS],
            steps=len(register.roadmap),
            offset=offset,
            limit=ASSETS,
        )

    return routes


def detail(console: Console, coverage: dict[str, Any], ident: str) -> dict[str, Any]:
    """What the page shows of one technique: its cell (rules, sub-techniques, figures) and
    the latest exercise's scenarios that tested it."""
    kb = AttackKB.load()
    parent = ident.split(".")[0]
    known = kb.active(ident)
    cell = coverage["techniques"].get(parent)
    scenarios: list[dict[str, Any]] = []
    if coverage["exercise"] is not None and cell is not None and cell["tested"]:
        latest = console.backend.exercise_runs.latest()
        for outcome in (latest or {}).get("results", {}).get("scenarios", []):
            named = outcome.get("techniques") or []
            if any(t == ident or t.split(".")[0] == ident for t in named):
                scenarios.append(outcome)
                if len(scenarios) >= 100:
                    break
    return {
        "id": ident,
        "name": known.name if known is not None else None,
        "cell": cell,
        "scenarios": scenarios,
        "link": "https://attack.mitre.org/techniques/" + ident.replace(".", "/") + "/",
    }
