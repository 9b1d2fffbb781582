"""Just-in-time access: a user asks for actions on a resource for a while; a grant rule of
the policies decides whether they may ask and for how long at most, and whether a person
approves first; the grant lets the decision point allow exactly that until it ends, and
ends by itself. Every request, decision, start and end is in the audit chain.

    grants = Grants(engine, policies, audit)
    grant = grants.ask("alice", "prod-db", ["admin"], 900, "incident INC-42")
    grants.decide(grant.id, "approved", "rita", {"responder"})   # when the rule asks approval
    grants.covering(request, at)    # the active grant that allows it, if any
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Engine, select, update

from vigil.errors import Conflict, Forbidden, InputError, NotFound
from vigil.store import migrate
from vigil.store.tables import zt_grant_table
from vigil.zerotrust.policy import AccessRequest, GrantRule, PolicySet

Audit = Callable[[str, str, str, dict[str, Any]], Any]


@dataclass(frozen=True, slots=True)
class Grant:
    id: str
    subject: str
    resource: str
    actions: tuple[str, ...]
    rule: str
    starts: float
    ends: float
    state: str  # waiting (for approval), active, denied, expired, revoked
    reason: str = ""

    def allows(self, request: AccessRequest, at: float) -> bool:
        return (
            self.state == "active"
            and self.starts <= at < self.ends
            and request.subject.lower() == self.subject
            and request.resource.lower() == self.resource
            and ("*" in self.actions or request.action in self.actions)
        )


def _grant(row: Any) -> Grant:
    return Grant(
        row.id,
        row.subject,
        row.resource,
        tuple(orjson.loads(row.actions)),
        row.rule,
        row.starts,
        row.ends,
        row.state,
        row.reason or "",
    )


class Grants:
    def __init__(self, engine: Engine, policies: PolicySet, audit: Audit | None = None) -> None:
        migrate(engine)
        self.engine = engine
        self.rules = list(policies.grants)
        self.audit = audit
        self._lock = threading.Lock()
        self._active: dict[str, Grant] = {}
        self._timer: threading.Timer | None = None
        self.load()

    def load(self) -> None:
        g = zt_grant_table.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(zt_grant_table).where(g.state == "active")).all()
        with self._lock:
            self._active = {r.id: _grant(r) for r in rows}
        self.expire()

    def _rule(
        self, subject: str, groups: Iterable[str], resource: str, actions: Sequence[str]
    ) -> GrantRule | None:
        for rule in self.rules:
            who = rule.subjects
            named = who.anyone or subject in who.users or bool(set(groups) & set(who.groups))
            what = rule.resources
            covers = what.anything or resource in [n.lower() for n in what.names]
            allowed = "*" in rule.actions or all(a in rule.actions for a in actions)
            if named and covers and allowed:
                return rule
        return None

    def ask(
        self,
        subject: str,
        resource: str,
        actions: Sequence[str],
        seconds: float,
        reason: str,
        *,
        groups: Iterable[str] = (),
    ) -> Grant:
        """Ask for access; a grant active at once, or waiting for approval. InputError when
        no grant rule lets this subject ask for it."""
        subject, resource = subject.lower(), resource.lower()
        rule = self._rule(subject, groups, resource, actions)
        if rule is None:
            raise Forbidden(
                f"no grant rule lets {subject} ask for {', '.join(actions)} on {resource}"
            )
        if seconds <= 0 or seconds > rule.max_s:
            raise InputError(f"a grant of {rule.id} lasts at most {rule.max_s} s")
        now = time.time()
        state = "waiting" if rule.approval else "active"
        grant = Grant(
            uuid.uuid4().hex,
            subject,
            resource,
            tuple(actions),
            rule.id,
            now,
            now + seconds,
            state,
            reason[:500],
        )
        with self.engine.begin() as conn:
            conn.execute(
                zt_grant_table.insert().values(
                    id=grant.id,
                    subject=subject,
                    resource=resource,
                    actions=orjson.dumps(list(actions)).decode(),
                    rule=rule.id,
                    created=now,
                    starts=now,
                    ends=grant.ends,
                    state=state,
                    reason=grant.reason,
                    seconds=float(seconds),
                )
            )
        self._tell(subject, "grant.requested", grant, {"seconds": seconds, "reason": reason})
        if state == "active":
            self._start(grant, subject)
        return grant

    def decide(self, grant_id: str, decision: str, actor: str, roles: Iterable[str]) -> Grant:
        """Approve (the window starts now) or deny a waiting grant."""
        if decision not in ("approved", "denied"):
            raise InputError("a decision is approved or denied")
        row = self._row(grant_id)
        rule = next((r for r in self.rules if r.id == row.rule), None)
        allowed = set(rule.approvers if rule else ()) | {"admin"}
        if not set(roles) & allowed:
            raise Forbidden(
                f"deciding {grant_id} takes one of the roles {', '.join(sorted(allowed))}"
            )
        now = time.time()
        values: dict[str, Any] = {"approver": actor}
        if decision == "approved":
            values.update(state="active", starts=now, ends=now + row.seconds)
        else:
            values.update(state="denied")
        g = zt_grant_table.c
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(zt_grant_table)
                .where(g.id == grant_id, g.state == "waiting")
                .values(**values)
            ).rowcount
        if not changed:
            raise Conflict(f"grant {grant_id} is not waiting for a decision")
        grant = _grant(self._row(grant_id))
        self._tell(actor, f"grant.{decision}", grant, {})
        if decision == "approved":
            self._start(grant, actor)
        return grant

    def covering(self, request: AccessRequest, at: float) -> Grant | None:
        with self._lock:
            active = list(self._active.values())
        return next((g for g in active if g.allows(request, at)), None)

    def find(
        self, *, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Grants (in `state`), the latest asked first."""
        g = zt_grant_table.c
        query = select(zt_grant_table).order_by(g.created.desc(), g.id).limit(limit).offset(offset)
        if state:
            query = query.where(g.state == state)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def expire(self, now: float | None = None) -> list[str]:
        """End the grants whose window is over (audited); the ended ids."""
        now = time.time() if now is None else now
        with self._lock:
            over = [g for g in self._active.values() if g.ends <= now]
        ended = []
        g = zt_grant_table.c
        for grant in over:
            with self.engine.begin() as conn:
                changed = conn.execute(
                    update(zt_grant_table)
                    .where(g.id == grant.id, g.state == "active")
                    .values(state="expired")
                ).rowcount
            with self._lock:
                self._active.pop(grant.id, None)
            if changed:
                self._tell("vigil:zerotrust", "grant.expired", grant, {"ended": grant.ends})
                ended.append(grant.id)
        self._schedule()
        return ended

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _start(self, grant: Grant, actor: str) -> None:
        with self._lock:
            self._active[grant.id] = grant
        self._tell(actor, "grant.started", grant, {"ends": grant.ends})
        self._schedule()

    def _schedule(self) -> None:
        """Wake up when the next grant ends, to end it (and say so) on time."""
        with self._lock:
            ends = [g.ends for g in self._active.values()]
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not ends:
                return
            self._timer = threading.Timer(max(0.0, min(ends) - time.time()), self.expire)
            self._timer.daemon = True
            self._timer.start()

    def _row(self, grant_id: str) -> Any:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(zt_grant_table).where(zt_grant_table.c.id == grant_id)
            ).first()
        if row is None:
            raise NotFound(f"no grant {grant_id}")
        return row

    def _tell(self, actor: str, action: str, grant: Grant, detail: dict[str, Any]) -> None:
        if self.audit is not None:
            self.audit(
                actor,
                action,
                f"grant:{grant.id}",
                {
                    "subject": grant.subject,
                    "resource": grant.resource,
                    "actions": list(grant.actions),
                    "rule": grant.rule,
                    **detail,
                },
            )


__all__ = ["Grant", "Grants"]
