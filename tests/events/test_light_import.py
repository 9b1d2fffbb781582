"""Importing the records layer loads nothing heavy (the Sigma engine, Hyperscan, the
database layer, DuckDB, Arrow, the web framework)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("sigma", "hyperscan", "sqlalchemy", "duckdb", "pyarrow", "fastapi", "alembic")


def test_import_vigil_events_loads_nothing_heavy() -> None:
    code = (
        "import sys, vigil.events, vigil.events.records\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_package_face_still_offers_scan() -> None:
    code = "import vigil; print(callable(vigil.scan), vigil.ScanResult.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "ScanResult"]
