"""Console sign-in: an API token exchanged for a session.

The browser keeps a random session secret in a cookie (HttpOnly, SameSite=Strict, Secure
under TLS); the state database keeps its SHA-256, the token it was made from and the value
every form must send back (`csrf`). A session ends on sign-out, `max_s` after sign-in, after
`idle_s` without a request, or as soon as its token is revoked: each lookup joins the token.
A session found valid is believed for `KNOWN_S` without asking the database again (the
same `Believed` as tokens); signing out through this store ends it at once.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import Engine, bindparam, select

from vigil.api.auth import KNOWN_MOST, Believed, Principal, TokenStore
from vigil.errors import Forbidden
from vigil.store import migrate
from vigil.store.tables import api_token_table, console_session_table

TOUCH_EVERY = 30.0  # `seen` is written at most this often per session
CONSOLE_ROLES = frozenset(("admin", "analyst", "responder", "viewer"))


@dataclass(frozen=True, slots=True)
class Session:
    id: str  # the SHA-256 of the cookie's secret
    principal: Principal
    csrf: str
    expires: float

    def may(self, permission: str) -> bool:
        return self.principal.may(permission)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ConsoleSessions:
    def __init__(
        self, engine: Engine, tokens: TokenStore, *, idle_s: float = 1800.0, max_s: float = 43200.0
    ) -> None:
        self.engine = engine
        self.tokens = tokens
        self.idle_s = idle_s
        self.max_s = max_s
        migrate(engine)
        self._known: Believed[Session] = Believed()  # session id: the session
        self._seen: dict[str, float] = {}
        table, token = console_session_table.c, api_token_table.c
        self._lookup = (
            select(table.csrf, table.expires, table.seen, table.ended, token.id, token.name)
            .add_columns(token.role, token.revoked)
            .join_from(console_session_table, api_token_table, table.token_id == token.id)
            .where(table.id == bindparam("id"))
        )

    def sign_in(self, token: str, replacing: str = "") -> tuple[str, Session]:
        """A new session for a valid token of a role that may read the console: the
        cookie's secret and the session. Raises Forbidden otherwise (one message for an
        unknown and a revoked token). The session of the cookie it replaces (`replacing`,
        its secret) ends, and sessions long over are deleted."""
        principal = self.tokens.verify(token.strip())
        if principal is None:
            raise Forbidden("that token is not valid")
        if principal.role not in CONSOLE_ROLES:
            raise Forbidden(f"the {principal.role} role has no console")
        if replacing:
            self.sign_out(_digest(replacing))
        secret = secrets.token_urlsafe(32)
        now = time.time()
        session = Session(_digest(secret), principal, secrets.token_urlsafe(32), now + self.max_s)
        table = console_session_table.c
        with self.engine.begin() as conn:
            conn.execute(
                console_session_table.delete().where(
                    (table.expires < now) | (table.ended & (table.seen < now - self.max_s))
                )
            )
            conn.execute(
                console_session_table.insert(),
                [
                    {
                        "id": session.id,
                        "token_id": principal.id,
                        "csrf": session.csrf,
                        "created": now,
                        "expires": session.expires,
                        "seen": now,
                        "ended": False,
                    }
                ],
            )
        return secret, session

    def known(self, secret: str) -> Session | None:
        """The session if it was found valid within `KNOWN_S` (no query: a coroutine may
        call it); None when it must be looked up."""
        found = self._known.get(_digest(secret)) if secret else None
        return found if found is not None and time.time() < found.expires else None

    def find(self, secret: str, *, touch: bool = True) -> Session | None:
        """The live session behind a cookie's secret, or None (unknown, signed out, expired,
        idle too long, or its token revoked). `touch`: the request counts as use."""
        if not secret or len(secret) > 100:
            return None
        digest = _digest(secret)
        asked = self._known.asking()  # a sign-out meanwhile: not remembered
        with self.engine.connect() as conn:
            row = conn.execute(self._lookup, {"id": digest}).first()
        now = time.time()
        seen = max(self._seen.get(digest, 0.0), row.seen if row is not None else 0.0)
        if (
            row is None
            or row.ended
            or row.revoked
            or now >= row.expires
            or now - seen >= self.idle_s
        ):
            self._known.forget(digest)
            return None
        session = Session(digest, Principal(row.id, row.name, row.role), row.csrf, row.expires)
        self._known.keep(digest, session, asked)
        if touch and now - seen >= TOUCH_EVERY:
            if len(self._seen) >= KNOWN_MOST:
                self._seen.clear()  # `seen` is in the database too: memory only saves writes
            self._seen[digest] = now
            with self.engine.begin() as conn:
                conn.execute(
                    console_session_table.update()
                    .where(console_session_table.c.id == digest)
                    .values(seen=now)
                )
        return session

    def sign_out(self, session_id: str) -> None:
        ended = self._known.withdrawing(lambda key, _: key == session_id)
        with ended, self.engine.begin() as conn:
            conn.execute(
                console_session_table.update()
                .where(console_session_table.c.id == session_id)
                .values(ended=True)
            )
        self._seen.pop(session_id, None)
