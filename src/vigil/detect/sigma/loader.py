"""Loading Sigma rule files with pySigma: every file on its own, every failure with its reason."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError, SigmaRuleLocation
from sigma.filters import SigmaFilter
from sigma.modifiers import SigmaWideModifier, modifier_mapping
from sigma.policy.profiles import TrustedPolicy
from sigma.rule import SigmaRule, SigmaYAMLLoader

from vigil.errors import InputError

RULE_SUFFIXES = (".yml", ".yaml")

# The specification names `utf16le`; pySigma 2.0.1 knows it only as its alias `wide`.
modifier_mapping.setdefault("utf16le", SigmaWideModifier)
# pySigma takes one operator per correlation condition; the specification allows a range
# (`gt: 100` with `lte: 200`). The full condition travels to Vigil under this key.
RANGE_KEY = "vigil_condition_range"
_OPERATORS = ("gt", "gte", "lt", "lte", "eq", "neq")


@dataclass(frozen=True, slots=True)
class RuleFile:
    path: str
    content: bytes


@dataclass(frozen=True, slots=True)
class RuleProblem:
    """A rule Vigil cannot use, and why (file, rule id and title when known)."""

    path: str
    reason: str
    rule_id: str | None = None
    title: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "rule_id": self.rule_id,
            "title": self.title,
            "reason": self.reason,
        }


@dataclass
class RuleSet:
    """Parsed rules, correlation rules and filters, plus every file that failed."""

    rules: list[SigmaRule] = field(default_factory=list)
    correlations: list[SigmaCorrelationRule] = field(default_factory=list)
    filters: list[SigmaFilter] = field(default_factory=list)
    problems: list[RuleProblem] = field(default_factory=list)
    files: int = 0


def collect_files(folders: Iterable[str | Path]) -> list[RuleFile]:
    """Every rule file under the folders (recursively, sorted); a missing folder is an error."""
    found: list[RuleFile] = []
    for raw in folders:
        folder = Path(raw)
        if not folder.exists():
            raise InputError(f"no such rules file or folder: {folder}")
        paths = [folder] if folder.is_file() else sorted(folder.rglob("*"))
        for path in paths:
            if path.is_file() and path.suffix.lower() in RULE_SUFFIXES:
                found.append(RuleFile(str(path), path.read_bytes()))
    return found


def digest(files: Iterable[RuleFile], *extra: str) -> str:
    """A key for the rule set: every file's path and content, plus whatever else shapes the plan."""
    hasher = hashlib.sha256()
    for item in extra:
        hasher.update(item.encode() + b"\0")
    for rule_file in files:
        hasher.update(rule_file.path.encode() + b"\0")
        hasher.update(hashlib.sha256(rule_file.content).digest())
    return hasher.hexdigest()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SigmaError) and exc.args:
        text = str(exc.args[0])
    else:
        text = str(exc) or type(exc).__name__
    text = " ".join(text.split())
    return f"{type(exc).__name__}: {text}"


def parse_file(rule_file: RuleFile, ruleset: RuleSet) -> None:
    """Parse one file into the rule set; problems are recorded, never raised."""
    path = rule_file.path
    try:
        docs = [
            d
            for d in yaml.load_all(rule_file.content.decode("utf-8"), Loader=SigmaYAMLLoader)
            if d is not None
        ]
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        ruleset.problems.append(RuleProblem(path, f"not valid YAML: {_reason(exc)}"))
        return
    if not docs:
        ruleset.problems.append(RuleProblem(path, "empty file"))
        return
    if not all(isinstance(d, dict) for d in docs):
        ruleset.problems.append(
            RuleProblem(path, "not a Sigma rule (a YAML document is not a map)")
        )
        return
    docs = [_split_range(d) for d in docs]
    try:
        collection = SigmaCollection.from_dicts(
            docs,
            collect_errors=True,
            source=SigmaRuleLocation(Path(path)),
            collect_filters=True,
            resolve_references=False,
            policy=TrustedPolicy,
        )
    except Exception as exc:  # pySigma raises plain Python errors on some malformed input
        ruleset.problems.append(RuleProblem(path, _reason(exc)))
        return
    for rule in collection.rules:
        rule_id = str(rule.id) if rule.id else None
        if rule.errors:
            reasons = "; ".join(dict.fromkeys(_reason(e) for e in rule.errors))
            ruleset.problems.append(RuleProblem(path, reasons, rule_id, rule.title))
            continue
        if isinstance(rule, SigmaCorrelationRule):
            ruleset.correlations.append(rule)
            continue
        try:
            for condition in rule.detection.parsed_condition:
                condition.parse()
        except Exception as exc:
            ruleset.problems.append(
                RuleProblem(path, f"condition: {_reason(exc)}", rule_id, rule.title)
            )
            continue
        ruleset.rules.append(rule)
    for sigma_filter in collection.filters:
        if sigma_filter.errors:
            reasons = "; ".join(_reason(e) for e in sigma_filter.errors)
            ruleset.problems.append(
                RuleProblem(path, reasons, str(sigma_filter.id), sigma_filter.title)
            )
        else:
            ruleset.filters.append(sigma_filter)
    if not collection.rules and not collection.filters and collection.errors:
        reasons = "; ".join(dict.fromkeys(_reason(e) for e in collection.errors))
        ruleset.problems.append(RuleProblem(path, reasons))


def _split_range(doc: dict[str, Any]) -> dict[str, Any]:
    correlation = doc.get("correlation")
    if not isinstance(correlation, dict):
        return doc
    condition = correlation.get("condition")
    if not isinstance(condition, dict):
        return doc
    ops = [k for k in condition if k in _OPERATORS]
    if len(ops) < 2:
        return doc
    first = {k: v for k, v in condition.items() if k not in ops or k == ops[0]}
    return {
        **doc,
        RANGE_KEY: {k: condition[k] for k in ops},
        "correlation": {**correlation, "condition": first},
    }


def _names(rule: SigmaRule | SigmaCorrelationRule) -> list[str]:
    names = [str(rule.id)] if rule.id else []
    if rule.name:
        names.append(rule.name)
    return names


def link(ruleset: RuleSet) -> None:
    """Resolve correlation references and apply filters, as one pySigma collection.

    A correlation that names a rule not loaded is reported and dropped (pySigma would
    stop the whole load), and so is one that depends on such a correlation.
    """
    known: set[str] = set()
    for rule in ruleset.rules:
        known.update(_names(rule))
    pending = list(ruleset.correlations)
    kept: list[SigmaCorrelationRule] = []
    progress = True
    while pending and progress:
        progress = False
        for corr in list(pending):
            refs = [ref.reference for ref in (corr.rules or [])]
            if all(ref in known for ref in refs):
                kept.append(corr)
                known.update(_names(corr))
                pending.remove(corr)
                progress = True
    for corr in pending:
        missing = [r.reference for r in (corr.rules or []) if r.reference not in known]
        path = str(corr.source.path) if corr.source else "<correlation>"
        ruleset.problems.append(
            RuleProblem(
                path,
                f"references rules that are not loaded: {', '.join(missing)}",
                str(corr.id) if corr.id else None,
                corr.title,
            )
        )
    items: list[Any] = [*ruleset.rules, *kept, *ruleset.filters]
    collection = SigmaCollection(items, collect_filters=False, resolve_references=True)
    ruleset.rules = [r for r in collection.rules if isinstance(r, SigmaRule)]
    ruleset.correlations = [r for r in collection.rules if isinstance(r, SigmaCorrelationRule)]


def parse(files: Iterable[RuleFile]) -> RuleSet:
    ruleset = RuleSet()
    for rule_file in files:
        ruleset.files += 1
        parse_file(rule_file, ruleset)
    link(ruleset)
    return ruleset


def rule_path(rule: SigmaRule | SigmaCorrelationRule) -> str:
    return str(rule.source.path) if rule.source is not None else "<rule>"


def identity(rule: SigmaRule | SigmaCorrelationRule) -> dict[str, Any]:
    """What every detection says about its rule: id, title, level, status, tags, path, name."""
    return {
        "rule_id": str(rule.id) if rule.id else rule_path(rule),
        "title": rule.title or "",
        "level": str(rule.level) if rule.level else "",
        "status": str(rule.status) if rule.status else "",
        "tags": tuple(str(t) for t in rule.tags),
        "path": rule_path(rule),
        "name": rule.name,
    }
