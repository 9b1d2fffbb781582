"""Backup and restore of Vigil's own state: the state database, the event Parquet files, the
streams with their positions, evidence and the configuration.

    manifest = backup(Path("vigil-data"), Path("/backups/vigil"))
    report = restore(Path("/backups/vigil"), Path("vigil-data-new"))   # verifies first

A backup folder holds `state.db` (a consistent copy made by SQLite's backup API; for
PostgreSQL `state.pgdump`, made by pg_dump from one snapshot, see `vigil.store.pgdump`), `data/`
(every other file of the data folder, by its path there), `config/` (the configuration file,
when there is one) and `manifest.json`: for each file its SHA-256 and size, for each Parquet
file its row count, for the database its row count per table, and the answers of a fixed set
of queries (`QUERIES`) on the snapshot. The manifest is written last: a folder without one is
no backup.

Consistency while `vigil serve` runs. Stages commit their position only after their output is
stored, so the positions are read first, then the segments of the streams are hard-linked
aside (retention cannot take them from the backup any more), then the database and the
Parquet files are copied. Whatever was processed after the positions were read is in the
streams from those positions on, and is processed again after a restore: alert ids are fixed
by the finding and the event store skips the offsets it has committed, so nothing is stored
twice. Every acknowledged event is therefore either in the restored state or replayed.

Incremental: Parquet files are written once and never changed, stream segments only grow
until sealed, so a file already in the backup folder with the same size and modification
time is not copied again (its digest is taken from the previous manifest). Files gone from
the data folder are removed from the backup.

`verify` reads every file back against the manifest (digest, size; every Parquet file is
decoded whole and its rows counted), runs `PRAGMA integrity_check` on the database copy and
compares the row counts; `restore` verifies, copies into a fresh data folder, and runs the
queries again there: their answers must equal those recorded. Any difference refuses the
restore with the file named."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from vigil.errors import Conflict, Invalid, NotFound
from vigil.store import pgdump

STATE_FILE = "vigil.db"
DATABASE = "state.db"  # the database's copy in a backup folder (SQLite)
DUMP = "state.pgdump"  # or its dump (PostgreSQL, pg_dump's custom format)
MANIFEST = "manifest.json"
FORMAT = 1
# Files of a data folder that are not state: the database (copied by its own API), locks,
# temporaries of writes under way.
_SKIPPED_NAMES = frozenset({STATE_FILE, f"{STATE_FILE}-wal", f"{STATE_FILE}-shm", "lock"})
_SKIPPED_SUFFIXES = (".tmp",)
_STAGING = ".backup-staging"
# A stream's positions: its committed position and its named consumers' (see vigil.bus).
_POSITION_NAMES = frozenset({"committed"})
_CHUNK = 1 << 20


class BackupError(Invalid):
    """A backup that cannot be made, or that fails its verification; names the file."""


@dataclass
class Manifest:
    created: float
    database: dict[str, Any]
    files: dict[str, dict[str, Any]]
    queries: dict[str, Any]
    config: dict[str, Any] | None = None
    format: int = FORMAT
    copied: int = 0  # files copied by this backup (the others were there already)
    copied_bytes: int = 0

    @property
    def size(self) -> int:
        """Bytes in the backup: the database copy and every file."""
        return int(self.database["size"]) + sum(int(e["size"]) for e in self.files.values())

    def to_json(self) -> bytes:
        data = {k: v for k, v in self.__dict__.items() if k not in ("copied", "copied_bytes")}
        return json.dumps(data, indent=1, sort_keys=True).encode()

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise NotFound(f"{folder} holds no backup: {MANIFEST} is missing") from None
        except (OSError, ValueError) as exc:
            raise BackupError(f"{path}: unreadable manifest: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BackupError(f"{path}: not a Vigil backup manifest of format {FORMAT}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise BackupError(f"{path}: malformed manifest: {exc}") from None


@dataclass
class Verified:
    """What `verify` checked."""

    files: int = 0
    bytes: int = 0
    parquet_rows: int = 0
    tables: dict[str, int] = field(default_factory=dict)


# The fixed query set: name -> SQL on the state database. Its answers are recorded at backup
# time and must come out the same after a restore. (Event counts come from the Parquet files.)
QUERIES: dict[str, str] = {
    "alerts": "SELECT count(*), min(id), max(id) FROM alert",
    "alerts_by_level": "SELECT level, count(*) FROM alert GROUP BY level ORDER BY level",
    "alerts_by_rule": "SELECT rule_id, count(*) FROM alert GROUP BY rule_id ORDER BY rule_id",
    "incidents": "SELECT status, count(*), sum(alerts) FROM incident GROUP BY status ORDER BY 1",
    "incident_alerts": "SELECT count(*) FROM incident_alert",
    "entity_risk": "SELECT count(*) FROM entity_risk",
    "case_entries": "SELECT count(*) FROM case_entry",
    "indicators": "SELECT count(*) FROM intel_indicator",
    "saved_hunts": "SELECT name FROM saved_hunt ORDER BY name",
}


def backup(
    data_dir: Path,
    dest: Path,
    *,
    database_url: str | None = None,
    config: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> Manifest:
    """Back the data folder up into `dest` (made if missing; a previous backup there is
    brought up to date, copying only what changed). `database_url`: the state database when
    it is not the data folder's own SQLite file (another SQLite file, or PostgreSQL, dumped
    by pg_dump)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise NotFound(f"data folder {data_dir} does not exist")
    postgres = database_url is not None and database_url.startswith("postgresql")
    database = sqlite_file(database_url) or data_dir / STATE_FILE
    if not postgres and not database.is_file():
        raise NotFound(f"state database {database} does not exist")
    dest.mkdir(parents=True, exist_ok=True)
    previous = _previous(dest)
    say = progress or (lambda _: None)
    staging = data_dir / _STAGING
    shutil.rmtree(staging, ignore_errors=True)
    try:
        # 1. positions first, then the segments they point into, linked aside
        positions = {rel: path.read_bytes() for rel, path in _files(data_dir) if _is_position(rel)}
        segments = _link_segments(data_dir, staging)
        # 2. the database: a consistent copy, then its row counts and query answers
        say("database")
        name = DUMP if postgres else DATABASE
        copy = dest / (name + ".tmp")
        copy.unlink(missing_ok=True)
        if postgres:
            assert database_url is not None
            tables, queries = _dumped(database_url, copy)
        else:
            _sqlite_backup(database, copy)
            tables, queries = _table_counts(copy), run_queries(copy)
        _fsync(copy)
        os.replace(copy, dest / name)
        (dest / (DUMP if not postgres else DATABASE)).unlink(missing_ok=True)
        manifest = Manifest(
            created=time.time(),
            database={
                "file": name,
                "kind": "postgresql" if postgres else "sqlite",
                **_digest(dest / name),
                "tables": tables,
            },
            files={},
            queries=queries,
        )
        # 3. every other file, Parquet incrementally; positions as read in step 1
        say("files")
        out = dest / "data"
        for rel, path in _files(data_dir):
            if _is_position(rel):
                _write(out / rel, positions[rel])
                manifest.files[rel] = _entry_of_bytes(positions[rel])
                continue
            source = segments.get(rel, path)
            manifest.files[rel] = _copied(source, out / rel, rel, previous, manifest)
        for rel, data in positions.items():  # a position whose file went since
            if rel not in manifest.files:
                _write(out / rel, data)
                manifest.files[rel] = _entry_of_bytes(data)
        if config is not None and config.is_file():
            data = config.read_bytes()
            _write(dest / "config" / config.name, data)
            manifest.config = {"name": config.name, **_entry_of_bytes(data)}
        _prune(out, manifest.files)
        manifest.queries["events"] = sum(
            e.get("rows", 0) for e in manifest.files.values() if "rows" in e
        )
        _write(dest / MANIFEST, manifest.to_json())
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def verify(src: Path) -> tuple[Manifest, Verified]:
    """Check a backup folder against its manifest; raise BackupError naming the first file
    that fails."""
    manifest = Manifest.read(src)
    checked = Verified()
    database = src / manifest.database["file"]
    _check_file(database, manifest.database, manifest.database["file"])
    if _is_dump(manifest):
        try:  # its row counts are checked once restored (a dump is not queried in place)
            pgdump.check(database)
        except pgdump.DumpFailed as exc:
            raise BackupError(str(exc)) from None
        checked.tables = dict(manifest.database["tables"])
    else:
        _integrity(database)
        tables = _table_counts(database)
        if tables != manifest.database["tables"]:
            raise BackupError(f"{database}: row counts {tables} differ from the manifest's")
        checked.tables = tables
    for rel, entry in sorted(manifest.files.items()):
        path = src / "data" / rel
        _check_file(path, entry, rel)
        if "rows" in entry:
            rows = _parquet_rows(path, read=True)
            if rows != entry["rows"]:
                raise BackupError(f"{path}: {rows} rows, the manifest says {entry['rows']}")
            checked.parquet_rows += rows
        checked.files += 1
        checked.bytes += entry["size"]
    if manifest.config is not None:
        _check_file(src / "config" / manifest.config["name"], manifest.config, "config")
    return manifest, checked


def restore(
    src: Path,
    data_dir: Path,
    *,
    database_url: str | None = None,
    config: Path | None = None,
) -> Verified:
    """Verify the backup, then restore it into `data_dir` (which must be empty or absent),
    and check that the fixed queries give the answers recorded at backup time. A PostgreSQL
    backup restores its database into `database_url` (an empty database). `config`: where
    to put the backed-up configuration file (left out when None)."""
    manifest, checked = verify(src)
    dumped = _is_dump(manifest)
    if dumped and not (database_url or "").startswith("postgresql"):
        raise Invalid("this backup holds a PostgreSQL database: name the empty database to "
                      "restore it into (--database-url)")  # fmt: skip
    if data_dir.exists() and any(data_dir.iterdir()):
        raise Conflict(f"restore needs a fresh data folder: {data_dir} is not empty")
    data_dir.mkdir(parents=True, exist_ok=True)
    staging = data_dir.with_name(data_dir.name + ".restoring")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for rel in manifest.files:
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / "data" / rel, target)
        if dumped:
            assert database_url is not None
            try:
                tables, answers = pgdump.restore(
                    src / manifest.database["file"], database_url, _answers
                )
            except pgdump.DumpFailed as exc:
                raise BackupError(str(exc)) from None
            if tables != manifest.database["tables"]:
                raise BackupError(
                    f"{src / manifest.database['file']}: restored row counts {tables} differ "
                    "from the manifest's"
                )
        else:
            shutil.copyfile(src / manifest.database["file"], staging / STATE_FILE)
            answers = run_queries(staging / STATE_FILE)
        answers["events"] = sum(
            _parquet_rows(staging / rel) for rel, e in manifest.files.items() if "rows" in e
        )
        if answers != manifest.queries:
            differ = sorted(k for k in manifest.queries if answers.get(k) != manifest.queries[k])
            raise BackupError(
                f"restored state answers differently from the backup: {', '.join(differ)}"
            )
        for item in staging.iterdir():
            os.replace(item, data_dir / item.name)
        if config is not None and manifest.config is not None:
            config.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / "config" / manifest.config["name"], config)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return checked


def run_queries(database: Path) -> dict[str, Any]:
    """The fixed query set on a SQLite state database (tables it lacks answer None)."""
    with contextlib.closing(_connect(database, readonly=True)) as db:
        return _answers(db)


def _answers(db: Any) -> dict[str, Any]:
    """The fixed query set on a DB-API connection (sqlite3 or psycopg): plain JSON values."""
    answers: dict[str, Any] = {}
    for name, sql in QUERIES.items():
        try:
            if isinstance(db, sqlite3.Connection):
                rows = db.execute(sql).fetchall()
            else:
                with db.transaction():  # a savepoint: a missing table spoils nothing else
                    rows = db.execute(sql).fetchall()
        except Exception as exc:  # a table this database does not have yet
            if not _missing_table(exc):
                raise
            answers[name] = None
            continue
        answers[name] = [[_plain(value) for value in row] for row in rows]
    return answers


def _missing_table(exc: Exception) -> bool:
    if isinstance(exc, sqlite3.OperationalError):
        return "no such table" in str(exc)
    return type(exc).__name__ == "UndefinedTable"


def _plain(value: Any) -> Any:
    """Numbers as JSON holds them (PostgreSQL sums are Decimals)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _dumped(url: str, target: Path) -> tuple[dict[str, int], dict[str, Any]]:
    try:
        return pgdump.dump(url, target, _answers)
    except pgdump.DumpFailed as exc:
        raise BackupError(str(exc)) from None


def _is_dump(manifest: Manifest) -> bool:
    return manifest.database.get("kind") == "postgresql"


def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    return sqlite3.connect(path)


def _sqlite_backup(database: Path, copy: Path) -> None:
    copy.unlink(missing_ok=True)
    with (
        contextlib.closing(_connect(database, readonly=True)) as source,
        contextlib.closing(sqlite3.connect(copy)) as target,
    ):
        source.backup(target)
        target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file


def _integrity(database: Path) -> None:
    try:
        with contextlib.closing(_connect(database, readonly=True)) as db:
            found = [row[0] for row in db.execute("PRAGMA integrity_check").fetchall()]
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{database}: not a readable database: {exc}") from None
    if found != ["ok"]:
        raise BackupError(f"{database}: integrity check failed: {'; '.join(found[:3])}")


def _table_counts(database: Path) -> dict[str, int]:
    with contextlib.closing(_connect(database, readonly=True)) as db:
        names = [
            row[0]
            for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        counts: dict[str, int] = {}
        for name in names:  # from sqlite_master, quoted as an identifier
            quoted = '"' + name.replace('"', '""') + '"'
            counts[name] = db.execute(f"SELECT count(*) FROM {quoted}").fetchone()[0]  # noqa: S608
        return counts


def _files(data_dir: Path) -> Iterator[tuple[str, Path]]:
    """(path relative to the data folder, path) of every file that is state."""
    for root, folders, names in os.walk(data_dir):
        folders[:] = sorted(f for f in folders if f != _STAGING)
        for name in sorted(names):
            if name in _SKIPPED_NAMES or name.endswith(_SKIPPED_SUFFIXES):
                continue
            path = Path(root, name)
            if path.is_file():
                yield path.relative_to(data_dir).as_posix(), path


def _is_position(rel: str) -> bool:
    parts = rel.split("/")
    return parts[-1] in _POSITION_NAMES or (len(parts) >= 2 and parts[-2] in ("consumers", "tails"))


def _link_segments(data_dir: Path, staging: Path) -> dict[str, Path]:
    """Hard links to every stream segment (copies where links cannot be made), so that
    retention cannot delete one before it is copied."""
    linked: dict[str, Path] = {}
    for rel, path in _files(data_dir):
        if not rel.endswith(".seg"):
            continue
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except FileNotFoundError:  # retained away meanwhile: below every position
            continue
        except OSError:
            shutil.copyfile(path, target)
        linked[rel] = target
    return linked


def _previous(dest: Path) -> dict[str, dict[str, Any]]:
    try:
        return Manifest.read(dest).files
    except (NotFound, BackupError):
        return {}


def _copied(
    source: Path,
    target: Path,
    rel: str,
    previous: dict[str, dict[str, Any]],
    manifest: Manifest,
) -> dict[str, Any]:
    stat = source.stat()
    known = previous.get(rel)
    if (
        known is not None
        and known.get("size") == stat.st_size
        and known.get("mtime_ns") == stat.st_mtime_ns
        and target.is_file()
        and target.stat().st_size == stat.st_size
    ):
        return known  # unchanged since the last backup (Parquet files and sealed segments)
    target.parent.mkdir(parents=True, exist_ok=True)
    hasher = hashlib.sha256()
    size = 0
    with source.open("rb") as reader, open(str(target) + ".tmp", "wb") as writer:
        while chunk := reader.read(_CHUNK):
            hasher.update(chunk)
            writer.write(chunk)
            size += len(chunk)
        writer.flush()
        os.fsync(writer.fileno())
    os.replace(str(target) + ".tmp", target)
    manifest.copied += 1
    manifest.copied_bytes += size
    entry: dict[str, Any] = {"sha256": hasher.hexdigest(), "size": size}
    if size == stat.st_size:  # not appended to while copied: the next backup may reuse it
        entry["mtime_ns"] = stat.st_mtime_ns
    if rel.endswith(".parquet"):
        entry["rows"] = _parquet_rows(target)
    return entry


def _parquet_rows(path: Path, *, read: bool = False) -> int:
    """Rows of a Parquet file: from its footer, or (`read`) by decoding every column."""
    try:
        if read:
            return int(pq.read_table(path).num_rows)
        return int(pq.ParquetFile(path).metadata.num_rows)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise BackupError(f"{path}: unreadable Parquet file: {exc}") from None


def _digest(path: Path) -> dict[str, Any]:
    hasher = hashlib.sha256()
    size = 0
    with path.open("rb") as reader:
        while chunk := reader.read(_CHUNK):
            hasher.update(chunk)
            size += len(chunk)
    return {"sha256": hasher.hexdigest(), "size": size}


def _entry_of_bytes(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def _check_file(path: Path, entry: dict[str, Any], name: str) -> None:
    if not path.is_file():
        raise BackupError(f"{path}: missing from the backup ({name})")
    found = _digest(path)
    if found["size"] != entry["size"]:
        raise BackupError(f"{path}: {found['size']} bytes, the manifest says {entry['size']}")
    if found["sha256"] != entry["sha256"]:
        raise BackupError(f"{path}: SHA-256 differs from the manifest's (damaged)")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".tmp")
    with open(temp, "wb") as writer:
        writer.write(data)
        writer.flush()
        os.fsync(writer.fileno())
    os.replace(temp, path)


def _fsync(path: Path) -> None:
    with open(path, "rb") as reader:
        os.fsync(reader.fileno())


def _prune(out: Path, kept: dict[str, Any]) -> None:
    """Remove files of an earlier backup that are no longer in the data folder."""
    if not out.is_dir():
        return
    for root, _, names in os.walk(out):
        for name in names:
            path = Path(root, name)
            if path.relative_to(out).as_posix() not in kept:
                path.unlink()


def sqlite_file(url: str | None) -> Path | None:
    """The SQLite file of a database URL (None for none, or for another database)."""
    if url and url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    return None


__all__ = [
    "QUERIES",
    "BackupError",
    "Manifest",
    "Verified",
    "backup",
    "restore",
    "run_queries",
    "sqlite_file",
    "verify",
]
