"""Vigil: proactive threat defense. `vigil.scan(paths, rules)` hunts logs with Sigma rules.

The names below load on first use: importing a part of Vigil (`vigil.events`, say) does not
load the Sigma engine, Hyperscan or the database layer."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_FACE = {
    "scan": "vigil.scan",
    "ScanResult": "vigil.scan",
    "Detection": "vigil.events.records",
    "Event": "vigil.events",
}


def __getattr__(name: str) -> Any:
    if name not in _FACE:
        raise AttributeError(f"module 'vigil' has no attribute {name!r}")
    value = getattr(importlib.import_module(_FACE[name]), name)
    globals()[name] = value  # the module `vigil.scan` is shadowed by its function, as before
    return value


__all__ = ["Detection", "Event", "ScanResult", "__version__", "scan"]
