"""Threat hunting over the stored events: SQL with DuckDB (read-only, one SELECT, over the
Parquet files as the view `events`) and Sigma retro-hunts with the same engine as
`vigil scan`."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from vigil.detect import Detection
from vigil.detect.sigma import LoadedRules
from vigil.errors import VigilError


class HuntError(VigilError):
    """A hunt that cannot run: bad SQL, a statement that is not a query, a bad time."""


@dataclass
class HuntResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    seconds: float


_QUERY = re.compile(r"\s*(select|with|from)\b", re.IGNORECASE)


def sql(folder: Path, query: str, *, limit: int | None = 10_000) -> HuntResult:
    """Run one read-only query over the stored events (the view `events`)."""
    started = time.perf_counter()
    text = query.strip().rstrip(";")
    if not _QUERY.match(text) or ";" in text:
        raise HuntError("a hunt is one SELECT (or WITH ... SELECT) statement")
    files = sorted(Path(folder).rglob("*.parquet"))
    connection = duckdb.connect(":memory:")
    try:
        try:
            statements = duckdb.extract_statements(text)
        except duckdb.Error as exc:
            raise HuntError(f"SQL: {exc}") from None
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            raise HuntError("a hunt is one SELECT (or WITH ... SELECT) statement")
        if files:
            pattern = str(Path(folder).resolve() / "**" / "*.parquet").replace("'", "''")
            connection.execute(
                "CREATE VIEW events AS SELECT * FROM read_parquet("  # noqa: S608 (our own path, quoted)
                f"'{pattern}', hive_partitioning = true, union_by_name = true)"
            )
        else:
            from vigil.store.events import SCHEMA

            nulls = ", ".join(f'NULL::VARCHAR AS "{name}"' for name in SCHEMA.names)
            connection.execute(f"CREATE VIEW events AS SELECT {nulls} WHERE false")
        # from here on: no file reads or writes but the event store's, no attaches, no
        # extensions, and no way to change that
        root = str(Path(folder).resolve()).replace("'", "''")
        connection.execute(f"SET allowed_directories = ['{root}/']")
        connection.execute("SET enable_external_access = false")
        connection.execute("SET lock_configuration = true")
        try:
            cursor = connection.execute(text)
            columns = [d[0] for d in cursor.description or ()]
            rows = cursor.fetchmany(limit) if limit is not None else cursor.fetchall()
        except duckdb.Error as exc:
            raise HuntError(f"SQL: {exc}") from None
    finally:
        connection.close()
    return HuntResult(columns, [tuple(r) for r in rows], time.perf_counter() - started)


def sigma(
    folder: Path, loaded: LoadedRules, *, since: float | None, until: float | None = None
) -> list[Detection]:
    """The stored events since `since` through the Sigma rules: the detections `vigil scan`
    would give (correlation rules are not run on retro-hunts)."""
    from vigil.scan import detection_of
    from vigil.store.events import EventStore

    store = EventStore(folder, writer=False)
    stamp = datetime.now(tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    out = []
    for batch in store.events(since, until):
        for match in loaded.engine.match(batch):
            if loaded.plan.rules[match.rule].output:
                out.append(detection_of(match, loaded, stamp))
    return out


_SPAN = re.compile(r"(\d{1,6})\s*([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MAX_SPAN = 100 * 366 * 86400  # further back than the epoch: a typo, not a hunt


def parse_since(text: str, now: float | None = None) -> float:
    """`30d`, `12h`, `15m`, `2w` before now, or an ISO 8601 date or time: epoch seconds."""
    at = time.time() if now is None else now
    match = _SPAN.fullmatch(text.strip().lower())
    if match:
        span = int(match.group(1)) * _UNIT[match.group(2)]
        if span > _MAX_SPAN:
            raise HuntError(f"{text!r} reaches back more than 100 years")
        return at - span
    try:
        stamp = datetime.fromisoformat(text.strip())
    except ValueError:
        raise HuntError(f"not a time or a span like 30d: {text!r}") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


__all__ = ["HuntError", "HuntResult", "parse_since", "sigma", "sql"]
