"""Exercises: scenarios replayed against a running Vigil from outside, scored per scenario
and per ATT&CK technique (detected, time to detect, which rule), with a Navigator layer, a
report with the trend across runs, and a gate on coverage."""

from vigil.exercise.report import html_report, markdown, navigator_layer, write
from vigil.exercise.run import Outcome, Result, matches, run
from vigil.exercise.scenario import Expect, Scenario, Step, labelled, load

__all__ = [
    "Expect",
    "Outcome",
    "Result",
    "Scenario",
    "Step",
    "html_report",
    "labelled",
    "load",
    "markdown",
    "matches",
    "navigator_layer",
    "run",
    "write",
]
