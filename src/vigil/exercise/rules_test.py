"""Testing rules on data: each rule's own regression samples, and a false-positive baseline.

- Regression samples follow SigmaHQ's convention: a rule names an `info.yml` by its
  `regression_tests_path` (relative to the rule repository's root); the file lists samples
  (`regression_tests_info`: `path`, `match_count`) the rule must match exactly that many
  times.
- A baseline is benign logs: a rule that fires on it is named, with how often.

    report = check_rules(loaded, baselines=[Path("benign/")])
    report.failed   # samples whose count differs, and rules that fired on the baseline
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vigil.detect.sigma import LoadedRules
from vigil.errors import Invalid
from vigil.scan import scan_inputs

MAX_INFO_BYTES = 1 << 20


@dataclass
class SampleResult:
    rule_id: str
    title: str
    sample: str
    expected: int
    found: int | None  # None: the sample could not be read
    problem: str | None = None

    @property
    def passed(self) -> bool:
        return self.found == self.expected


@dataclass
class RulesTest:
    samples: list[SampleResult] = field(default_factory=list)
    baseline: Counter[str] = field(default_factory=Counter)  # rule title → alerts
    without_samples: int = 0  # rules that name no regression samples

    @property
    def failed(self) -> bool:
        return bool(self.baseline) or any(not s.passed for s in self.samples)

    def as_dict(self) -> dict[str, Any]:
        return {
            "samples": [{**s.__dict__, "passed": s.passed} for s in self.samples],
            "baseline": dict(self.baseline.most_common()),
            "without_samples": self.without_samples,
            "failed": self.failed,
        }


def _info(rule_path: Path, named: str) -> tuple[Path, dict[str, Any]]:
    """The regression info a rule names, and the root its paths are relative to (the nearest
    folder above the rule that holds it)."""
    for root in rule_path.parents:
        info = root / named
        if info.is_file():
            if info.stat().st_size > MAX_INFO_BYTES:
                raise Invalid(f"{info}: larger than {MAX_INFO_BYTES:,} bytes")
            doc = yaml.safe_load(info.read_text(encoding="utf-8"))
            if not isinstance(doc, dict):
                raise Invalid(f"{info}: not a regression info file")
            return root, doc
    raise Invalid(f"{rule_path}: its regression_tests_path {named} is not found above it")


def check_rules(loaded: LoadedRules, *, baselines: Sequence[Path] = ()) -> RulesTest:
    """Every rule of the set that names regression samples, on its samples; and the whole set
    on the baselines."""
    result = RulesTest()
    for rule in loaded.plan.rules:
        try:
            doc = yaml.safe_load(Path(rule.path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        named = doc.get("regression_tests_path") if isinstance(doc, dict) else None
        if not isinstance(named, str):
            result.without_samples += 1
            continue
        try:
            root, info = _info(Path(rule.path), named)
        except (Invalid, OSError, yaml.YAMLError) as exc:
            result.samples.append(SampleResult(rule.rule_id, rule.title, named, 0, None, str(exc)))
            continue
        for test in info.get("regression_tests_info") or ():
            sample = root / str(test.get("path", ""))
            expected = int(test.get("match_count", 1))
            if not sample.is_file():
                result.samples.append(
                    SampleResult(
                        rule.rule_id,
                        rule.title,
                        str(sample),
                        expected,
                        None,
                        "the sample is not there",
                    )
                )
                continue
            try:
                found = scan_inputs([sample], loaded).detections
            except Exception as exc:  # the sample cannot be read: said, not raised
                result.samples.append(
                    SampleResult(rule.rule_id, rule.title, str(sample), expected, None, str(exc))
                )
                continue
            count = sum(1 for d in found if d.rule_id == rule.rule_id)
            result.samples.append(
                SampleResult(rule.rule_id, rule.title, str(sample), expected, count)
            )
    if baselines:
        found = scan_inputs(list(baselines), loaded, jobs=2).detections
        result.baseline.update(d.rule_title for d in found)
    return result


__all__ = ["RulesTest", "SampleResult", "check_rules"]
