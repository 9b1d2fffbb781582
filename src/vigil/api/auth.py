"""API tokens and roles.

A token is 256 random bits (`vgl_` + URL-safe text), shown once when made; the database keeps
its SHA-256 only. A slow password hash buys nothing for a secret with 256 bits of entropy, and
a plain digest lets a request be checked with one indexed lookup.

A token found valid is remembered for `KNOWN_S` (one second), so a client asking many times a
second (an enforcement point asking for decisions) costs one lookup a second, not one a
request. A token revoked through the store that remembers it is refused at once; one revoked
elsewhere (`vigil token revoke`, another process) is refused within `KNOWN_S`.

What each role may do (`PERMISSIONS`):

    permission       admin analyst responder viewer ingest pep
    events:write       x                             x
    alerts:read        x     x        x        x
    rules:read         x     x        x        x
    indicators:read    x     x        x        x
    indicators:write   x     x
    metrics:read       x     x        x        x
    incidents:read     x     x        x        x
    assets:read        x     x        x        x
    assets:write       x     x
    cases:write        x     x        x
    playbooks:read     x     x        x        x
    playbooks:run      x              x
    playbooks:approve  x              x
    hunts:run          x     x
    hunts:manage       x     x
    exercises:write    x     x
    access:decide      x                                    pep
    tokens:manage      x
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import Engine, bindparam, select

from vigil.errors import InputError
from vigil.store import migrate
from vigil.store.tables import api_token_table

ROLES = ("admin", "analyst", "responder", "viewer", "ingest", "pep")  # pep: enforcement points
_READERS = frozenset(("admin", "analyst", "responder", "viewer"))
PERMISSIONS: dict[str, frozenset[str]] = {
    "events:write": frozenset(("admin", "ingest")),
    "alerts:read": _READERS,
    "rules:read": _READERS,
    "indicators:read": _READERS,
    "indicators:write": frozenset(("admin", "analyst")),  # add an indicator by hand
    "metrics:read": _READERS,
    "incidents:read": _READERS,
    "assets:read": _READERS,
    "assets:write": frozenset(("admin", "analyst")),
    "cases:write": frozenset(("admin", "analyst", "responder")),
    "playbooks:read": _READERS,
    "playbooks:run": frozenset(("admin", "responder")),  # run by hand, undo
    "playbooks:approve": frozenset(("admin", "responder")),  # and the step's own roles
    "hunts:run": frozenset(("admin", "analyst")),
    "hunts:manage": frozenset(("admin", "analyst")),
    "exercises:write": frozenset(("admin", "analyst")),  # report exercise results
    "access:decide": frozenset(("admin", "pep")),  # a policy enforcement point asks
    "tokens:manage": frozenset(("admin",)),
}
T = TypeVar("T")
PREFIX = "vgl_"
TOUCH_EVERY = 60.0
KNOWN_S = 1.0  # how long a token found valid is believed without asking the database
KNOWN_MOST = 10_000  # tokens remembered at once; past it, the memory starts afresh


@dataclass(frozen=True, slots=True)
class Principal:
    id: str
    name: str
    role: str

    def may(self, permission: str) -> bool:
        return self.role in PERMISSIONS.get(permission, frozenset())


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: str
    name: str
    role: str
    created: float
    last_used: float | None
    revoked: bool


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Believed(Generic[T]):
    """What was found valid, believed for `seconds` without asking the database again (a
    coroutine may ask: no query, no wait). A withdrawal made through its owner (a token
    revoked, a session ended) holds at once: what it names is forgotten, and a lookup that
    overlapped it is not kept."""

    def __init__(self, seconds: float = KNOWN_S, most: int = KNOWN_MOST) -> None:
        self.seconds = seconds
        self.most = most  # past it, the memory starts afresh
        self._found: dict[str, tuple[T, float]] = {}  # key: what, when asked
        self._lock = threading.Lock()
        self._withdrawals = 0

    def get(self, key: str) -> T | None:
        found = self._found.get(key)
        if found is None or time.monotonic() - found[1] >= self.seconds:
            return None
        return found[0]

    def asking(self) -> tuple[float, int]:
        """Taken before a lookup, for `keep`: when, and the withdrawals so far."""
        return time.monotonic(), self._withdrawals

    def keep(self, key: str, value: T, asked: tuple[float, int]) -> None:
        with self._lock:
            if asked[1] == self._withdrawals:  # no withdrawal while it was looked up
                if len(self._found) >= self.most:
                    self._found.clear()
                self._found[key] = (value, asked[0])

    def forget(self, key: str) -> None:
        with self._lock:
            self._found.pop(key, None)

    @contextlib.contextmanager
    def withdrawing(self, named: Callable[[str, T], bool]) -> Iterator[None]:
        """Around a withdrawal's write: what `named` names is forgotten before and after
        it, and no lookup overlapping it is kept."""
        self._withdraw(named)
        try:
            yield
        finally:
            self._withdraw(named)

    def _withdraw(self, named: Callable[[str, T], bool]) -> None:
        with self._lock:
            self._withdrawals += 1
            self._found = {k: v for k, v in self._found.items() if not named(k, v[0])}


class TokenStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        migrate(engine)
        self._touched: dict[str, float] = {}
        self._known: Believed[Principal] = Believed()  # digest: principal
        self._by_hash = select(api_token_table).where(api_token_table.c.hash == bindparam("h"))

    def create(self, role: str, name: str) -> tuple[str, TokenInfo]:
        if role not in ROLES:
            raise InputError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
        token = PREFIX + secrets.token_urlsafe(32)
        info = TokenInfo(str(uuid.uuid4()), name[:128], role, time.time(), None, False)
        with self.engine.begin() as conn:
            conn.execute(
                api_token_table.insert(),
                [
                    {
                        "id": info.id,
                        "name": info.name,
                        "role": role,
                        "hash": _digest(token),
                        "created": info.created,
                        "last_used": None,
                        "revoked": False,
                    }
                ],
            )
        return token, info

    def known(self, token: str) -> Principal | None:
        """The token's principal if it was found valid within `KNOWN_S`, without asking the
        database (so a coroutine may call it); None when it must be verified."""
        return self._known.get(_digest(token)) if token.startswith(PREFIX) else None

    def verify(self, token: str) -> Principal | None:
        if not token.startswith(PREFIX) or not 20 <= len(token) <= 100:
            return None
        digest = _digest(token)
        asked = self._known.asking()  # before the query
        with self.engine.connect() as conn:
            row = conn.execute(self._by_hash, {"h": digest}).first()
        if row is None or row.revoked:
            self._known.forget(digest)
            return None
        principal = Principal(row.id, row.name, row.role)
        # a revocation while the row was read may be of this token: not remembered
        self._known.keep(digest, principal, asked)
        now = time.time()
        if now - self._touched.get(row.id, 0.0) >= TOUCH_EVERY:
            self._touched[row.id] = now
            with self.engine.begin() as conn:
                conn.execute(
                    api_token_table.update()
                    .where(api_token_table.c.id == row.id)
                    .values(last_used=now)
                )
        return principal

    def revoke(self, token_id: str) -> bool:
        # a verify reading the row meanwhile does not remember it
        revoked = self._known.withdrawing(lambda _, principal: principal.id == token_id)
        with revoked, self.engine.begin() as conn:
            result = conn.execute(
                api_token_table.update()
                .where(api_token_table.c.id == token_id)
                .values(revoked=True)
            )
        return bool(result.rowcount)

    def list(self) -> list[TokenInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_token_table).order_by(api_token_table.c.created))
            return [
                TokenInfo(r.id, r.name, r.role, r.created, r.last_used, bool(r.revoked))
                for r in rows
            ]
