"""How every benchmark reports: a table on standard error, then one JSON line of figures."""

from __future__ import annotations

import json
import time
from typing import Any

from rich.console import Console
from rich.table import Table


def report(title: str, figures: dict[str, Any]) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in figures.items():
        shown = (
            f"{value:,}"
            if isinstance(value, int | float) and not isinstance(value, bool)
            else str(value)
        )
        table.add_row(name, shown)
    Console(stderr=True).print(table)
    print(json.dumps(figures))


def calibrate() -> float:
    """Seconds of CPU for a fixed pure-Python loop (dict and str work), best of three: the
    machine's speed at the time, so figures from different runs can be compared (on a shared
    virtual machine it drifts by tens of percent)."""
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        table: dict[int, str] = {}
        for i in range(1_000_000):
            table[i % 1000] = str(i)
        best = min(best, time.process_time() - started)
    return round(best, 3)
