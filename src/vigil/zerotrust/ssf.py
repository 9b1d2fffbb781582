"""The Shared Signals transmitter (OpenID Shared Signals Framework, CAEP): Security Event
Tokens (RFC 8417, `typ: secevent+jwt`) signed with the server's own key (ES256, published as
a JWK set), kept for every receiver that wants the event, pushed to those with an endpoint
(RFC 8935) and handed to those that poll (RFC 8936), each until acknowledged.

    transmitter = Transmitter(engine, SigningKey.at(path), "https://vigil.example", receivers)
    transmitter.emit(SESSION_REVOKED, {"format": "opaque", "id": session_id},
                     {"reason_admin": {"en": "user risk 80 is over 50"}})
    transmitter.poll("proxy", ack=[...], max_events=10)   # {"sets": {...}, "moreAvailable": …}
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey
from sqlalchemy import Engine, func, select, update

from vigil.store import migrate
from vigil.store.tables import ssf_event_table

CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
SESSION_REVOKED = CAEP + "session-revoked"
DEVICE_COMPLIANCE_CHANGE = CAEP + "device-compliance-change"
TYP = "secevent+jwt"
PUSH_TIMEOUT_S = 5.0


class SigningKey:
    """The transmitter's EC P-256 key, kept in a file only its owner reads; made once."""

    def __init__(self, key: ECKey) -> None:
        self.key = key
        self.kid = key.thumbprint()

    @classmethod
    def at(cls, path: Path) -> SigningKey:
        if path.exists():
            return cls(ECKey.import_key(path.read_bytes()))
        key = ECKey.generate_key("P-256", private=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(key.as_pem(private=True))
        return cls(key)

    def jwks(self) -> dict[str, Any]:
        public = dict(self.key.as_dict(private=False))
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "ES256"}]}


@dataclass(frozen=True, slots=True)
class Receiver:
    """A registered receiver: who it is (the token's audience), where to push (None: it
    polls), the Authorization header its endpoint wants, and the events it wants."""

    id: str
    audience: str
    push_url: str | None = None
    authorization: str | None = None
    events: tuple[str, ...] = (SESSION_REVOKED, DEVICE_COMPLIANCE_CHANGE)


@dataclass
class Transmitter:
    engine: Engine
    key: SigningKey
    issuer: str
    receivers: Sequence[Receiver] = ()
    pushed: int = 0
    push_failures: int = 0
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(2, "vigil-ssf"))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        migrate(self.engine)

    def token(
        self,
        receiver: Receiver,
        event_type: str,
        subject: Mapping[str, Any],
        event: Mapping[str, Any],
        at: float,
    ) -> tuple[str, str]:
        """A signed SET for one receiver: (jti, the compact JWS)."""
        jti = uuid.uuid4().hex
        claims = {
            "iss": self.issuer,
            "aud": receiver.audience,
            "iat": int(at),
            "jti": jti,
            "sub_id": dict(subject),
            "events": {event_type: {"event_timestamp": int(at), **event}},
        }
        header = {"alg": "ES256", "typ": TYP, "kid": self.key.kid}
        return jti, jwt.encode(header, claims, self.key.key)

    def emit(
        self,
        event_type: str,
        subject: Mapping[str, Any],
        event: Mapping[str, Any],
        *,
        at: float | None = None,
    ) -> list[str]:
        """The event as a SET to every receiver that wants it: kept, and pushed to those with
        an endpoint; the SETs' ids."""
        now = time.time() if at is None else at
        rows: list[dict[str, Any]] = []
        for receiver in self.receivers:
            if event_type not in receiver.events:
                continue
            jti, token = self.token(receiver, event_type, subject, event, now)
            rows.append({"jti": jti, "receiver": receiver.id, "token": token, "created": now})
        if rows:
            with self.engine.begin() as conn:
                conn.execute(ssf_event_table.insert(), rows)
        for row in rows:
            receiver = next(r for r in self.receivers if r.id == row["receiver"])
            if receiver.push_url:
                self._pool.submit(self._push, receiver, row["jti"], row["token"])
        return [row["jti"] for row in rows]

    def _push(self, receiver: Receiver, jti: str, token: str) -> bool:
        """RFC 8935: POST the SET; 202 means received. A failure leaves it for the next
        push (`redeliver`) or a poll."""
        headers = {"Content-Type": "application/secevent+jwt", "Accept": "application/json"}
        if receiver.authorization:
            headers["Authorization"] = receiver.authorization
        try:
            answer = httpx.post(
                receiver.push_url or "",
                content=token,
                headers=headers,
                timeout=PUSH_TIMEOUT_S,
                follow_redirects=False,
            )
        except httpx.HTTPError:
            self.push_failures += 1
            return False
        if answer.status_code != 202:
            self.push_failures += 1
            return False
        self._ack(receiver.id, [jti])
        self.pushed += 1
        return True

    def redeliver(self) -> int:
        """Push again what push receivers have not acknowledged; how many went."""
        sent = 0
        for receiver in self.receivers:
            if not receiver.push_url:
                continue
            for jti, token in self._waiting(receiver.id, 1000):
                sent += self._push(receiver, jti, token)
        return sent

    def poll(
        self, receiver_id: str, *, ack: Sequence[str] = (), max_events: int = 100
    ) -> dict[str, Any]:
        """RFC 8936: acknowledge what the receiver got, hand it what waits."""
        if not any(r.id == receiver_id for r in self.receivers):
            from vigil.errors import NotFound

            raise NotFound(f"no receiver {receiver_id!r}")
        self._ack(receiver_id, ack)
        waiting = self._waiting(receiver_id, max_events + 1)
        return {"sets": dict(waiting[:max_events]), "moreAvailable": len(waiting) > max_events}

    def _waiting(self, receiver_id: str, limit: int) -> list[tuple[str, str]]:
        e = ssf_event_table.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(e.jti, e.token)
                .where(e.receiver == receiver_id, e.delivered.is_(None))
                .order_by(e.created)
                .limit(limit)
            ).all()
        return [(jti, token) for jti, token in rows]

    def _ack(self, receiver_id: str, jtis: Sequence[str]) -> None:
        if jtis:
            e = ssf_event_table.c
            with self.engine.begin() as conn:
                conn.execute(
                    update(ssf_event_table)
                    .where(e.receiver == receiver_id, e.jti.in_(list(jtis)), e.delivered.is_(None))
                    .values(delivered=time.time())
                )

    def undelivered(self) -> int:
        e = ssf_event_table.c
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(ssf_event_table).where(e.delivered.is_(None))
                ).scalar_one()
            )

    def close(self) -> None:
        self._pool.shutdown(wait=True)


__all__ = [
    "DEVICE_COMPLIANCE_CHANGE",
    "SESSION_REVOKED",
    "Receiver",
    "SigningKey",
    "Transmitter",
]
