"""Scenario files are checked before anything is sent; labelled data sets make one scenario a
recording; an alert matches by technique (its sub-techniques too) or tactic."""

from __future__ import annotations

import pytest

from vigil.errors import Invalid
from vigil.exercise import Expect, Scenario, Step, labelled, load, matches

GOOD = """
scenarios:
  - id: lsass
    name: LSASS read
    steps: [{replay: "windows/x.evtx.gz"}]
    expect: {techniques: [T1003], within_s: 5}
"""


def test_a_scenario_file_is_read_and_its_problems_named(tmp_path) -> None:
    path = tmp_path / "s.yml"
    path.write_text(GOOD)
    (scenario,) = load(path)
    assert scenario.expect.within_s == 5 and scenario.techniques == ("T1003",)
    for bad, problem in (
        (GOOD.replace("windows/x", "../../etc/passwd"), "under the data folder"),
        (GOOD.replace("T1003", "credential dumping"), "techniques"),
        (GOOD + GOOD.split("scenarios:")[1], "used twice"),
        (GOOD.replace("within_s: 5", "within_s: 0"), "within_s"),
        ("scenarios: [", "cannot read"),
    ):
        path.write_text(bad)
        with pytest.raises(Invalid, match=problem):
            load(path)


def test_matching_by_technique_sub_technique_or_tactic() -> None:
    scenario = Scenario(
        id="s",
        name="s",
        steps=(Step(replay="x"),),
        expect=Expect(techniques=("T1003",), tactics=("credential-access",), within_s=60),
    )
    assert matches(["attack.t1003.001"], scenario)
    assert matches(["attack.credential-access"], scenario)
    assert not matches(["attack.t10030"], scenario)
    assert not matches(["attack.t1059", "attack.execution"], scenario)


def test_labelled_recordings_make_scenarios(need_data) -> None:
    root = need_data("windows", "evtx-to-mitre-attack").parent.parent
    scenarios = list(labelled(root))
    assert len(scenarios) == 268  # of 281 files, 13 carry no tactic (Antivirus, APT steps)
    lsass = next(s for s in scenarios if "ID10-Mimikatz LSASS process dump" in s.name)
    assert lsass.expect.techniques == ("T1003",)
    assert lsass.expect.tactics == ("credential-access",)
