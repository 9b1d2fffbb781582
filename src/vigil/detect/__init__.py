"""Detection: Sigma rules (and later indicators and anomaly models) producing `Detection`s."""

from vigil.detect.detection import LEVELS, TACTICS, Detection, level_rank, tactics_of

__all__ = ["LEVELS", "TACTICS", "Detection", "level_rank", "tactics_of"]
