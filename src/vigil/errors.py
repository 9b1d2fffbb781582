"""The one exception hierarchy of Vigil. Problems with single records or rules are not raised:
they are reported (`vigil.ingest.Problem`, `vigil.detect.sigma.RuleProblem`) and work goes on.

The kinds below say what sort of failure it is; the API turns each kind into its HTTP status
in one place (`vigil.api.app`), never by reading the message."""

from __future__ import annotations

import errno
from collections.abc import Iterator


class VigilError(Exception):
    """Root of every error Vigil raises on purpose."""


class Invalid(VigilError):
    """A path, folder, option, value or request given by the user cannot be used."""


# The name most of the code knows it by.
InputError = Invalid


class NotFound(VigilError):
    """What was asked for (an incident, alert, task, token, file...) does not exist."""


class Forbidden(VigilError):
    """The caller's role may not do this (approve a step held for other roles...)."""


class Conflict(VigilError):
    """The request clashes with the current state (a status it cannot reach from here...)."""


class TooLarge(InputError):
    """A request or upload is over a size or count limit (what was sent must be split)."""


class Unsupported(InputError):
    """A content type or encoding Vigil does not read."""


class Unavailable(VigilError):
    """Vigil cannot take this now (overload, storage trouble); try again after
    `retry_after` seconds."""

    def __init__(self, reason: str, retry_after: float = 2.0) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Overloaded(Unavailable):
    """The pipeline cannot take more now; the sender should retry after `retry_after` s."""


class StorageUnavailable(Unavailable):
    """The data folder cannot take writes now (read-only, not writable, failing)."""


class StorageFull(StorageUnavailable):
    """The data folder's file system is full: nothing more can be stored until space is
    freed."""


# errno values that say the data folder cannot take writes: not a fault of the data being
# written, so the work is retried (not set aside) and senders are told to come back later
_FULL = {errno.ENOSPC, errno.EDQUOT}
_UNWRITABLE = {
    errno.EROFS: "read-only",
    errno.EACCES: "not writable",
    errno.EPERM: "not writable",
    errno.EIO: "failing (I/O error)",
}
# the same from SQLite (sqlite3 errors carry the code): SQLITE_FULL; READONLY, IOERR, CANTOPEN
_SQLITE_FULL = 13
_SQLITE_UNWRITABLE = {8: "read-only", 10: "failing (I/O error)", 14: "not writable"}


def storage_problem(exc: BaseException) -> StorageUnavailable | None:
    """What an error means for storage, when one of its causes is the data folder's file
    system refusing writes (full, read-only, not writable, failing): a StorageFull or an
    Unavailable to raise or report; None when the error has another cause."""
    for current in _causes(exc):
        if isinstance(current, StorageUnavailable):
            return current
        if isinstance(current, OSError) and current.errno is not None:
            if current.errno in _FULL:
                return StorageFull(f"the data folder's file system is full ({current})", 30.0)
            if current.errno in _UNWRITABLE:
                return StorageUnavailable(
                    f"the data folder is {_UNWRITABLE[current.errno]} ({current})", 10.0
                )
        code = getattr(current, "sqlite_errorcode", None)
        if isinstance(code, int):
            if code & 0xFF == _SQLITE_FULL:
                return StorageFull(f"the state database's disk is full ({current})", 30.0)
            if code & 0xFF in _SQLITE_UNWRITABLE:
                reason = _SQLITE_UNWRITABLE[code & 0xFF]
                return StorageUnavailable(f"the state database is {reason} ({current})", 10.0)
    return None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The error, then what caused it, in turn (each once)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        # SQLAlchemy keeps the driver's error as `orig`
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__


# The longest wait between retries while the bus or a server is out of reach: work resumes
# within this once it is back (storage refusing writes is waited on longer)
OUTAGE_BACKOFF = 5.0


def retry_wait(tries: int, longest: float) -> float:
    """How long to wait before the next try, after `tries` failures in a row: doubling from
    a second, never past `longest`."""
    return min(longest, 0.5 * 2.0 ** min(tries, 6))


def outage(exc: BaseException) -> Unavailable | None:
    """What an error means when something the work needs cannot be reached or written now
    (the data folder, the bus, a server): not a fault of the records being processed, which
    are retried after a wait, never set aside. None when the error has another cause."""
    storage = storage_problem(exc)
    if storage is not None:
        return storage
    for cause in _causes(exc):
        if isinstance(cause, Unavailable):
            return cause
        if _database_out_of_reach(cause):
            return Unavailable(f"the database cannot be reached now ({cause})", 5.0)
    return None


def _database_out_of_reach(exc: BaseException) -> bool:
    """PostgreSQL refusing, dropping or shutting the connection (psycopg's OperationalError,
    a connection SQLAlchemy found dead): the server's state, not the records'. Read by name:
    the database driver is not this module's to import."""
    if getattr(exc, "connection_invalidated", False) is True:
        return True
    return any(
        kind.__name__ == "OperationalError" and kind.__module__.startswith("psycopg")
        for kind in type(exc).__mro__
    )
