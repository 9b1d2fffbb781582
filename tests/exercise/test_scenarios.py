"""Scenario files are checked before anything is sent; labelled data sets make one scenario a
recording; an alert matches by technique (its sub-techniques too) or tactic."""

from __future__ import annotations

import itertools
import sys
import time
from datetime import datetime

import httpx
import orjson
import pytest

from vigil.errors import Invalid
from vigil.events import parse_time
from vigil.exercise import Expect, Scenario, Step, labelled, load, matches, run
from vigil.exercise.recordings import latest, records, shifted

DATASET = "windows/evtx-to-mitre-attack"
LSASS = "TA0006-Credential Access/T1003-Credential dumping/ID10-Mimikatz LSASS process dump.evtx.gz"
STRATUS = "aws.credential-access.ec2-get-password-data.json"

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
        (GOOD.replace("techniques: [T1003], ", ""), "nothing could match"),
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


def test_a_replay_is_moved_to_now_its_spacing_kept(need_data) -> None:
    root = need_data("windows", "evtx-to-mitre-attack").parent.parent
    now = 1_800_000_000.0
    evtx = records(root / DATASET / LSASS)
    moved = [orjson.loads(r) for r in shifted(evtx, now)]
    stamps = [
        datetime.fromisoformat(
            d["Event"]["System"]["TimeCreated"]["#attributes"]["SystemTime"]
        ).timestamp()
        for d in moved
    ]
    before = [
        datetime.fromisoformat(
            orjson.loads(r)["Event"]["System"]["TimeCreated"]["#attributes"]["SystemTime"]
        ).timestamp()
        for r in evtx
    ]
    assert max(stamps) == pytest.approx(now)
    assert [b - a for a, b in itertools.pairwise(stamps)] == pytest.approx(
        [b - a for a, b in itertools.pairwise(before)], abs=1e-3
    )
    trail = records(root / "cloud" / "stratus-red-team" / STRATUS)
    assert len(trail) == 34  # the detonation's CloudTrail records
    times = [orjson.loads(r)["eventTime"] for r in shifted(trail, now)]
    assert max(times) == "2027-01-15T08:00:00Z"


def test_stratus_labels_make_scenarios_by_tactic_name(need_data) -> None:
    root = need_data("cloud", "stratus-red-team").parent.parent
    scenarios = {s.name: s for s in labelled(root, "cloud/stratus-red-team")}
    assert len(scenarios) == 35
    steal = scenarios["aws.credential-access.ec2-steal-instance-credentials.json"]
    assert steal.expect.tactics == ("credential-access",)
    assert steal.expect.techniques == ("T1552.005",)


def test_the_html_report_draws_its_charts_and_escapes_what_the_data_names() -> None:
    from html.parser import HTMLParser

    from vigil.exercise import Outcome, Result, html_report

    result = Result("http://vigil.test", 1_800_000_000.0, 1_800_000_060.0)
    result.outcomes = [
        Outcome("a", "a.evtx", ["T1003"], [], 10, True, 0.4, passed=True),
        Outcome("b", "<script>alert(1)</script>.evtx", ["T1003"], [], 10, False),
        Outcome("c", "c.evtx", ["T1059"], [], 10, True, 1.2, passed=True),
    ]
    result.gaps = [{"technique": "T1003", "missed": 1, "tested": 2, "why": "<b>no rule</b>"}]
    page = html_report(result, [result.as_dict()])

    class Tags(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[str] = []

        def handle_starttag(self, tag: str, attrs: object) -> None:
            self.seen.append(tag)

    parsed = Tags()
    parsed.feed(page)
    assert parsed.seen.count("svg") == 3  # by technique, time to detect, trend
    assert "script" not in parsed.seen and "b" not in parsed.seen  # data is text, not markup
    assert "&lt;script&gt;" in page and "1/2" in page and "1/1" in page
    assert "3 scenarios, 2 detected, 2 passed (66.7%), MTTD 0.80 s" in page


def test_an_otrf_zip_is_replayed_member_by_member_its_flat_times_moved(need_data) -> None:
    root = need_data("windows", "otrf-security-datasets").parent.parent
    mordor = "windows/otrf-security-datasets"
    zipped = root / mordor / "credential_access/host/cmd_lsass_memory_dumpert_syscalls.zip"
    lines = records(zipped)
    assert len(lines) == 118  # `unzip -p ... | wc -l`: one JSON line an event
    now = 1_800_000_000.0
    moved = [orjson.loads(r)["TimeCreated"] for r in shifted(lines, now)]
    stamps = [datetime.fromisoformat(t).timestamp() for t in moved]
    # from 10:56:05.751 to 10:56:18.955 in the recording: the same 13.204 s, ending now
    assert max(stamps) == pytest.approx(now) and min(stamps) == pytest.approx(now - 13.204)
    scenarios = list(labelled(root, mordor))
    assert len(scenarios) == 44  # of 45, one names no technique (T0000)
    assert all("T0000" not in s.expect.techniques for s in scenarios)


def test_a_step_replays_or_fires_and_fire_needs_consent(tmp_path) -> None:
    path = tmp_path / "s.yml"
    fire = GOOD.replace('{replay: "windows/x.evtx.gz"}', "{fire: [nmap, -sS, 10.0.0.2]}")
    path.write_text(fire)
    (scenario,) = load(path)
    assert scenario.live and scenario.steps[0].fire == ("nmap", "-sS", "10.0.0.2")
    for bad in (
        GOOD.replace('{replay: "windows/x.evtx.gz"}', "{replay: x, fire: [nmap]}"),
        GOOD.replace('{replay: "windows/x.evtx.gz"}', "{shift_time: false}"),
        GOOD.replace('{replay: "windows/x.evtx.gz"}', "{fire: []}"),
    ):
        path.write_text(bad)
        with pytest.raises(Invalid, match="steps"):
            load(path)
    # without consent nothing is run: the scenario is kept with the reason
    asked: list[str] = []

    def vigil(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return httpx.Response(200, json=[])

    client = httpx.Client(base_url="http://vigil", transport=httpx.MockTransport(vigil))
    result = run(client, [scenario], data=tmp_path)
    (outcome,) = result.outcomes
    assert outcome.problem is not None and "--live-fire" in outcome.problem
    assert outcome.fired == [] and asked == ["/api/v1/rules"] and result.tested == []


def test_recordings_replayed_together_keep_their_timeline(need_data) -> None:
    root = need_data("cloud", "stratus-red-team")
    early = records(root / STRATUS)
    late = records(root / "aws.defense-evasion.cloudtrail-stop.json")
    first, second = latest(early), latest(late)
    assert first is not None and second is not None and first != second
    now = 1_800_000_000.0
    newest = max(first, second)
    moved = [max(parse_time(orjson.loads(r)["eventTime"]) for r in shifted(lines, now, newest))
             for lines in (early, late)]  # fmt: skip
    assert moved == pytest.approx([now - (newest - first), now - (newest - second)])


def test_a_fire_step_runs_its_arguments_as_given_and_is_stopped_in_time(tmp_path) -> None:
    said = "import sys; print(repr(sys.argv[1:]), file=sys.stderr)"
    sleeper = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', " \
        "'import time; time.sleep(30)']); time.sleep(30)"  # fmt: skip
    scenario = Scenario(
        id="live",
        name="live",
        steps=(
            Step(fire=(sys.executable, "-c", said, "; id", "$(id)", "`id`")),
            Step(fire=(sys.executable, "-c", sleeper), timeout_s=1.0),
        ),
        expect=Expect(techniques=("T1046",), within_s=0.5),
    )
    client = httpx.Client(
        base_url="http://vigil",
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=[])),
    )
    started = time.monotonic()
    (outcome,) = run(client, [scenario], data=tmp_path, live_fire=True).outcomes
    assert time.monotonic() - started < 10  # the sleeper and its child stopped at 1 s
    literal, stopped = outcome.fired
    assert literal["exit"] == 0 and literal["said"] == "['; id', '$(id)', '`id`']"  # no shell
    assert stopped["stopped"] and stopped["exit"] is None
    assert outcome.problem is None and not outcome.detected
    missing = Scenario(
        id="m", name="m", steps=(Step(fire=("/nonexistent/nmap",)),), expect=scenario.expect
    )
    (gone,) = run(client, [missing], data=tmp_path, live_fire=True).outcomes
    assert gone.problem is not None and "cannot run '/nonexistent/nmap'" in gone.problem
