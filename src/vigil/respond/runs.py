"""Response runs in the state database: a run (`playbook_run`) and its steps and their
compensations (`playbook_step`), each written before it acts; who holds a run (a worker's
lease, or a time before which nobody takes it); what waits for a person; the figures.

    store = RunStore(engine)
    ids = store.insert(rows)                     # a run's key already known: none
    store.claim(run_id, "host:respond", 30.0)    # True: this worker holds it
    store.write_step(run, "isolate", "do", action="firewall.isolate", state="started", …)
    store.detail(run_id)                         # the run with its steps and undo
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import Engine, func, or_, select, update

from vigil.errors import NotFound
from vigil.respond.result import ActionResult
from vigil.store import migrate, upsert_insert
from vigil.store.tables import run_step_table, run_table

ACTIVE = ("queued", "running", "undoing")  # a worker takes these
CHUNK = 400  # runs inserted per statement


def dumps(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def loads(text: str | None) -> Any:
    return orjson.loads(text) if text else None


def shown(result: ActionResult | None) -> dict[str, Any]:
    """A connector's answer as a step keeps it."""
    if result is None:
        return {}
    return {
        "ok": result.ok,
        "dry_run": result.dry_run,
        "commands": result.commands,
        "output": result.output[:4096],
        "state": result.state,
    }


def _run_out(row: Mapping[Any, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("definition", "context", "key")}


def _step_out(row: Mapping[Any, Any]) -> dict[str, Any]:
    out = dict(row)
    out["inputs"] = loads(row["inputs"]) or {}
    out["result"] = loads(row["result"])
    out["approval_roles"] = loads(row["approval_roles"])
    return out


class RunStore:
    def __init__(self, engine: Engine) -> None:
        migrate(engine)
        self.engine = engine

    # --- runs ------------------------------------------------------------------------------

    def insert(self, rows: Sequence[dict[str, Any]]) -> set[str]:
        """The runs whose key is new, written; their ids."""
        insert = upsert_insert(self.engine)
        created: set[str] = set()
        with self.engine.begin() as conn:
            for at in range(0, len(rows), CHUNK):
                statement = (
                    insert(run_table)
                    .values(list(rows[at : at + CHUNK]))
                    .on_conflict_do_nothing(index_elements=["key"])
                    .returning(run_table.c.id)
                )
                created.update(conn.execute(statement).scalars())
        return created

    def started_since(self, playbooks: Iterable[str], since: float) -> dict[str, int]:
        """Runs started (not held) per playbook since a time."""
        run = run_table.c
        with self.engine.connect() as conn:
            counted = conn.execute(
                select(run.playbook, func.count())
                .where(run.created >= since, run.state != "held", run.playbook.in_(set(playbooks)))
                .group_by(run.playbook)
            ).all()
        return {str(playbook): int(count) for playbook, count in counted}

    def get(self, run_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(run_table).where(run_table.c.id == run_id)).mappings().first()
        if row is None:
            raise NotFound(f"no run {run_id}")
        return dict(row)

    def set(self, run_id: str, *, where_state: str | None = None, **values: Any) -> bool:
        """Change a run (only while it is in `where_state`, when given); whether it did."""
        condition = [run_table.c.id == run_id]
        if where_state is not None:
            condition.append(run_table.c.state == where_state)
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(run_table).where(*condition).values(updated=time.time(), **values)
            ).rowcount
        return bool(changed)

    def acted(self, run_id: str, at: float) -> None:
        """Its first action was done at `at` (kept once)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(run_table)
                .where(run_table.c.id == run_id, run_table.c.first_action.is_(None))
                .values(first_action=at)
            )

    def find(
        self,
        *,
        state: str | None = None,
        playbook: str | None = None,
        subject: str | None = None,
        subjects: Sequence[str] = (),
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Runs, newest first (`subjects`: of any of these alerts or incidents)."""
        run = run_table.c
        query = select(run_table).order_by(run.created.desc()).limit(limit)
        if state:
            query = query.where(run.state == state)
        if playbook:
            query = query.where(run.playbook == playbook)
        if subject:
            query = query.where(run.subject == subject)
        if subjects:
            query = query.where(run.subject.in_(list(subjects)))
        with self.engine.connect() as conn:
            return [_run_out(r) for r in conn.execute(query).mappings().all()]

    def detail(self, run_id: str) -> dict[str, Any]:
        out = _run_out(self.get(run_id))
        out["steps"] = self.steps(run_id, "do")
        out["undo"] = self.steps(run_id, "undo")
        return out

    def held(
        self, playbook: str | None = None, limit: int = 1000, before: float | None = None
    ) -> list[dict[str, Any]]:
        """Runs held by the storm guard, oldest first (`before`: created before then)."""
        query = select(run_table).where(run_table.c.state == "held")
        if playbook:
            query = query.where(run_table.c.playbook == playbook)
        if before is not None:
            query = query.where(run_table.c.created < before)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(run_table.c.created).limit(limit)).mappings().all()
        return [_run_out(r) for r in rows]

    def busy(self) -> int:
        """Runs a worker should be on."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(run_table).where(run_table.c.state.in_(ACTIVE))
                ).scalar_one()
            )

    # --- who holds a run -------------------------------------------------------------------

    def claim(self, run_id: str, worker: str, lease_s: float) -> bool:
        """Hold a run no worker holds (nor waits to take up later); whether this one now
        does."""
        now = time.time()
        run = run_table.c
        with self.engine.begin() as conn:
            took = conn.execute(
                update(run_table)
                .where(
                    run.id == run_id,
                    run.state.in_(ACTIVE),
                    or_(run.lease.is_(None), run.lease < now, run.owner == worker),
                )
                .values(owner=worker, lease=now + lease_s)
            ).rowcount
        return bool(took)

    def release(self, run_id: str, worker: str, *, until: float | None = None) -> None:
        """Let the run go: to any worker, or (`until`) to any once that time has come (a
        step's retry after its backoff: the wait holds no worker)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(run_table)
                .where(run_table.c.id == run_id, run_table.c.owner == worker)
                .values(owner=None, lease=until)
            )

    def renew(self, run_ids: Sequence[str], worker: str, until: float) -> None:
        if run_ids:
            with self.engine.begin() as conn:
                conn.execute(
                    update(run_table)
                    .where(run_table.c.id.in_(run_ids), run_table.c.owner == worker)
                    .values(lease=until)
                )

    def free(self, worker: str, now: float, limit: int = 500) -> list[str]:
        """Runs to carry out that no other worker holds: new, approved, due for a retry,
        or left by a worker that died (its lease ran out)."""
        run = run_table.c
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(run.id)
                    .where(
                        run.state.in_(ACTIVE),
                        or_(run.lease.is_(None), run.lease < now, run.owner == worker),
                    )
                    .order_by(run.created)
                    .limit(limit)
                ).scalars()
            )

    # --- steps -----------------------------------------------------------------------------

    def steps(self, run_id: str, phase: str) -> list[dict[str, Any]]:
        s = run_step_table.c
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(run_step_table)
                    .where(s.run_id == run_id, s.phase == phase)
                    .order_by(s.seq)
                )
                .mappings()
                .all()
            )
        return [_step_out(r) for r in rows]

    def step(self, run_id: str, phase: str, step_id: str) -> dict[str, Any] | None:
        s = run_step_table.c
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(run_step_table).where(
                        s.run_id == run_id, s.phase == phase, s.step == step_id
                    )
                )
                .mappings()
                .first()
            )
        return dict(row) if row else None

    def write_step(
        self,
        run: Mapping[str, Any],
        step_id: str,
        phase: str,
        *,
        action: str,
        state: str,
        inputs: Mapping[str, Any],
        **values: Any,
    ) -> None:
        s = run_step_table.c
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(run_step_table)
                .where(s.run_id == run["id"], s.phase == phase, s.step == step_id)
                .values(state=state, inputs=dumps(inputs), **values)
            ).rowcount
            if not changed:
                seq = conn.execute(
                    select(func.count()).select_from(run_step_table).where(s.run_id == run["id"])
                ).scalar_one()
                conn.execute(
                    run_step_table.insert().values(
                        run_id=run["id"],
                        phase=phase,
                        step=step_id,
                        seq=seq,
                        action=action,
                        state=state,
                        dry_run=bool(run["dry_run"]),
                        inputs=dumps(inputs),
                        **{"attempts": 0, **values},
                    )
                )

    def decide(self, run_id: str, step_id: str, decision: str, actor: str) -> bool:
        """Record a person's decision on a waiting step and queue its run again; whether it
        was still undecided."""
        s = run_step_table.c
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(run_step_table)
                .where(s.run_id == run_id, s.phase == "do", s.step == step_id, s.decided.is_(None))
                .values(decided=decision, decided_by=actor)
            ).rowcount
            if changed:
                conn.execute(
                    update(run_table)
                    .where(run_table.c.id == run_id, run_table.c.state == "waiting")
                    .values(state="queued", updated=time.time())
                )
        return bool(changed)

    def pending(
        self, limit: int = 1000, *, due_before: float | None = None
    ) -> list[dict[str, Any]]:
        """Steps waiting for a decision, the soonest due first (`due_before`: past due)."""
        s = run_step_table.c
        query = select(run_step_table).where(s.state == "waiting", s.decided.is_(None))
        if due_before is not None:
            query = query.where(s.approval_due < due_before)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(s.approval_due).limit(limit)).mappings().all()
        return [_step_out(r) for r in rows]

    def recent(self, action: str, seconds: float) -> int:
        """Actions of one kind begun in the last `seconds`."""
        s = run_step_table.c
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(run_step_table)
                    .where(s.action == action, s.phase == "do", s.started >= time.time() - seconds)
                ).scalar_one()
            )

    # --- figures ---------------------------------------------------------------------------

    def figures(self) -> dict[str, Any]:
        """Runs per state, steps waiting for approval, and detection → first action (ms)
        over the last 10,000 runs that acted."""
        run, step = run_table.c, run_step_table.c
        with self.engine.connect() as conn:
            counted = conn.execute(select(run.state, func.count()).group_by(run.state)).all()
            waiting = conn.execute(
                select(func.count())
                .select_from(run_step_table)
                .where(step.state == "waiting", step.decided.is_(None))
            ).scalar_one()
            spans = (
                conn.execute(
                    select(run.first_action - run.raised)
                    .where(run.first_action.is_not(None), run.raised.is_not(None))
                    .order_by(run.created.desc())
                    .limit(10_000)
                )
                .scalars()
                .all()
            )
        ordered = sorted(float(s) * 1000 for s in spans)

        def at(q: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

        return {
            "runs": {str(state): int(count) for state, count in counted},
            "pending_approvals": int(waiting),
            "first_action_p50_ms": at(0.5),
            "first_action_p99_ms": at(0.99),
        }


__all__ = ["ACTIVE", "RunStore", "dumps", "loads", "shown"]
