"""The state database on PostgreSQL, backed up and restored with its own tools: `pg_dump`
(custom format) and `pg_restore`, found beside the server's binaries or on the PATH.

The dump and the figures recorded with it (row counts per table, the fixed query set) come
from one snapshot: a repeatable-read transaction exports its snapshot, the figures are read
in it, and `pg_dump --snapshot` dumps exactly that. The password of the URL goes to the
tools in their environment (`PGPASSWORD`), never on a command line."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vigil.errors import Conflict, Invalid, Unavailable

Answers = Callable[[Any], dict[str, Any]]


class ToolMissing(Unavailable):
    """pg_dump or pg_restore is not installed."""


class DumpFailed(Invalid):
    """pg_dump or pg_restore failed; the message names the file and the tool's reason."""


def tool(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    path = found[-1] if found else shutil.which(name)
    if path is None:
        raise ToolMissing(f"{name} is not installed (Debian: postgresql-client)")
    return path


def libpq(url: str) -> tuple[str, dict[str, str]]:
    """A SQLAlchemy URL as a libpq URL without its password, and the environment with it."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    env = {**os.environ}
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def dump(url: str, target: Path, answers: Answers) -> tuple[dict[str, int], dict[str, Any]]:
    """Dump the database into `target`; its row counts and query answers, of the same
    snapshot."""
    import psycopg

    conninfo, env = libpq(url)
    with psycopg.connect(conninfo, password=env.get("PGPASSWORD")) as db:
        db.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        db.read_only = True
        (snapshot,) = db.execute("SELECT pg_export_snapshot()").fetchone()  # type: ignore[misc]
        tables = counts(db)
        found = answers(db)
        _run(
            [tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
             f"--snapshot={snapshot}", f"--file={target}", conninfo],
            env, f"pg_dump of the state database into {target}",
        )  # fmt: skip
        db.rollback()
    return tables, found


def check(dump_file: Path) -> None:
    """The archive's table of contents reads (a damaged archive fails here or on restore)."""
    _run([tool("pg_restore"), "--list", str(dump_file)], None, f"{dump_file}: unreadable dump")


def restore(dump_file: Path, url: str, answers: Answers) -> tuple[dict[str, int], dict[str, Any]]:
    """Restore into an empty database; its row counts and query answers afterwards."""
    import psycopg

    conninfo, env = libpq(url)
    with psycopg.connect(conninfo, password=env.get("PGPASSWORD")) as db:
        if counts(db):
            raise Conflict("restore needs an empty database: the target holds tables")
    _run(
        [tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
         f"--dbname={conninfo}", str(dump_file)],
        env, f"{dump_file}: pg_restore failed",
    )  # fmt: skip
    with psycopg.connect(conninfo, password=env.get("PGPASSWORD")) as db:
        return counts(db), answers(db)


def counts(db: Any) -> dict[str, int]:
    names = [
        row[0]
        for row in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
            "AND table_type = 'BASE TABLE' ORDER BY table_name"
        ).fetchall()
    ]
    out: dict[str, int] = {}
    for name in names:  # from the catalogue, quoted as an identifier
        quoted = '"' + name.replace('"', '""') + '"'
        out[name] = int(db.execute(f"SELECT count(*) FROM {quoted}").fetchone()[0])  # noqa: S608
    return out


def _run(command: list[str], env: dict[str, str] | None, failure: str) -> None:
    done = subprocess.run(command, env=env, capture_output=True, check=False)
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise DumpFailed(f"{failure}: {detail[0] if detail else f'exit {done.returncode}'}")


__all__ = ["DumpFailed", "ToolMissing", "check", "counts", "dump", "libpq", "restore", "tool"]
