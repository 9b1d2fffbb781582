"""What the commands write: the two consoles, one-line errors, output files, level colours."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

err = Console(stderr=True)
out = Console()

LEVEL_STYLE = {
    "critical": "bold white on red",
    "high": "bold red",
    "medium": "yellow",
    "low": "cyan",
    "informational": "dim",
}


def figures_table(title: str, rows: list[tuple[str, str]]) -> Table:
    """A two-column table of named figures, values right-aligned."""
    table = Table(title=title, title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, value)
    return table


def fail(message: str) -> typer.Exit:
    """One plain line on standard error (never wrapped, never read as markup); exit code 2."""
    sys.stderr.write(f"error: {' '.join(message.split())}\n")
    sys.stderr.flush()
    return typer.Exit(2)


def output_file(path: Path | None) -> Path | None:
    """An option naming a file to write: refused at once (before any work) when its folder is
    missing or it is a folder itself."""
    if path is None:
        return None
    if path.is_dir():
        raise fail(f"cannot write {path}: it is a folder (give a file name)")
    folder = path.parent
    if not folder.is_dir():
        problem = "not a folder" if folder.exists() else "no such folder"
        raise fail(f"cannot write {path}: {problem}: {folder}")
    return path


def write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror or exc}") from None


def emit(data: bytes, output: Path | None, what: str = "Detections") -> None:
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        write(output, data)
        err.print(f"{what} written to {escape(str(output))}", highlight=False)


def short_time(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(epoch))
