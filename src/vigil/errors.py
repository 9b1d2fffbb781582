"""The one exception hierarchy of Vigil: every error names the file, record or rule at fault."""

from __future__ import annotations


class VigilError(Exception):
    """Root of every error Vigil raises on purpose."""


class InputError(VigilError):
    """A path, folder or option given by the user cannot be used."""


class RecordError(VigilError):
    """One record of a log cannot be read; the rest of the file goes on."""

    def __init__(self, reason: str, *, record: int | str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.record = record


class RuleError(VigilError):
    """A detection rule cannot be used; names the rule file and why."""

    def __init__(self, reason: str, *, path: str | None = None, rule_id: str | None = None) -> None:
        where = path or rule_id or "<rule>"
        super().__init__(f"{where}: {reason}")
        self.reason = reason
        self.path = path
        self.rule_id = rule_id
