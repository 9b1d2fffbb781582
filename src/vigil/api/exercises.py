"""Routes over exercise results and ATT&CK coverage: `vigil exercise run` reports its results
(`POST /api/v1/exercises`, the `results.json` document, its shape checked), runs are listed
and read back, and the matrix of the loaded rules and the latest exercise is served
(`GET /api/v1/coverage`), as the console's coverage page shows it."""

# No `from __future__ import annotations`: FastAPI reads the routes' signatures.
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vigil.api.auth import Principal
from vigil.api.context import BIGINT, Context
from vigil.errors import InputError, NotFound

Count = Annotated[int, Field(ge=0, le=BIGINT)]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Text = Annotated[str, Field(max_length=2000)]
Names = Annotated[list[Annotated[str, Field(max_length=1000)]], Field(max_length=10_000)]
# what an exercise scores: a technique (T1003, T1003.001) or a tactic (credential-access)
Key = Annotated[str, Field(pattern=r"^(T\d{4}(\.\d{3})?|[a-z][a-z_-]{2,39})$")]
MOST_SCENARIOS = 100_000


class Scored(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tested: Count
    detected: Count
    rules: Names = []

    @model_validator(mode="after")
    def _within(self) -> "Scored":
        if self.detected > self.tested:
            raise ValueError("more detected than tested")
        return self


class Gap(BaseModel):
    model_config = ConfigDict(extra="ignore")

    technique: Key
    missed: Count
    tested: Count
    rules: Count  # rules loaded that name it
    why: Text


class Scenario(BaseModel):
    """One scenario's outcome (`vigil.exercise.run.Outcome`)."""

    model_config = ConfigDict(extra="ignore")

    id: Text
    name: Text
    techniques: list[Key] = Field([], max_length=1000)
    tactics: list[Key] = Field([], max_length=100)
    records: Count = 0
    detected: bool = False
    time_to_detect_s: Seconds | None = None
    incident: Annotated[str, Field(max_length=200)] | None = None
    time_to_incident_s: Seconds | None = None
    contained: bool = False
    time_to_contain_s: Seconds | None = None
    passed: bool = False
    rules: Names = []
    other_rules: Names = []
    fired: list[dict[str, Any]] = Field([], max_length=1000)
    problem: Text | None = None


class Results(BaseModel):
    """An exercise run's results as `vigil exercise run` writes them (`results.json`)."""

    model_config = ConfigDict(extra="ignore")

    url: Text
    started: Seconds
    finished: Seconds
    tested: Count
    detected: Count
    passed: Count
    coverage: float = Field(ge=0, le=1, allow_inf_nan=False)
    mttd_s: Seconds | None = None
    mttc_s: Seconds | None = None
    by_technique: dict[Key, Scored] = Field(max_length=MOST_SCENARIOS)
    gaps: list[Gap] = Field([], max_length=MOST_SCENARIOS)
    scenarios: list[Scenario] = Field(max_length=MOST_SCENARIOS)

    @model_validator(mode="after")
    def _within(self) -> "Results":
        if self.detected > self.tested or self.passed > self.tested:
            raise ValueError("more detected or passed than tested")
        return self


def results_of(body: bytes | bytearray) -> dict[str, Any]:
    """An exercise's `results.json` from a request body, its shape checked (InputError
    naming the first problems); unknown fields are dropped."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"the results are not JSON: {exc}") from None
    try:
        return Results.model_validate(doc).model_dump(mode="json")
    except ValidationError as exc:
        where = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'the document'}: {e['msg']}"
            for e in exc.errors()[:5]
        )
        raise InputError(f"not an exercise's results.json: {where}") from None


def router(context: Context) -> APIRouter:
    backend, require = context.backend, context.require
    routes = APIRouter()

    @routes.post("/api/v1/exercises", status_code=201, tags=["exercises"])
    async def report(
        request: Request,
        who: Annotated[Principal, Depends(require("exercises:write"))],
        name: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    ) -> dict[str, Any]:
        """An exercise run's results (the body: `results.json` as `vigil exercise run`
        writes it, which posts it itself); kept for the coverage page. 400 naming what is
        wrong with the document, 413 past the body limit."""
        results = await run_in_threadpool(results_of, await context.body(request))
        results["reported_by"] = who.name
        named = name or f"exercise against {results['url']}"
        return await run_in_threadpool(backend.exercise_runs.add, results, name=named)

    @routes.get("/api/v1/exercises", tags=["exercises"])
    def runs(
        _: Annotated[Principal, Depends(require("rules:read"))],
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        offset: Annotated[int, Query(ge=0, le=BIGINT)] = 0,
    ) -> list[dict[str, Any]]:
        """Runs reported, newest first, with their figures (tested, detected, passed,
        coverage, mttd_s, mttc_s)."""
        return backend.exercise_runs.list(limit=limit, offset=offset)

    @routes.get("/api/v1/exercises/latest", tags=["exercises"])
    def latest(_: Annotated[Principal, Depends(require("rules:read"))]) -> dict[str, Any]:
        """The run reported last, with its whole results (404 before any)."""
        found = backend.exercise_runs.latest()
        if found is None:
            raise NotFound("no exercise results reported yet (vigil exercise run posts them)")
        return found

    @routes.get("/api/v1/exercises/{run_id}", tags=["exercises"])
    def one(
        run_id: Annotated[str, Path(max_length=64)],
        _: Annotated[Principal, Depends(require("rules:read"))],
    ) -> dict[str, Any]:
        found = backend.exercise_runs.get(run_id)
        if found is None:
            raise NotFound("no such exercise run")
        return found

    @routes.get("/api/v1/coverage", tags=["exercises"])
    def coverage(
        _: Annotated[Principal, Depends(require("rules:read"))], all: bool = False
    ) -> dict[str, Any]:
        """The ATT&CK Enterprise matrix: per tactic, the techniques a loaded rule names or
        the latest exercise tested (`all`: every technique), each with its rules, its
        exercise figures and its state (detected, partly, missed, rule, none); the counts;
        the latest exercise's figures and gaps."""
        return backend.attack_coverage(everything=all)

    return routes
