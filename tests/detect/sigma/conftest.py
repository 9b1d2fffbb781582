"""Helpers for Sigma engine unit tests: build rules from short YAML snippets, ask whether an
event matches, run correlations.

Expected results in the tests come from the Sigma specification
(/work/shared/docs/sigma-specification/specification/*.md), never from engine output.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from vigil.detect.sigma import CorrelationEngine, Fired, Hit, LoadedRules, rules_from_text
from vigil.events import Event

# A product with no routing table: a rule for it applies to every event tagged with it, so
# modifier and condition tests are not concerned with logsource routing.
PRODUCT = "testprod"
RULE_ID = "5f0e7c39-4a8e-4f43-9c55-0d7a1b2c3d4e"


def _indent(block: str, spaces: int) -> str:
    return textwrap.indent(textwrap.dedent(block).strip("\n"), " " * spaces)


def rule_yaml(
    detection: str,
    *,
    rule_id: str = RULE_ID,
    title: str = "Test rule",
    logsource: str = f"product: {PRODUCT}",
    name: str | None = None,
    level: str = "medium",
) -> str:
    """One Sigma rule document; `detection` and `logsource` are YAML blocks (any indentation)."""
    lines = [f"title: {title}", f"id: {rule_id}"]
    if name:
        lines.append(f"name: {name}")
    lines += ["logsource:", _indent(logsource, 4), "detection:", _indent(detection, 4)]
    lines.append(f"level: {level}")
    return "\n".join(lines) + "\n"


def make_event(
    fields: Mapping[str, Any],
    *,
    product: str = PRODUCT,
    time: float | None = None,
    record: int = 1,
) -> Event:
    return Event(fields=dict(fields), source="test", record=record, time=time, product=product)


def describe_problems(loaded: LoadedRules) -> str:
    return "; ".join(f"{p.rule_id} {p.title}: {p.reason}" for p in loaded.plan.problems)


@dataclass
class SingleRule:
    """A one-rule engine that answers "does this event match"."""

    loaded: LoadedRules

    def matches(self, fields: Mapping[str, Any], *, product: str = PRODUCT) -> bool:
        found = list(self.loaded.engine.match([make_event(fields, product=product)]))
        return bool(found)


@pytest.fixture
def sigma_rule() -> Callable[..., SingleRule]:
    """`sigma_rule(detection_yaml, placeholders=..., logsource=...)`: a compiled single rule;
    fails the test if the rule does not load."""

    def build(
        detection: str,
        *,
        placeholders: dict[str, list[str]] | None = None,
        logsource: str = f"product: {PRODUCT}",
    ) -> SingleRule:
        loaded = rules_from_text(
            rule_yaml(detection, logsource=logsource), placeholders=placeholders
        )
        assert not loaded.plan.problems, describe_problems(loaded)
        assert len(loaded.plan.rules) == 1
        return SingleRule(loaded)

    return build


def matching_rule_ids(loaded: LoadedRules, fields: Mapping[str, Any], **kw: Any) -> list[str]:
    """The ids of the rules that match one event (one entry per match)."""
    return [
        loaded.plan.rules[m.rule].rule_id for m in loaded.engine.match([make_event(fields, **kw)])
    ]


def run_correlations(loaded: LoadedRules, events: Iterable[Event]) -> list[Fired]:
    """Match events (in time order) and feed every base match to the correlation engine;
    returns every correlation that fired, including windows still open at the end."""
    engine = CorrelationEngine(loaded.plan.correlations)
    fired: list[Fired] = []
    ordered = sorted(events, key=lambda e: e.time or 0.0)
    for match in loaded.engine.match(ordered):
        event = match.event
        hit = Hit(
            event.time or 0.0,
            ("rule", match.rule),
            match.rule_fields(),
            ((event.source, event.record),),
        )
        fired.extend(engine.feed(hit))
    fired.extend(engine.finish())
    return fired


# Fixtures hand out the helpers (test modules cannot import conftest reliably without
# __init__.py files).


@pytest.fixture(scope="session")
def make_rule_yaml() -> Callable[..., str]:
    return rule_yaml


@pytest.fixture(scope="session")
def event() -> Callable[..., Event]:
    return make_event


@pytest.fixture(scope="session")
def ids_matching() -> Callable[..., list[str]]:
    return matching_rule_ids


@pytest.fixture(scope="session")
def correlate() -> Callable[[LoadedRules, Iterable[Event]], list[Fired]]:
    return run_correlations
