"""The zerotrust stage: live risk (the `risk` stream) into what the decision point knows,
so a user's or a host's next request is decided on its risk now."""

from __future__ import annotations

from collections.abc import Sequence

from vigil.events.records import RiskChange
from vigil.zerotrust.pdp import Knowledge


class RiskStage:
    def __init__(self, knowledge: Knowledge) -> None:
        self.knowledge = knowledge

    def restore(self) -> None:
        return None  # the service loads the current scores before the first batch

    def process(self, records: Sequence[tuple[int, bytes]]) -> None:
        for _, data in records:
            change = RiskChange.from_bytes(data)
            kind, value = change.entity
            self.knowledge.set_risk(kind, value, change.risk)


__all__ = ["RiskStage"]
