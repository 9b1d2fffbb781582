"""What a connector's action gave: done or not, in dry-run or for real, the commands it sent
(or would send), what the other end said, and the state after."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ActionResult:
    ok: bool
    dry_run: bool
    commands: list[dict[str, Any]]
    output: str = ""
    state: dict[str, Any] = field(default_factory=dict)


__all__ = ["ActionResult"]
