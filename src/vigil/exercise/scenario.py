"""Exercise scenarios as data: what is sent, and what must follow.

A scenario file (YAML) holds a list of scenarios:

    scenarios:
      - id: lsass-dump
        name: Mimikatz dumps LSASS
        steps:
          - replay: windows/lsass-dump.evtx.gz   # a recording under the data folder
        expect:
          techniques: [T1003]        # an alert tagged with one of them (or a sub-technique)
          tactics: [credential-access]   # or with one of these tactics
          within_s: 30               # time to detect, at most
          incident: true             # an incident holds it (optional)
          contained: true            # and a playbook contained it (optional)

A replay step names a recording under the data folder (`--data`); its records are sent to
Vigil as they are, in order. A live-fire step runs a real tool against a test host whose logs
Vigil reads (its syslog listener, a tailed file), as an argument list (never through a
shell), and runs only when the run is told it may (`vigil exercise run --live-fire`):

          - fire: [ip, netns, exec, attacker, nmap, -sS, -p, 1-1000, 10.0.0.2]
            timeout_s: 120           # stopped past this (default 300)

Scenarios for a labelled data set are made from its labels (`labelled`): each recording
expects the tactic and technique its folder names.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import orjson
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from vigil.errors import Invalid
from vigil.intel.attack import AttackKB

MAX_SCENARIO_BYTES = 4 << 20
Name = Annotated[str, Field(min_length=1, max_length=200)]
TECHNIQUE = re.compile(r"T\d{4}(\.\d{3})?")


Argument = Annotated[str, Field(max_length=4096, pattern=r"^[^\x00]*$")]


class Step(BaseModel):
    """A recording to replay, or a command to fire (a real tool run against a test host,
    whose logs reach Vigil through its listeners: live fire)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    replay: Annotated[str, Field(min_length=1, max_length=1000)] | None = None
    shift_time: bool = True  # its time stamps moved so its last record is now
    fire: tuple[Argument, ...] | None = Field(default=None, min_length=1, max_length=256)
    timeout_s: float = Field(default=300.0, gt=0, le=3600)  # a command still running is stopped

    @field_validator("replay")
    @classmethod
    def _inside(cls, value: str | None) -> str | None:
        if value is not None and (Path(value).is_absolute() or ".." in Path(value).parts):
            raise ValueError("a replay names a recording under the data folder")
        return value

    @model_validator(mode="after")
    def _one(self) -> Step:
        if (self.replay is None) == (self.fire is None):
            raise ValueError("a step either replays a recording or fires a command")
        return self


class Expect(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    techniques: tuple[Annotated[str, Field(pattern=rf"^{TECHNIQUE.pattern}$")], ...] = ()
    tactics: tuple[Annotated[str, Field(pattern=r"^[a-z-]{3,40}$")], ...] = ()
    within_s: float = Field(60.0, gt=0, le=3600)
    incident: bool = False  # a matching alert must be in an incident (within `within_s`)
    contained: bool = False  # and that incident contained by a playbook (within `within_s`)

    @model_validator(mode="after")
    def _something(self) -> Expect:
        if not self.techniques and not self.tactics:
            raise ValueError("expect names no technique and no tactic: nothing could match")
        return self


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(min_length=1, max_length=300, pattern=r"^[^\x00-\x1f\x7f]+$")]
    name: Name
    steps: tuple[Step, ...] = Field(min_length=1, max_length=1000)
    expect: Expect

    @property
    def techniques(self) -> tuple[str, ...]:
        """What it tests: its techniques, else its tactics."""
        return self.expect.techniques or self.expect.tactics

    @property
    def live(self) -> bool:
        """Whether it fires commands (live fire) rather than only replaying recordings."""
        return any(step.fire is not None for step in self.steps)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scenarios: list[Scenario] = Field(min_length=1, max_length=100_000)


def load(path: Path) -> list[Scenario]:
    """The scenarios of a file; Invalid names the problem."""
    try:
        if path.stat().st_size > MAX_SCENARIO_BYTES:
            raise Invalid(f"{path}: larger than {MAX_SCENARIO_BYTES:,} bytes")
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        scenarios = _File.model_validate(doc).scenarios
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise Invalid(f"{path}: cannot read: {exc}") from None
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise Invalid(f"{path}: {where}") from None
    ids = [s.id for s in scenarios]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise Invalid(f"{path}: scenario ids used twice: {', '.join(twice)}")
    return scenarios


def labelled(data: Path, dataset: str = "windows/evtx-to-mitre-attack") -> Iterator[Scenario]:
    """A scenario for each recording of a labelled data set (its `labels.jsonl`: one row a
        file with the `tactics` and `techniques` its folder names); unlabelled files are left
        out. Each expects an alert carrying the labelled technique or tactic. Tactics are read as
    ATT&CK ids (TA0006) or names (Credential Access), techniques from `techniques` or
    `technique_ids`."""
    folder = data / dataset
    try:
        lines = (folder / "labels.jsonl").read_bytes().splitlines()
    except OSError as exc:
        raise Invalid(f"{folder}: no labels.jsonl: {exc}") from None
    for line in lines:
        if not line.strip():
            continue
        row = orjson.loads(line)
        named = (tactic_shortname(t) for t in row.get("tactics") or ())
        tactics = tuple(dict.fromkeys(t for t in named if t is not None))
        given = row.get("techniques") or row.get("technique_ids") or ()
        # ATT&CK's, not AWS's; not OTRF's T0000 (no technique named)
        techniques = tuple(t for t in given if TECHNIQUE.fullmatch(t) and t != "T0000")
        if not tactics and not techniques:
            continue
        yield Scenario(
            id=f"{dataset}:{row['file']}"[:300],
            name=row["file"],
            steps=(Step(replay=f"{dataset}/{row['file']}"),),
            expect=Expect(techniques=techniques, tactics=tactics, within_s=60.0),
        )


def tactic_shortname(tactic: str) -> str | None:
    """A tactic as ATT&CK tags write it, from its id (TA0006) or name (Credential Access):
    credential-access; None for no tactic of the knowledge base."""
    wanted = tactic.strip().lower()
    for known in AttackKB.load().tactics:
        if wanted in (known.id.lower(), known.name.lower(), known.shortname):
            return known.shortname
    return None


__all__ = ["Expect", "Scenario", "Step", "labelled", "load", "tactic_shortname"]
