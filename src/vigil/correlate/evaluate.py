"""How well incidents separate an attack from the noise, on alert data sets labelled per
alert (the AIT Alert Data Set): alerts in, incidents out, the share of attack alerts that
land in incidents whose majority is attack, whether the riskiest incident is the attack, and
the time from each attack phase's start to its first alert (MTTD).

The phase windows come from the data set's `attacktimes.py`, read with `ast` (never run).
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vigil.correlate.model import AlertIn, Incident
from vigil.errors import InputError
from vigil.events import parse_time

BENIGN = "false_positive"
# phases `attacktimes.py` gives that are not attack steps
NOT_ATTACK = {"false_positive_test", "false_positive_same_day"}


def attack_phases(path: Path) -> dict[str, dict[str, tuple[float, float]]]:
    """{scenario: {phase: (start, end)}} from an `attacktimes.py` (a dict of dicts of
    `[datetime.strptime("YYYY-mm-dd HH:MM:SS", ...), ...]` pairs, all UTC)."""
    try:
        tree = ast.parse(path.read_text("utf-8"), str(path))
    except (OSError, SyntaxError) as exc:
        raise InputError(f"{path}: cannot read the attack times: {exc}") from exc
    table: ast.Dict | None = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            table = node.value
            break
    if table is None:
        raise InputError(f"{path}: no table of attack times found")
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for scenario_key, phases in zip(table.keys, table.values, strict=True):
        if not isinstance(scenario_key, ast.Constant) or not isinstance(phases, ast.Dict):
            continue
        windows: dict[str, tuple[float, float]] = {}
        for phase_key, pair in zip(phases.keys, phases.values, strict=True):
            stamps = [
                _stamp(n.value)
                for n in ast.walk(pair)
                if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value[:2] == "20"
            ]
            if isinstance(phase_key, ast.Constant) and len(stamps) == 2:
                windows[str(phase_key.value)] = (stamps[0], stamps[1])
        out[str(scenario_key.value)] = windows
    return out


def _stamp(text: str) -> float:
    moment = parse_time(text)  # "YYYY-mm-dd HH:MM:SS", UTC
    if moment is None:
        raise ValueError(f"not a time: {text!r}")
    return moment


@dataclass
class Evaluation:
    scenario: str
    alerts: int
    incidents: int
    attack_alerts: int
    attack_in_attack_incidents: int
    top_is_attack: bool
    top: dict[str, Any]
    mttd: dict[str, float | None] = field(default_factory=dict)  # phase → seconds

    @property
    def reduction(self) -> float:
        return self.alerts / self.incidents if self.incidents else 0.0

    @property
    def attack_share(self) -> float:
        return self.attack_in_attack_incidents / self.attack_alerts if self.attack_alerts else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "alerts": self.alerts,
            "incidents": self.incidents,
            "reduction": round(self.reduction, 1),
            "attack_alerts": self.attack_alerts,
            "attack_share": round(self.attack_share, 4),
            "top_is_attack": self.top_is_attack,
            "top": self.top,
            "mttd_s": self.mttd,
        }


def is_attack(alert: AlertIn, label: str = "time_label") -> bool:
    value = alert.labels.get(label)
    return bool(value) and value != BENIGN


def evaluate(
    scenario: str,
    incidents: Iterable[Incident],
    phases: dict[str, tuple[float, float]] | None = None,
    label: str = "time_label",
) -> Evaluation:
    ranked = sorted(incidents, key=lambda i: i.risk, reverse=True)
    alerts = attack = caught = 0
    first_of_phase: dict[str, float] = {}
    for incident in ranked:
        marks = [is_attack(a, label) for a in incident.alerts]
        majority = sum(marks) * 2 > len(marks)
        alerts += len(marks)
        attack += sum(marks)
        if majority:
            caught += sum(marks)
        for alert in incident.alerts:
            phase = alert.labels.get(label)
            if phase and phase != BENIGN and alert.time < first_of_phase.get(phase, float("inf")):
                first_of_phase[phase] = alert.time
    top = ranked[0] if ranked else None
    top_marks = [is_attack(a, label) for a in top.alerts] if top else []
    labels = Counter(str(a.labels.get(label)) for a in top.alerts) if top else Counter()
    mttd: dict[str, float | None] = {}
    for phase, (start, _end) in sorted((phases or {}).items(), key=lambda kv: kv[1][0]):
        if phase in NOT_ATTACK:
            continue
        seen = first_of_phase.get(phase)
        mttd[phase] = None if seen is None else round(seen - start, 1)
    return Evaluation(
        scenario=scenario,
        alerts=alerts,
        incidents=len(ranked),
        attack_alerts=attack,
        attack_in_attack_incidents=caught,
        top_is_attack=bool(top_marks) and sum(top_marks) * 2 > len(top_marks),
        top={
            "id": top.id if top else None,
            "alerts": len(top_marks),
            "risk": round(top.risk, 1) if top else None,
            "labels": dict(labels.most_common(4)),
            "entities": sorted(f"{k}:{v}" for k, v in top.entities) if top else [],
        },
        mttd=mttd,
    )
