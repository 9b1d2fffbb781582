"""Exercise runs kept in the state database, on SQLite and PostgreSQL: listed newest first
with their figures read out of the stored document by the database itself (a JSON null
stays None), the latest and one run read back whole."""

from __future__ import annotations

import pytest

from vigil.store import state_engine
from vigil.store.exercises import ExerciseRuns

RUN = {
    "url": "http://vigil.test", "started": 1.5, "finished": 9.0, "tested": 3, "detected": 2,
    "passed": 1, "coverage": 0.3333, "mttd_s": None, "mttc_s": 2.5,
    "by_technique": {"T1003": {"tested": 1, "detected": 1, "rules": ["r"]}}, "scenarios": [],
}  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def runs(request, tmp_path) -> ExerciseRuns:
    if request.param == "sqlite":
        return ExerciseRuns(state_engine(tmp_path))
    return ExerciseRuns(state_engine(request.getfixturevalue("postgres_url")))


def test_runs_are_listed_with_their_figures_and_read_back_whole(runs) -> None:
    assert runs.latest() is None and runs.list() == [] and runs.count() == 0
    first = runs.add(RUN, name="first", at=100.0)
    second = runs.add({**RUN, "mttd_s": 0.75, "tested": 4}, name="second", at=200.0)
    listed = runs.list()
    assert [r["name"] for r in listed] == ["second", "first"]
    assert listed[1] == first == {
        "id": first["id"], "at": 100.0, "name": "first", "url": "http://vigil.test",
        "started": 1.5, "finished": 9.0, "tested": 3, "detected": 2, "passed": 1,
        "coverage": 0.3333, "mttd_s": None, "mttc_s": 2.5,
    }  # fmt: skip
    assert (listed[0]["mttd_s"], listed[0]["tested"]) == (0.75, 4)
    assert runs.list(limit=1, offset=1) == [listed[1]] and runs.count() == 2
    latest = runs.latest()
    assert latest is not None and latest["id"] == second["id"]
    assert latest["results"]["by_technique"] == RUN["by_technique"]
    one = runs.get(first["id"])
    assert one is not None and one["results"] == RUN
    assert runs.get("none") is None
