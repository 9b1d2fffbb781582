"""The event store: every processed event in Parquet, partitioned by day and dataset
(`events/day=2026-11-28/dataset=zeek.dns/part-<first>-<last>.parquet`), for hunting.

Each stored batch is atomic and stored once: its files are written as `.parquet.tmp`, then
its offset ranges are appended to the writer's commit log (`_commits`, or `_commits-w0` for
the writer named `w0`; fsync'd), then the files are renamed. On open, a writer renames its
leftover `.tmp` files of committed batches and deletes those of uncommitted ones. Several
writers (the pipeline's worker processes) share a folder: each has its own commit log and
file names, and skips the events whose intake offset any of them has committed, so a batch
processed again after a crash, by whichever writer, is not stored twice.

Columns: `offset` (intake position, unique), `time` and `ingested` (UTC), `dataset`,
`product`, `service`, `category`, `format`, `source`, `record`, `host`, `fields` (the native
fields as JSON), `raw`, and ECS columns with `_` for `.`: host_name, user_name, user_domain,
source_ip, source_port, destination_ip, destination_port, process_name,
process_executable, process_command_line, process_pid, parent_process_executable,
file_path, file_name, file_hash_md5, file_hash_sha1, file_hash_sha256, dns_question_name,
url_domain, url_original, event_category, event_action, event_outcome, event_code,
cloud_provider, cloud_region, user_agent_original.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from vigil.errors import VigilError
from vigil.events import Event

ECS_COLUMNS: dict[str, tuple[str, Any]] = {
    "host_name": ("host.name", pa.string()),
    "user_name": ("user.name", pa.string()),
    "user_domain": ("user.domain", pa.string()),
    "source_ip": ("source.ip", pa.string()),
    "source_port": ("source.port", pa.int32()),
    "destination_ip": ("destination.ip", pa.string()),
    "destination_port": ("destination.port", pa.int32()),
    "process_name": ("process.name", pa.string()),
    "process_executable": ("process.executable", pa.string()),
    "process_command_line": ("process.command_line", pa.string()),
    "process_pid": ("process.pid", pa.int64()),
    "parent_process_executable": ("process.parent.executable", pa.string()),
    "file_path": ("file.path", pa.string()),
    "file_name": ("file.name", pa.string()),
    "file_hash_md5": ("file.hash.md5", pa.string()),
    "file_hash_sha1": ("file.hash.sha1", pa.string()),
    "file_hash_sha256": ("file.hash.sha256", pa.string()),
    "dns_question_name": ("dns.question.name", pa.string()),
    "url_domain": ("url.domain", pa.string()),
    "url_original": ("url.original", pa.string()),
    "event_category": ("event.category", pa.string()),
    "event_action": ("event.action", pa.string()),
    "event_outcome": ("event.outcome", pa.string()),
    "event_code": ("event.code", pa.string()),
    "cloud_provider": ("cloud.provider", pa.string()),
    "cloud_region": ("cloud.region", pa.string()),
    "user_agent_original": ("user_agent.original", pa.string()),
}
_TIME = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema(
    [
        ("offset", pa.int64()),
        ("time", _TIME),
        ("ingested", _TIME),
        ("dataset", pa.string()),
        ("product", pa.string()),
        ("service", pa.string()),
        ("category", pa.string()),
        ("format", pa.string()),
        ("source", pa.string()),
        ("record", pa.string()),
        ("host", pa.string()),
        ("fields", pa.string()),
        ("raw", pa.string()),
        *((name, kind) for name, (_, kind) in ECS_COLUMNS.items()),
    ]
)
_ECS_STRUCT = pa.struct([(key, kind) for key, kind in ECS_COLUMNS.values()])
COMMITS = "_commits"
UNWRITABLE = "_vigil_unwritable"  # in `fields`, in place of fields that could not be written


class EventStoreError(VigilError):
    """Events could not be stored (disk full, permissions...)."""


def _micros(epoch: float | None) -> int | None:
    return None if epoch is None else int(epoch * 1_000_000)


def _number(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Rows:
    """Events as the store writes them: an Arrow table, and each row's intake offset and
    partition (day, dataset)."""

    table: pa.Table
    offsets: list[int]
    parts: list[tuple[str, str]]


class EventStore:
    """`EventStore(folder)` is the writer (one per folder and `name`: it finishes or undoes
    its interrupted batches on open); `EventStore(folder, writer=False)` only reads (hunts),
    leaving files being written alone."""

    def __init__(self, folder: Path, *, writer: bool = True, name: str = "") -> None:
        if name and not name.isalnum():
            raise ValueError(f"an event store writer's name is letters and digits: {name!r}")
        self.folder = Path(folder)
        self.name = name
        self._tag = f"{name}-" if name else ""
        self._ranges: list[tuple[int, int]] = []  # committed offsets (every writer), merged
        if writer:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._recover()

    @property
    def max_offset(self) -> int:
        """The highest intake offset stored (-1 when none)."""
        return self._ranges[-1][1] if self._ranges else -1

    def is_stored(self, offset: int) -> bool:
        ranges = self._ranges
        if not ranges or offset > ranges[-1][1]:
            return False
        at = bisect.bisect_right(ranges, (offset, 1 << 62)) - 1
        return at >= 0 and ranges[at][0] <= offset <= ranges[at][1]

    def _commit_log(self) -> Path:
        return self.folder / (f"{COMMITS}-{self.name}" if self.name else COMMITS)

    def _recover(self) -> None:
        mine: set[tuple[int, int]] = set()
        spans: list[tuple[int, int]] = []
        for path in self.folder.glob(f"{COMMITS}*"):
            for line in path.read_text().splitlines():
                ranges = _ranges(line)
                if not ranges:
                    continue
                spans.extend(ranges)
                if path == self._commit_log():
                    mine.add((ranges[0][0], ranges[-1][1]))
        self._ranges = _merged(spans)
        for leftover in self.folder.rglob("*.parquet.tmp"):
            final = leftover.name.removesuffix(".tmp")
            if _writer(final) != self.name:
                continue
            if _span(final) in mine:
                os.replace(leftover, leftover.with_name(final))
            else:
                leftover.unlink()

    def write(self, events: Sequence[Event], offsets: Sequence[int], *, ingested: float) -> int:
        """Store one batch (atomic); events already stored are skipped. Rows written."""
        rows = self.rows(events, offsets, ingested=ingested)
        return self.write_rows([rows]) if rows is not None else 0

    def rows(
        self, events: Sequence[Event], offsets: Sequence[int], *, ingested: float
    ) -> Rows | None:
        """The events not stored yet, as the store writes them (None when there are none):
        the costly half of storing, done by whoever hands the events over."""
        pairs = list(zip(events, offsets, strict=True))
        if pairs and min(offsets) <= self.max_offset:
            pairs = [(e, o) for e, o in pairs if not self.is_stored(o)]
        if not pairs:
            return None
        days: dict[int, str] = {}
        parts = []
        for event, _ in pairs:
            when = event.time if event.time is not None else ingested
            number = int(when // 86400)
            day = days.get(number)
            if day is None:
                day = days[number] = _day(when)
            parts.append((day, event.dataset or "unknown"))
        return Rows(_table(pairs, ingested), [o for _, o in pairs], parts)

    def write_rows(self, batches: Sequence[Rows]) -> int:
        """Store batches made by `rows` as one (atomic): a file per day and dataset, rows
        stored meanwhile (by another writer) skipped. Rows written."""
        if not batches:
            return 0
        table = (
            pa.concat_tables([b.table for b in batches]) if len(batches) > 1 else batches[0].table
        )
        offsets = [o for b in batches for o in b.offsets]
        parts = [p for b in batches for p in b.parts]
        order = sorted(range(len(offsets)), key=offsets.__getitem__)
        if offsets and min(offsets) <= self.max_offset:
            order = [i for i in order if not self.is_stored(offsets[i])]
        if not order:
            return 0
        spans = _spans([offsets[i] for i in order])
        first, last = spans[0][0], spans[-1][1]
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        for index in order:
            groups[parts[index]].append(index)
        # one take puts each partition's rows together; each file is then a zero-copy slice
        grouped = table.take(pa.array([i for rows in groups.values() for i in rows], pa.int64()))
        written = []
        name = f"part-{self._tag}{first:020d}-{last:020d}.parquet"
        start = 0
        for (day, dataset), indices in groups.items():
            folder = self.folder / f"day={day}" / f"dataset={_safe(dataset)}"
            folder.mkdir(parents=True, exist_ok=True)
            temporary = folder / (name + ".tmp")
            part = grouped.slice(start, len(indices))
            pq.write_table(part, temporary, compression="zstd")
            start += len(indices)
            written.append(temporary)
        with self._commit_log().open("a") as log:
            log.write(" ".join(f"{a} {b}" for a, b in spans) + "\n")
            log.flush()
            os.fsync(log.fileno())
        for temporary in written:
            os.replace(temporary, temporary.with_name(name))
        self._ranges = _merged([*self._ranges, *spans])
        return len(order)

    def files(self) -> list[Path]:
        return sorted(self.folder.rglob("*.parquet"))

    def count(self) -> int:
        return sum(pq.ParquetFile(path).metadata.num_rows for path in self.files())

    def events(
        self,
        since: float | None,
        until: float | None,
        datasets: Sequence[str] | None = None,
    ) -> Iterator[list[Event]]:
        """Stored events back as `Event` objects, in batches (partitions pruned by day and
        dataset; events without a time are kept when no bound is given)."""
        first_day = _day(since) if since is not None else None
        last_day = _day(until) if until is not None else None
        wanted = {_safe(d) for d in datasets} if datasets else None
        for path in self.files():
            day = path.parent.parent.name.removeprefix("day=")
            dataset = path.parent.name.removeprefix("dataset=")
            if (first_day and day < first_day) or (last_day and day > last_day):
                continue
            if wanted is not None and dataset not in wanted:
                continue
            table = pq.read_table(path)
            batch = []
            for row in table.to_pylist():
                stamp = row["time"]
                when = stamp.timestamp() if stamp is not None else None
                if since is not None and (when is None or when < since):
                    continue
                if until is not None and (when is None or when > until):
                    continue
                service = row["service"]
                batch.append(
                    Event(
                        fields=orjson.loads(row["fields"]),
                        source=row["source"],
                        record=row["offset"],
                        time=when,
                        product=row["product"],
                        service=tuple(service.split(","))
                        if service and "," in service
                        else service,
                        category=row["category"],
                        format=row["format"] or "",
                        raw=row["raw"],
                        dataset=None if row["dataset"] == "unknown" else row["dataset"],
                    )
                )
            if batch:
                yield batch


class EventWriter:
    """Writes batches to an event store from a thread of its own, in files of up to
    `max_events` events, `max_bytes` of Arrow rows or `max_age` seconds. The caller turns
    its events into Arrow rows as it hands them over (`put`: steady work, batch by batch,
    and the events are freed at once); the thread joins them and writes the files (Arrow
    and Parquet work outside the GIL), so detection goes on while files are written, and
    each day and dataset gets one file per `max_age` rather than one per batch. What is
    handed over and not yet written is `held_from` onwards; the caller acknowledges its
    input only below that. A failed write is raised by every later call, and its events
    stay held, until `discard` (the caller then hands them over again)."""

    def __init__(
        self,
        store: EventStore,
        *,
        max_events: int = 50_000,
        max_bytes: int = 64 << 20,
        max_age: float = 5.0,
    ):
        self.store = store
        self.max_events = max_events
        self.max_bytes = max_bytes  # the rows held cost memory: a detect worker holds them
        self.max_age = max_age
        self._pending: list[Rows] = []
        self._count = 0
        self._bytes = 0
        self._since = 0.0
        self._writing: int | None = None  # lowest offset of the batch being written
        self._wanted = False  # a flush was asked for
        self._error: BaseException | None = None
        self._failed_from: int | None = None  # lowest offset of a write that failed
        self._closed = False
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="vigil-event-writer", daemon=True)
        self._thread.start()

    def put(self, events: Sequence[Event], offsets: Sequence[int]) -> None:
        self.check()
        rows = self.store.rows(events, offsets, ingested=time.time())
        if rows is None:
            return
        with self._cv:
            if not self._pending:
                self._since = time.monotonic()
            self._pending.append(rows)
            self._count += len(rows.offsets)
            self._bytes += rows.table.nbytes
            if len(self._pending) == 1 or self._full():
                self._cv.notify_all()

    @property
    def held_from(self) -> int | None:
        """The lowest offset handed over and not yet written (None when none)."""
        with self._cv:
            lows = [min(rows.offsets) for rows in self._pending]
            lows.extend(o for o in (self._writing, self._failed_from) if o is not None)
            return min(lows) if lows else None

    def check(self) -> None:
        """Raise the failure of a write, if one failed."""
        with self._cv:
            self._raise()

    def flush(self) -> None:
        """Write everything handed over, and return once it is written."""
        with self._cv:
            self._wanted = True
            self._cv.notify_all()
            while (self._pending or self._writing is not None) and self._error is None:
                self._cv.wait(0.5)
            self._wanted = False
            self._raise()

    def discard(self) -> None:
        """Drop what is handed over and not yet written, and a failure (it is all to be done
        again). A write under way is let finish first, so its outcome cannot arrive later."""
        with self._cv:
            while self._writing is not None:
                self._cv.wait(0.5)
            self._pending, self._count, self._bytes = [], 0, 0
            self._error = self._failed_from = None

    def close(self) -> None:
        """Write what is handed over, and end the thread."""
        try:
            self.flush()
        finally:
            with self._cv:
                self._closed = True
                self._cv.notify_all()
            self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            raise EventStoreError(f"storing events failed: {self._error}") from self._error

    def _due(self) -> bool:
        if not self._pending:
            return False
        if self._wanted or self._closed or self._full():
            return True
        return time.monotonic() - self._since >= self.max_age

    def _full(self) -> bool:
        return self._count >= self.max_events or self._bytes >= self.max_bytes

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._due():
                    if self._closed:
                        return
                    wait = self.max_age - (time.monotonic() - self._since)
                    self._cv.wait(max(0.01, wait) if self._pending else None)
                batches, self._pending, self._count, self._bytes = self._pending, [], 0, 0
                self._writing = min(min(rows.offsets) for rows in batches)
            try:
                self.store.write_rows(batches)
            except Exception as exc:  # raised to the caller from now on
                with self._cv:
                    self._error = exc
                    failed = [o for o in (self._failed_from, self._writing) if o is not None]
                    self._failed_from = min(failed) if failed else None
            finally:
                with self._cv:
                    self._writing = None
                    self._cv.notify_all()


def _table(items: list[tuple[Event, int]], ingested: float) -> pa.Table:
    """The batch as an Arrow table, built column by column."""
    events = [event for event, _ in items]
    views = [event.ecs for event in events]
    dumps, option = orjson.dumps, orjson.OPT_NON_STR_KEYS
    stamp = _micros(ingested)
    columns: dict[str, list[Any]] = {
        "offset": [offset for _, offset in items],
        "time": [_micros(e.time) for e in events],
        "ingested": [stamp] * len(events),
        "dataset": [e.dataset or "unknown" for e in events],
        "product": [e.product for e in events],
        "service": [",".join(e.service) if isinstance(e.service, tuple) else e.service
                    for e in events],
        "category": [e.category for e in events],
        "format": [e.format for e in events],
        "source": [e.source for e in events],
        "record": [None if e.record is None else str(e.record) for e in events],
        "host": [e.host for e in events],
        "fields": [_fields_json(e.fields, dumps, option) for e in events],
        "raw": [r.decode("utf-8", "replace") if isinstance(r := e.raw, bytes) else r
                for e in events],
    }  # fmt: skip
    arrays = [pa.array(columns[f.name], type=f.type) for f in SCHEMA if f.name in columns]
    try:
        # the ECS columns in one conversion (C++ looks the names up in each view)
        arrays.extend(pa.array(views, type=_ECS_STRUCT).flatten())
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a value of another type: convert it
        for key, kind in ECS_COLUMNS.values():
            values = [view.get(key) for view in views]
            if pa.types.is_string(kind):
                values = [v if v is None or type(v) is str else str(v) for v in values]
            else:
                values = [None if v is None else _number(v) for v in values]
            arrays.append(pa.array(values, type=kind))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _fields_json(fields: dict[str, Any], dumps: Any, option: int) -> str:
    """An event's fields as JSON. Fields that cannot be written as JSON (nested past what
    the encoder allows, ...) do not stop the batch: the event is stored with the reason in
    their place, and its `raw` text keeps the original."""
    try:
        return dumps(fields, default=str, option=option).decode()  # type: ignore[no-any-return]
    except (TypeError, ValueError) as exc:  # orjson.JSONEncodeError is a TypeError
        return dumps({UNWRITABLE: f"fields not storable as JSON: {exc}"}).decode()  # type: ignore[no-any-return]


def _ranges(line: str) -> list[tuple[int, int]]:
    """A commit line: `first last [first last ...]`, in order ([] when damaged)."""
    parts = line.split()
    if not parts or len(parts) % 2 or not all(p.lstrip("-").isdigit() for p in parts):
        return []
    numbers = [int(p) for p in parts]
    return list(zip(numbers[::2], numbers[1::2], strict=True))


def _merged(spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Ranges sorted and joined where they touch or overlap."""
    out: list[tuple[int, int]] = []
    for first, last in sorted(spans):
        if out and first <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return out


def _spans(offsets: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted offsets as runs of consecutive ones."""
    out: list[tuple[int, int]] = []
    first = last = offsets[0]
    for offset in offsets[1:]:
        if offset != last + 1:
            out.append((first, last))
            first = offset
        last = offset
    out.append((first, last))
    return out


def _span(name: str) -> tuple[int, int] | None:
    """The offsets `part-[writer-]first-last.parquet` names."""
    parts = name.removeprefix("part-").removesuffix(".parquet").split("-")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[-2:]):
        return None
    return int(parts[-2]), int(parts[-1])


def _writer(name: str) -> str:
    parts = name.removeprefix("part-").removesuffix(".parquet").split("-")
    return parts[0] if len(parts) == 3 else ""


def _day(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d")


def _safe(dataset: str) -> str:
    """A dataset name usable as a folder name (it comes from the data)."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in dataset)[:100] or "unknown"
