"""The compiled-plan cache: keyed on every rule file's content, Vigil's version and the mapping.

Only files Vigil wrote under the user's own cache folder are read back; a damaged or stale
entry is rebuilt, never trusted.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

import hyperscan
import platformdirs

from vigil.detect.sigma.plan import Plan

FORMAT = 1


def cache_dir() -> Path:
    override = os.environ.get("VIGIL_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir("vigil"))


def _path(key: str) -> Path:
    return cache_dir() / f"sigma-plan-{FORMAT}-{key[:40]}.pickle"


def _trusted(path: Path) -> bool:
    """Whether a cache file is the user's own and nobody else could have written it (pickle
    runs code on load)."""
    try:
        for item in (path.parent, path):
            info = item.stat()
            if info.st_uid != os.getuid() or info.st_mode & 0o022:
                return False
    except OSError:
        return False
    return True


def load(key: str) -> Plan | None:
    path = _path(key)
    if not _trusted(path):
        return None
    try:
        with path.open("rb") as handle:
            stored_key, plan = pickle.load(handle)  # noqa: S301 - our own file, checked above
    except (
        OSError,
        EOFError,
        pickle.UnpicklingError,
        ValueError,
        TypeError,
        AttributeError,
        ImportError,
        IndexError,
    ):
        return None
    if stored_key != key or not isinstance(plan, Plan):
        return None
    # Hyperscan databases are built for a platform: one that will not load means rebuilding.
    sample = next((data for pair in plan.group_databases for data in pair if data), None)
    if sample is not None:
        try:
            hyperscan.loadb(sample, hyperscan.HS_MODE_BLOCK)
        except hyperscan.error:
            return None
    return plan


def store(key: str, plan: Plan) -> None:
    folder = cache_dir()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=folder, prefix=".plan-")
        with os.fdopen(handle, "wb") as out:
            pickle.dump((key, plan), out, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temp, _path(key))
    except OSError:
        return  # a cache that cannot be written only costs time
    for old in folder.glob(f"sigma-plan-{FORMAT}-*.pickle"):
        if old != _path(key) and _is_stale(old):
            old.unlink(missing_ok=True)


def _is_stale(path: Path, keep_days: float = 30) -> bool:
    import time

    try:
        return time.time() - path.stat().st_mtime > keep_days * 86400
    except OSError:
        return False
