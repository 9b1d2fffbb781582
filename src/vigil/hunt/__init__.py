"""Threat hunting over the stored events: SQL with DuckDB (read-only, one SELECT, over the
Parquet files as the view `events`) and Sigma retro-hunts with the same engine as
`vigil scan`."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson

from vigil.detect import Detection
from vigil.detect.sigma import LoadedRules
from vigil.errors import InputError
from vigil.events import Event, parse_time
from vigil.events.records import detected_now


class HuntError(InputError):
    """A hunt that cannot run: bad SQL, a statement that is not a query, a bad time."""


class HuntStopped(HuntError):
    """A hunt stopped before its end: past its time limit, or its client went away."""


@dataclass(frozen=True)
class HuntLimits:
    """What one hunt may take; none may starve intake or the server."""

    timeout_s: float = 60.0  # wall clock
    memory_mb: int = 1024  # DuckDB's working memory (nothing spills to disk)
    threads: int = 1  # DuckDB threads
    max_result_bytes: int = 16 << 20  # rows (as JSON) sent back; the rest is cut off


@dataclass
class HuntResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    seconds: float
    truncated: bool = False  # rows were cut off at the row or byte limit


_QUERY = re.compile(r"\s*(select|with|from)\b", re.IGNORECASE)
_FETCH = 1000  # rows per fetch, each batch weighed against the byte limit


def sql(
    folder: Path,
    query: str,
    *,
    limit: int | None = 10_000,
    limits: HuntLimits | None = None,
    cancel: threading.Event | None = None,
) -> HuntResult:
    """Run one read-only query over the stored events (the view `events`): stopped
    (HuntStopped) after `limits.timeout_s` or as soon as `cancel` is set, in bounded memory
    and threads, its rows cut off at `limit` or `limits.max_result_bytes`."""
    limits = limits or HuntLimits()
    started = time.perf_counter()
    connection, text = _connect(folder, query, limits)
    try:
        # the row limit is the query's own, so DuckDB stops making rows past it
        bounded = text
        if limit is not None:
            bounded = f"SELECT * FROM ({text}) AS hunt LIMIT {limit + 1}"  # noqa: S608 (one SELECT, checked)
        with _Watch(connection, limits.timeout_s, cancel) as watch:
            try:
                cursor = connection.execute(bounded)
                columns = [d[0] for d in cursor.description or ()]
                rows, truncated = _fetch(cursor, limit, limits.max_result_bytes)
            except duckdb.Error as exc:
                if watch.why is not None:
                    raise HuntStopped(watch.why) from None
                raise HuntError(f"SQL: {exc}") from None
    finally:
        connection.close()
    return HuntResult(columns, rows, time.perf_counter() - started, truncated)


def check_sql(folder: Path, query: str) -> None:
    """Raise HuntError unless the query would run (one SELECT over `events`, its names
    bound): it is planned, not run."""
    connection, text = _connect(folder, query, HuntLimits())
    try:
        connection.execute(f"EXPLAIN {text}")
    except duckdb.Error as exc:
        raise HuntError(f"SQL: {exc}") from None
    finally:
        connection.close()


def _connect(folder: Path, query: str, limits: HuntLimits) -> tuple[Any, str]:
    """A DuckDB connection for one hunt over the events of `folder` (the view `events`),
    and the query's text once checked to be one SELECT. The connection reads no file but
    the event store's, attaches and loads nothing, and keeps to the memory and threads of
    `limits` (nothing spills to disk), with no way to change that."""
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
        root = str(Path(folder).resolve()).replace("'", "''")
        connection.execute(f"SET threads = {int(limits.threads)}")
        connection.execute(f"SET memory_limit = '{int(limits.memory_mb)}MB'")
        connection.execute("SET temp_directory = ''")
        connection.execute(f"SET allowed_directories = ['{root}/']")
        connection.execute("SET enable_external_access = false")
        connection.execute("SET lock_configuration = true")
    except BaseException:
        connection.close()
        raise
    return connection, text


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)


def _fetch(cursor: Any, limit: int | None, max_bytes: int) -> tuple[list[tuple[Any, ...]], bool]:
    """Rows up to `limit` and `max_bytes` (weighed as JSON); whether more were left."""
    rows: list[tuple[Any, ...]] = []
    size = 0
    while True:
        want = _FETCH if limit is None else min(_FETCH, limit + 1 - len(rows))
        batch = [tuple(r) for r in cursor.fetchmany(want)] if want > 0 else []
        if not batch:
            if limit is not None and len(rows) > limit:
                return rows[:limit], True
            return rows, False
        weight = len(_dumps(batch))
        if size + weight > max_bytes:
            room = max_bytes - size
            for row in batch:
                room -= len(_dumps(row)) + 1
                if room < 0:
                    break
                rows.append(row)
            return rows, True
        size += weight
        rows.extend(batch)


class _Watch:
    """Interrupts a DuckDB query once `timeout` seconds pass or `cancel` is set; `why` says
    which, when it did."""

    def __init__(self, connection: Any, timeout: float, cancel: threading.Event | None) -> None:
        self.connection = connection
        self.timeout = timeout
        self.cancel = cancel
        self.why: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vigil-hunt-watch", daemon=True)

    def __enter__(self) -> _Watch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        deadline = time.monotonic() + self.timeout
        while not self._done.wait(0.05):
            if self.cancel is not None and self.cancel.is_set():
                self.why = "the hunt was cancelled (its client went away)"
            elif time.monotonic() >= deadline:
                self.why = f"the hunt ran past its limit of {self.timeout:g} s"
            else:
                continue
            self.connection.interrupt()
            return


def sigma(
    folder: Path,
    loaded: LoadedRules,
    *,
    since: float | None,
    until: float | None = None,
    limits: HuntLimits | None = None,
    cancel: threading.Event | None = None,
    max_detections: int = 10_000,
) -> list[Detection]:
    """The stored events since `since` through the Sigma rules: the detections `vigil scan`
    would give (correlation rules are not run on retro-hunts), at most `max_detections`;
    stopped (HuntStopped) past `limits.timeout_s` or once `cancel` is set."""
    found = sigma_found(folder, loaded, since=since, until=until, limits=limits,
                        cancel=cancel, max_detections=max_detections)  # fmt: skip
    return [detection for detection, _ in found]


def sigma_found(
    folder: Path,
    loaded: LoadedRules,
    *,
    since: float | None,
    until: float | None = None,
    limits: HuntLimits | None = None,
    cancel: threading.Event | None = None,
    max_detections: int = 10_000,
) -> list[tuple[Detection, Event]]:
    """`sigma`, each detection with the stored event it was found in."""
    from vigil.detect.core import DetectionCore
    from vigil.store.events import EventStore

    limits = limits or HuntLimits()
    deadline = time.monotonic() + limits.timeout_s
    store = EventStore(folder, writer=False)
    stamp = detected_now()
    core = DetectionCore(loaded, correlations=False)
    out: list[tuple[Detection, Event]] = []
    for batch in store.events(since, until):
        if cancel is not None and cancel.is_set():
            raise HuntStopped("the hunt was cancelled (its client went away)")
        if time.monotonic() >= deadline:
            raise HuntStopped(f"the hunt ran past its limit of {limits.timeout_s:g} s")
        for pair in core.detect(batch, stamp).detections:
            out.append(pair)
            if len(out) >= max_detections:
                return out
    return out
    return out


_SPAN = re.compile(r"(\d{1,6})\s*([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MAX_SPAN = 100 * 366 * 86400  # further back than the epoch: a typo, not a hunt
_FIRST = datetime(1, 1, 2, tzinfo=UTC).timestamp()
_LAST = datetime(9999, 12, 30, tzinfo=UTC).timestamp()
_ISO_DATE = re.compile(r"[+-]?\d{4,}-\d{2}-\d{2}")  # a date, if one out of range


def parse_since(text: str, now: float | None = None) -> float:
    """`30d`, `12h`, `15m`, `2w` before now, or an ISO 8601 date or time: epoch seconds."""
    at = time.time() if now is None else now
    match = _SPAN.fullmatch(text.strip().lower())
    if match:
        span = int(match.group(1)) * _UNIT[match.group(2)]
        if span > _MAX_SPAN:
            raise HuntError(f"{text!r} reaches back more than 100 years")
        return at - span
    stamp = parse_time(text)
    if stamp is None:
        if _ISO_DATE.match(text.strip()):
            raise HuntError(f"{text!r} is out of the range of dates (years 1 to 9999)")
        raise HuntError(f"not a time or a span like 30d: {text!r}")
    if not _FIRST <= stamp <= _LAST:  # the event store's days are years 1 to 9999, in UTC
        raise HuntError(f"{text!r} is out of the range of dates (years 1 to 9999)")
    return stamp


__all__ = [
    "HuntError",
    "HuntLimits",
    "HuntResult",
    "HuntStopped",
    "parse_since",
    "sigma",
    "sigma_found",
    "sql",
]
