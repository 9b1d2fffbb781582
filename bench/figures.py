"""How every benchmark reports: a table on standard error, then one JSON line of figures."""

from __future__ import annotations

import json
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
