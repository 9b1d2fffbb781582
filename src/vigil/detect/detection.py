"""The `Detection` result every detector (Sigma, indicators, anomalies) produces: defined
with the other records in `vigil.events.records`, named here for detection's callers."""

from vigil.events.records import (
    LEVEL_RANK,
    LEVELS,
    TACTICS,
    Detection,
    level_rank,
    tactics_of,
)

__all__ = ["LEVELS", "LEVEL_RANK", "TACTICS", "Detection", "level_rank", "tactics_of"]
