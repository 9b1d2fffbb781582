"""Sessions verified continuously: an allowed request may open a session (its lifetime the
decision's obligation); whenever what the decision point knows changes for a user or a
device (live risk, posture) or the policies change, the sessions concerned are decided
again at once, and one that is no longer allowed is revoked: written down, put in the audit
chain, and announced to the receivers as a CAEP session-revoked Security Event Token.

    sessions = Sessions(engine, pdp, transmitter, audit)
    opened = sessions.open(request, decision)         # after an allow
    sessions.check(opened.id)                         # None, or why it no longer holds
    sessions.reevaluate(subject="alice")              # revoked: [ids]
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Engine, select, update

from vigil.store import migrate
from vigil.store.tables import zt_session_table
from vigil.zerotrust.pdp import Decision, DecisionPoint
from vigil.zerotrust.policy import AccessRequest
from vigil.zerotrust.ssf import SESSION_REVOKED, Transmitter

Audit = Callable[[str, str, str, dict[str, Any]], Any]  # actor, action, subject, detail


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    request: AccessRequest
    created: float
    expires: float
    state: str = "active"  # active, revoked
    reason: str = ""


def _request(row: Any) -> AccessRequest:
    given = orjson.loads(row.request)
    given["groups"] = tuple(given.get("groups") or ())
    return AccessRequest(**given)


class Sessions:
    def __init__(
        self,
        engine: Engine,
        pdp: DecisionPoint,
        transmitter: Transmitter | None = None,
        audit: Audit | None = None,
    ) -> None:
        migrate(engine)
        self.engine = engine
        self.pdp = pdp
        self.transmitter = transmitter
        self.audit = audit
        self._lock = threading.Lock()
        self._active: dict[str, Session] = {}  # the live ones, for checks at request speed
        self.load()

    def load(self) -> None:
        """Take up the sessions still active from the state database."""
        s = zt_session_table.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(zt_session_table).where(s.state == "active", s.expires > time.time())
            ).all()
        with self._lock:
            self._active = {r.id: Session(r.id, _request(r), r.created, r.expires) for r in rows}

    def open(self, request: AccessRequest, decision: Decision) -> Session:
        if decision.outcome != "allow":
            raise ValueError("a session opens on an allow only")
        now = time.time()
        lifetime = float(decision.obligations.get("session_s", 3600))
        session = Session(
            uuid.uuid4().hex, dataclasses.replace(request, at=None), now, now + lifetime
        )
        with self.engine.begin() as conn:
            conn.execute(
                zt_session_table.insert().values(
                    id=session.id,
                    subject=request.subject.lower(),
                    device=(request.device or "").lower(),
                    request=orjson.dumps(session.request).decode(),
                    created=now,
                    expires=session.expires,
                    state="active",
                    decision=decision.id,
                )
            )
        with self._lock:
            self._active[session.id] = session
        return session

    def holds(self, session_id: str) -> bool:
        """Whether the session is active and in its lifetime, from memory only (no query: a
        coroutine may ask); when not, `check` says why."""
        with self._lock:
            session = self._active.get(session_id)
        return session is not None and session.expires > time.time()

    def check(self, session_id: str) -> str | None:
        """None while the session holds; else why not (revoked, expired, unknown)."""
        with self._lock:
            session = self._active.get(session_id)
        if session is not None:
            if session.expires > time.time():
                return None
            self._end(session.id, "expired", "its lifetime is over")
            return "the session expired"
        s = zt_session_table.c
        with self.engine.connect() as conn:
            row = conn.execute(select(s.state, s.reason).where(s.id == session_id)).first()
        if row is None:
            return "no such session"
        return f"the session was {row.state}" + (f": {row.reason}" if row.reason else "")

    def active(self, *, subject: str | None = None, device: str | None = None) -> list[Session]:
        with self._lock:
            found = list(self._active.values())
        return [
            s
            for s in found
            if (subject is None or s.request.subject.lower() == subject.lower())
            and (device is None or (s.request.device or "").lower() == device.lower())
        ]

    def listed(self, *, subject: str | None = None, limit: int = 100) -> dict[str, Any]:
        """The live sessions (of `subject`), the latest opened first: {"sessions": a page of
        them as dicts, "total": how many are live}."""
        now = time.time()
        live = [s for s in self.active(subject=subject) if s.expires > now]
        live.sort(key=lambda s: (-s.created, s.id))
        return {"sessions": [dataclasses.asdict(s) for s in live[:limit]], "total": len(live)}

    def reevaluate(self, *, subject: str | None = None, device: str | None = None) -> list[str]:
        """Decide again the sessions of a subject or a device (neither: all); revoke those no
        longer allowed; the revoked ids."""
        revoked = []
        for session in self.active(subject=subject, device=device):
            decision = self.pdp.decide(dataclasses.replace(session.request, at=None))
            if decision.outcome != "allow":
                reason = "; ".join(decision.reasons) or decision.outcome
                self.revoke(session.id, reason, decision=decision)
                revoked.append(session.id)
        return revoked

    def revoke(
        self,
        session_id: str,
        reason: str,
        *,
        actor: str = "vigil:zerotrust",
        decision: Decision | None = None,
    ) -> bool:
        """Revoke a session (idempotent); announce it; whether it was active."""
        with self._lock:
            session = self._active.get(session_id)
        if session is None or not self._end(session_id, "revoked", reason):
            return False
        detail = {
            "subject": session.request.subject,
            "device": session.request.device,
            "resource": session.request.resource,
            "reason": reason,
            "decision": decision.id if decision else None,
        }
        if self.audit is not None:
            self.audit(actor, "session.revoked", f"session:{session_id}", detail)
        if self.transmitter is not None:
            self.transmitter.emit(
                SESSION_REVOKED,
                {"format": "opaque", "id": session_id},
                {"reason_admin": {"en": reason[:500]}, "initiating_entity": "policy"},
            )
        return True

    def _end(self, session_id: str, state: str, reason: str) -> bool:
        s = zt_session_table.c
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(zt_session_table)
                .where(s.id == session_id, s.state == "active")
                .values(state=state, reason=reason[:2000], ended=time.time())
            ).rowcount
        with self._lock:
            self._active.pop(session_id, None)
        return bool(changed)


__all__ = ["Session", "Sessions"]
