"""Vigil: proactive threat defense. `vigil.scan(paths, rules)` hunts logs with Sigma rules."""

from vigil.detect import Detection
from vigil.scan import ScanResult, scan

__version__ = "0.1.0"

__all__ = ["Detection", "ScanResult", "__version__", "scan"]
