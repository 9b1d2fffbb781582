"""Sigma detection: load rules with pySigma, compile them once into a plan, match events."""

from __future__ import annotations

import hashlib
import platform
import sys
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

from vigil.detect.sigma import cache, loader
from vigil.detect.sigma.compiler import RuleMeta
from vigil.detect.sigma.correlation import CorrelationEngine, CorrelationSpec, Fired, Hit
from vigil.detect.sigma.engine import Engine, Match
from vigil.detect.sigma.loader import RuleProblem
from vigil.detect.sigma.logsource import LogsourceMap
from vigil.detect.sigma.plan import Plan, build
from vigil.detect.sigma.regex import RegexStats


@dataclass
class LoadedRules:
    """A ready engine and how it was obtained."""

    engine: Engine
    plan: Plan
    seconds: float
    from_cache: bool

    @property
    def problems(self) -> list[RuleProblem]:
        return self.plan.problems


def _version_key(placeholders: dict[str, list[str]] | None, logsources: LogsourceMap) -> list[str]:
    """What besides the rules shapes a plan: versions, the platform, the logsource mapping, the
    compiler's own code (so a changed Vigil never reuses an old plan) and placeholder values."""
    hasher = hashlib.sha256()
    package = resources.files("vigil.detect.sigma")
    for name in sorted(p.name for p in package.iterdir() if p.name.endswith(".py")):
        hasher.update(package.joinpath(name).read_bytes())
    return [
        *(metadata.version(name) for name in _SHAPING_PACKAGES),
        sys.version,
        unicodedata.unidata_version,
        platform.machine(),
        hasher.hexdigest(),
        logsources.digest,
        repr(sorted((placeholders or {}).items())),
    ]


# Packages whose version can change what a plan holds or how it reads.
_SHAPING_PACKAGES = ("vigil", "pysigma", "hyperscan", "google-re2", "regex", "orjson")


def starter_rules() -> Path:
    """The folder of Vigil's own rules (endpoint, network, cloud, identity), shipped in the
    package."""
    return Path(__file__).resolve().parent.parent.parent / "rules"


def load_rules(
    folders: Iterable[str | Path],
    *,
    placeholders: dict[str, list[str]] | None = None,
    use_cache: bool = True,
    logsources: LogsourceMap | None = None,
) -> LoadedRules:
    """Load every rule under the folders into a ready engine, through the plan cache."""
    started = time.perf_counter()
    logsources = logsources or LogsourceMap.default()
    files = loader.collect_files(folders)
    key = loader.digest(files, *_version_key(placeholders, logsources))
    plan = cache.load(key) if use_cache else None
    from_cache = plan is not None
    if plan is None:
        plan = build(loader.parse(files), logsources, placeholders)
        if use_cache:
            cache.store(key, plan)
    engine = Engine(plan, logsources)
    return LoadedRules(engine, plan, time.perf_counter() - started, from_cache)


def rules_from_text(
    *documents: str,
    placeholders: dict[str, list[str]] | None = None,
    logsources: LogsourceMap | None = None,
) -> LoadedRules:
    """Compile rules given as YAML text (one string per file), without the cache.

    >>> loaded = rules_from_text(RULE_YAML)  # doctest: +SKIP
    >>> list(loaded.engine.match(events))  # doctest: +SKIP
    """
    started = time.perf_counter()
    logsources = logsources or LogsourceMap.default()
    files = [loader.RuleFile(f"<rule {i + 1}>", text.encode()) for i, text in enumerate(documents)]
    plan = build(loader.parse(files), logsources, placeholders)
    return LoadedRules(Engine(plan, logsources), plan, time.perf_counter() - started, False)


__all__ = [
    "CorrelationEngine",
    "CorrelationSpec",
    "Engine",
    "Fired",
    "Hit",
    "LoadedRules",
    "LogsourceMap",
    "Match",
    "Plan",
    "RegexStats",
    "RuleMeta",
    "RuleProblem",
    "load_rules",
    "rules_from_text",
    "starter_rules",
]
