"""The response engine: alerts and incidents matched to playbooks, each match a durable run;
runs executed step by step by a few worker threads, every step written down before it acts,
so that after a crash a run resumes where it was and an action that must not run twice is
never run twice; approvals that hold a run without holding a worker; retries, timeouts,
compensations in reverse; guardrails before every action; an audit line for each.

    responder = Responder(engine, settings.respond, incidents, assets=assets)
    responder.start()
    responder.on_alerts([alert])            # runs created (one per playbook and key)
    responder.approve(run_id, "isolate", "alice", {"responder"})
    responder.undo(run_id, "alice")         # compensations, newest first

A run's states: queued → running → (waiting ↔ queued) → done | failed | denied; undo makes it
undoing → undone. A step's: waiting (approval) → started → done | failed | refused (a
guardrail) | denied | skipped | uncertain (it may have run before a crash and cannot be run
again safely) | compensated.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine

from vigil.assets.graph import AccessGraph
from vigil.assets.store import AssetStore
from vigil.config import RespondSettings
from vigil.correlate.store import IncidentStore
from vigil.errors import Conflict, Forbidden, InputError, NotFound, VigilError
from vigil.events.records import Action, Alert, IncidentChange
from vigil.respond import playbook as books
from vigil.respond.actions import ACTIONS, ActionSpec, Connectors
from vigil.respond.audit import AuditLog
from vigil.respond.guardrails import Guardrails
from vigil.respond.playbook import Playbook, Step, holds, render
from vigil.respond.result import ActionResult
from vigil.respond.runs import RunStore, dumps, loads, shown
from vigil.respond.triggers import (
    alert_context,
    incident_context,
    manual_context,
    matches_alert,
    matches_incident,
)
from vigil.zerotrust.sessions import Sessions

log = logging.getLogger("vigil.respond")

FINAL_STEP = frozenset(
    {"done", "failed", "refused", "denied", "skipped", "uncertain", "compensated"}
)
FAILED_STEP = frozenset({"failed", "refused", "denied"})
SWEEP_S = 0.5
APPROVAL_S = 3600.0  # how long a guardrail's hold waits for an answer
MAX_BACKOFF_S = 30.0  # the longest wait between two tries of a step

Publish = Callable[[Sequence[Action]], None]


class Responder:
    def __init__(
        self,
        engine: Engine,
        settings: RespondSettings,
        incidents: IncidentStore,
        *,
        assets: AssetStore | None = None,
        graph: Callable[[], AccessGraph | None] | None = None,
        audit: AuditLog | None = None,
        publish: Publish | None = None,
        worker: str | None = None,
        playbooks: Sequence[Playbook] | None = None,
        sessions: Sessions | None = None,
    ) -> None:
        self.engine = engine
        self.store = RunStore(engine)
        self.settings = settings
        self.incidents = incidents
        self.assets = assets
        self.audit = audit or AuditLog(engine)
        self.publish = publish
        self.worker = worker or settings.worker or f"{socket.gethostname()}:respond"
        self.connectors = Connectors(settings, incidents, sessions)
        self.guard = Guardrails(settings.guardrails, assets, graph)
        self.playbooks: dict[str, Playbook] = {
            p.id: p for p in (playbooks if playbooks is not None else load_playbooks(settings))
        }
        self._queue: queue.Queue[str] = queue.Queue()
        self._active: set[str] = set()
        self._lock = threading.Lock()
        self._admission = threading.Lock()  # guardrails checked and the action begun, as one
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # action calls (each under its step's timeout) and parallel branches
        self._calls = ThreadPoolExecutor(max(4, settings.workers * 2), "vigil-action")
        self._branches = ThreadPoolExecutor(max(2, settings.workers), "vigil-branch")

    # --- life ------------------------------------------------------------------------------

    def start(self) -> None:
        self._record_configuration()
        for n in range(self.settings.workers):
            thread = threading.Thread(target=self._work, name=f"vigil-respond-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        sweeper = threading.Thread(target=self._sweeping, name="vigil-respond-sweep", daemon=True)
        sweeper.start()
        self._threads.append(sweeper)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for _ in self._threads:
            self._queue.put("")
        for thread in self._threads:
            thread.join(timeout)
        self._calls.shutdown(wait=False, cancel_futures=True)
        self._branches.shutdown(wait=False, cancel_futures=True)

    def idle(self, timeout: float = 30.0) -> bool:
        """Wait until no run is queued or running here (tests, tools)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.store.busy() and not self._active:
                return True
            time.sleep(0.05)
        return False

    def _record_configuration(self) -> None:
        """A configuration change (playbooks, dry-run, guardrails) is an audit entry."""
        shown = {
            "dry_run": self.settings.dry_run,
            "guardrails": self.settings.guardrails.model_dump(mode="json"),
            "playbooks": {
                p.id: hashlib.sha256(dumps(p.to_dict()).encode()).hexdigest()[:16]
                for p in self.playbooks.values()
            },
        }
        last = self.audit.last("config.respond")
        if last is None or loads(last["detail"]) != loads(dumps(shown)):
            self.audit.append("vigil", "config.respond", "respond", shown)

    # --- triggers --------------------------------------------------------------------------

    def on_alerts(self, alerts: Sequence[Alert]) -> list[str]:
        """Start the runs these alerts trigger; the ids of the new runs."""
        new = [
            self._new_run(playbook, "alert", alert.id, alert_context(alert), alert.raised)
            for alert in alerts
            for playbook in self._books("alert")
            if matches_alert(playbook.trigger, alert, self._tagged)
        ]
        return self._create(new)

    def on_incidents(self, changes: Sequence[IncidentChange]) -> list[str]:
        """Start the runs these incident changes trigger; the ids of the new runs."""
        new = [
            self._new_run(
                playbook, "incident", change.incident, incident_context(change), change.at
            )
            for change in changes
            for playbook in self._books("incident")
            if matches_incident(playbook.trigger, change, self._tagged, self.incidents.get)
        ]
        return self._create(new)

    def _books(self, kind: str) -> list[Playbook]:
        return [p for p in self.playbooks.values() if p.enabled and p.trigger.type == kind]

    def start_run(
        self,
        playbook_id: str,
        actor: str,
        *,
        context: Mapping[str, Any] | None = None,
        subject: str = "",
        dry_run: bool | None = None,
    ) -> str:
        """Run a playbook by hand, with the context given (entity, alert, incident...)."""
        playbook = self.playbook(playbook_id)
        given = manual_context(dict(context or {}))
        row = self._new_run(
            playbook,
            "manual",
            subject or f"manual:{uuid.uuid4().hex[:12]}",
            given,
            time.time(),
            actor=actor,
            key=uuid.uuid4().hex,
        )
        if dry_run is not None:
            row["dry_run"] = dry_run or self.settings.dry_run
        created = self._create([row])
        return created[0]

    def _tagged(self, entities: Iterable[tuple[str, str]], wanted: Sequence[str]) -> bool:
        if self.assets is None:
            return False
        names = [f"{k}:{v}" for k, v in entities if k in ("host", "ip", "user")]
        for context in self.assets.context(names).values():
            if set(context.get("tags") or ()) & set(wanted):
                return True
        return False

    def _new_run(
        self,
        playbook: Playbook,
        trigger: str,
        subject: str,
        context: dict[str, Any],
        raised: float | None,
        *,
        actor: str = "vigil:respond",
        key: str | None = None,
    ) -> dict[str, Any]:
        run_id = uuid.uuid4().hex
        if key is None:
            key = subject
            if playbook.trigger.dedupe:
                try:
                    key = str(render(playbook.trigger.dedupe, context))
                except InputError:
                    key = subject
        now = time.time()
        return {
            "id": run_id,
            "key": f"{playbook.id}:{key}"[:512],
            "playbook": playbook.id,
            "version": playbook.version,
            "definition": dumps(playbook.to_dict()),
            "state": "queued",
            "dry_run": self.settings.dry_run or playbook.dry_run,
            "trigger": trigger,
            "subject": subject[:128],
            "context": dumps({**context, "run": {"id": run_id, "playbook": playbook.id}}),
            "actor": actor,
            "created": now,
            "updated": now,
            "raised": raised,
        }

    def _create(self, rows: list[dict[str, Any]]) -> list[str]:
        """Insert runs (a key already known: none); audit, publish and queue the new ones.
        Past a playbook's run rate (a storm: an alert flood), new runs are held for approval
        before they start."""
        if not rows:
            return []
        rows = list({row["key"]: row for row in reversed(rows)}.values())[::-1]
        amount, seconds = self.guard.runs
        started = self.store.started_since({r["playbook"] for r in rows}, time.time() - seconds)
        for row in rows:
            count = started.get(row["playbook"], 0)
            if count >= amount and row["trigger"] != "manual":
                row["state"] = "held"
                row["reason"] = (
                    f"storm: more than {amount} runs of {row['playbook']} in "
                    f"{seconds:g} s; held for approval"
                )
            else:
                started[row["playbook"]] = count + 1
        created = self.store.insert(rows)
        fresh = [row for row in rows if row["id"] in created]
        self.audit.extend(
            [
                (
                    row["actor"],
                    "run.created" if row["state"] == "queued" else "run.held",
                    f"run:{row['id']}",
                    {
                        "playbook": row["playbook"],
                        "trigger": row["trigger"],
                        "subject": row["subject"],
                        "dry_run": row["dry_run"],
                        **({"reason": row["reason"]} if row.get("reason") else {}),
                    },
                )
                for row in fresh
            ]
        )
        self._emit(
            [
                Action(
                    row["id"],
                    row["playbook"],
                    "",
                    "",
                    row["state"],
                    row["created"],
                    row["dry_run"],
                    row["subject"],
                    detail=row.get("reason") or "",
                )
                for row in fresh
            ]
        )
        for row in fresh:
            if row["state"] == "queued":
                self._queue.put(row["id"])
        return [row["id"] for row in fresh]

    def _emit(self, actions: Sequence[Action]) -> None:
        if self.publish is not None and actions:
            try:
                self.publish(actions)
            except Exception:  # the store holds the record; the stream is for followers
                log.exception("respond: publishing %d actions failed", len(actions))

    def _tell(
        self,
        row: Mapping[str, Any],
        step_id: str,
        action: str,
        state: str,
        inputs: Mapping[str, Any],
        audited: str,
        detail: Mapping[str, Any],
        *,
        note: str = "",
        actor: str = "vigil:respond",
        dry_run: bool | None = None,
    ) -> None:
        """A change of a run or step: its audit line, and its `Action` on `actions`."""
        said: dict[str, Any] = {"playbook": row["playbook"]}
        if step_id:
            said.update(step=step_id, action=action, inputs=inputs)
        self.audit.append(actor, audited, f"run:{row['id']}", {**said, **detail})
        mode = bool(row["dry_run"]) if dry_run is None else dry_run
        self._emit(
            [
                Action(
                    row["id"],
                    row["playbook"],
                    step_id,
                    action,
                    state,
                    time.time(),
                    mode,
                    row["subject"],
                    dict(inputs),
                    note,
                )
            ]
        )

    # --- workers ---------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            run_id = self._queue.get()
            if not run_id:
                continue
            try:
                self._execute(run_id)
            except Exception:
                log.exception("respond: run %s stopped on an error; it resumes later", run_id)
                self._release(run_id)

    def _sweeping(self) -> None:
        while not self._stop.wait(SWEEP_S):
            try:
                self.sweep()
            except Exception:
                log.exception("respond: sweep failed")

    def sweep(self, now: float | None = None) -> None:
        """Deny approvals past their time; keep this worker's leases; queue the runs no
        worker holds (new, resumed after a crash, approved)."""
        now = time.time() if now is None else now
        for step in self.store.pending(due_before=now):
            with contextlib.suppress(Conflict):  # decided meanwhile
                self._decide(
                    step["run_id"],
                    step["step"],
                    "denied",
                    "vigil:timeout",
                    reason="no answer in time",
                )
        for run in self.store.held(before=now - APPROVAL_S):
            with contextlib.suppress(Conflict):
                self.decide_run(run["id"], "denied", "vigil:timeout", None, "no answer in time")
        with self._lock:
            active = list(self._active)
        self.store.renew(active, self.worker, now + self.settings.lease_s)
        for run_id in self.store.free(self.worker, now):
            if run_id not in active:
                self._queue.put(run_id)

    def _claim(self, run_id: str) -> bool:
        with self._lock:
            if run_id in self._active:
                return False
            self._active.add(run_id)
        took = self.store.claim(run_id, self.worker, self.settings.lease_s)
        if not took:
            with self._lock:
                self._active.discard(run_id)
        return took

    def _release(self, run_id: str, *, until: float | None = None) -> None:
        self.store.release(run_id, self.worker, until=until)
        with self._lock:
            self._active.discard(run_id)

    # --- a run -----------------------------------------------------------------------------

    def execute(self, run_id: str) -> str:
        """Carry a run out in this thread as far as it goes (to its end, or a step waiting
        for approval); its state then. A run another worker holds is left to it."""
        self._execute(run_id)
        return str(self.store.get(run_id)["state"])

    def _execute(self, run_id: str) -> None:
        if not self._claim(run_id):
            return
        wake: float | None = None
        try:
            row = self.store.get(run_id)
            playbook = Playbook.model_validate(orjson.loads(row["definition"]))
            if row["state"] == "undoing":
                self._compensate(row, playbook, "undone", actor=row.get("reason") or "vigil")
                return
            self.store.set(run_id, state="running")
            for block in playbook.blocks():
                if len(block) == 1:
                    states = {block[0].id: self._step(row, block[0])}
                else:
                    futures = {s.id: self._branches.submit(self._step, row, s) for s in block}
                    states = {sid: f.result() for sid, f in futures.items()}
                if "waiting" in states.values():
                    self.store.set(run_id, state="waiting")
                    return
                if "retrying" in states.values():
                    later = [self._retry_at(run_id, s) for s in block if states[s.id] == "retrying"]
                    wake = min(later)
                    return
                failed = [s for s in block if states[s.id] in FAILED_STEP]
                if not failed:
                    continue
                policies = {s.on_failure for s in failed}
                if policies == {"continue"}:
                    continue
                final = "denied" if all(states[s.id] == "denied" for s in failed) else "failed"
                first = failed[0].id
                error = (self.store.step(run_id, "do", first) or {}).get("error") or ""
                why = f"step {first} {states[first]}" + (f": {error}" if error else "")
                # a denial ends the run; what was allowed before it stays done
                if "compensate" in policies and final != "denied":
                    self._compensate(row, playbook, final, actor="vigil:respond", why=why)
                else:
                    self._finish(row, final, why)
                return
            self._finish(row, "done", "")
        finally:
            self._release(run_id, until=wake)

    def _finish(self, row: Mapping[str, Any], state: str, reason: str) -> None:
        now = time.time()
        self.store.set(row["id"], state=state, finished=now, reason=reason or None)
        self._tell(row, "", "", state, {}, f"run.{state}", {"reason": reason}, note=reason)

    def _context(self, row: Mapping[str, Any]) -> dict[str, Any]:
        context = dict(orjson.loads(row["context"]))
        if context.get("incident") is None and row["trigger"] == "alert":
            found = self.incidents.incidents_of([row["subject"]])
            if found:
                context["incident"] = {"id": found[0]}
        steps = {}
        for step in self.store.steps(row["id"], "do"):
            steps[step["step"]] = {
                "state": step["state"],
                "inputs": step["inputs"],
                "result": (step["result"] or {}).get("state", {}),
            }
        context["steps"] = steps
        context["dry_run"] = row["dry_run"]
        return context

    def _step(self, row: Mapping[str, Any], step: Step) -> str:
        run_id = row["id"]
        current = self.store.step(run_id, "do", step.id)
        if current is not None and current["state"] in FINAL_STEP:
            return str(current["state"])
        if current is not None and current["state"] == "waiting" and current["decided"] is None:
            return "waiting"
        context = self._context(row)
        spec = ACTIONS[step.action]
        if current is None and not holds(step.when, context):
            self.store.write_step(
                row, step.id, "do", action=step.action, state="skipped", inputs={}
            )
            return "skipped"
        try:
            inputs = render(step.with_, context)
        except InputError as exc:
            return self._fail(row, step.id, step.action, {}, "failed", str(exc))
        if current is not None and current["decided"] == "denied":
            return self._fail(
                row, step.id, step.action, inputs, "denied", f"denied by {current['decided_by']}"
            )
        approved = current is not None and current["decided"] == "approved"
        resumed = current is not None and current["state"] in ("started", "retrying")
        key = f"{run_id}:{step.id}"
        if resumed and not spec.idempotent:
            # started: it may have run before a crash; retrying: the last try failed in a
            # way that may still have gone through. Never twice.
            done = self.connectors.done(step.action, inputs, key)
            if done is True:
                found = "found done under its key after a restart"
                result = ActionResult(True, bool(row["dry_run"]), [], output=found)
                return self._done(row, step, spec, inputs, result)
            if done is None:
                return self._fail(
                    row,
                    step.id,
                    step.action,
                    inputs,
                    "uncertain",
                    "it may have run before a restart; not run again (it is not idempotent)",
                )
        tried = int(current["attempts"]) if current is not None else 0
        # the rates count the actions begun: checking and beginning are one move here, so
        # workers at once cannot all pass the last free place
        with self._admission:
            if not approved and not resumed:
                hold = self._gate(row, step, spec, inputs)
                if hold is not None:
                    return hold
            self.store.write_step(
                row,
                step.id,
                "do",
                action=step.action,
                state="started",
                inputs=inputs,
                started=time.time(),
                attempts=tried + 1,
            )
        answer, error, again = self._call(row, step.action, inputs, key, step.timeout_s)
        if answer is not None and answer.ok:
            return self._done(row, step, spec, inputs, answer)
        # a try that may have gone through is not repeated (unless the action is idempotent,
        # or its connector can tell it did not happen)
        safe = spec.idempotent or self.connectors.done(step.action, inputs, key) is False
        if again and tried < step.retries and safe:
            self.store.write_step(
                row, step.id, "do", action=step.action, state="retrying", inputs=inputs, error=error
            )
            return "retrying"
        return self._fail(row, step.id, step.action, inputs, "failed", error, answer)

    def _retry_at(self, run_id: str, step: Step) -> float:
        """When a step that failed tries again: its backoff, doubled each time (30 s at
        most)."""
        current = self.store.step(run_id, "do", step.id) or {"attempts": 1}
        delay = float(step.backoff_s) * 2 ** max(0, int(current["attempts"]) - 1)
        return time.time() + min(float(delay), MAX_BACKOFF_S)

    def _gate(
        self, row: Mapping[str, Any], step: Step, spec: ActionSpec, inputs: dict[str, Any]
    ) -> str | None:
        """Refused or held by a guardrail or the playbook's approval gate (the state), or
        None to go on."""
        verdict = self.guard.check(spec, inputs, recent=self.store.recent)
        if verdict.kind == "refuse":
            return self._fail(row, step.id, step.action, inputs, "refused", verdict.reason)
        reasons, roles, wait = [], list(self.settings.guardrails.approvers), APPROVAL_S
        if step.approval is not None:
            reasons.append("the playbook asks for approval")
            roles, wait = list(step.approval.roles), step.approval.timeout_s
        if verdict.kind == "approve":
            reasons.append(verdict.reason)
        if not reasons:
            return None
        now = time.time()
        reason = "; ".join(reasons)
        self.store.write_step(
            row,
            step.id,
            "do",
            action=step.action,
            state="waiting",
            inputs=inputs,
            approval_due=now + wait,
            approval_roles=dumps(roles),
            approval_reason=reason,
        )
        self._tell(
            row,
            step.id,
            step.action,
            "waiting",
            inputs,
            "approval.requested",
            {"roles": roles, "reason": reason},
            note=reason,
        )
        return "waiting"

    def _call(
        self,
        row: Mapping[str, Any],
        action: str,
        inputs: dict[str, Any],
        key: str,
        timeout_s: float,
    ) -> tuple[ActionResult | None, str, bool]:
        """One try of an action (written as started already), under its timeout: the
        answer, the error, and whether trying again may help."""
        future = self._calls.submit(
            self.connectors.run,
            action,
            inputs,
            key=key,
            dry_run=bool(row["dry_run"]),
            timeout_s=timeout_s,
        )
        try:
            result = future.result(timeout=timeout_s + 1.0)
        except FutureTimeout:
            future.cancel()
            return None, f"no answer in {timeout_s:g} s", True
        except (InputError, NotFound, Forbidden) as exc:
            return None, str(exc), False  # trying again would not help
        except VigilError as exc:
            return None, str(exc), True
        except Exception as exc:
            return None, f"{type(exc).__name__}: {exc}", True
        if result.ok:
            return result, "", False
        return result, result.output or "the connector said no", True

    def _done(
        self,
        row: Mapping[str, Any],
        step: Step,
        spec: ActionSpec,
        inputs: dict[str, Any],
        result: ActionResult,
    ) -> str:
        now = time.time()
        self.store.write_step(
            row,
            step.id,
            "do",
            action=step.action,
            state="done",
            inputs=inputs,
            result=dumps(shown(result)),
            finished=now,
        )
        self.store.acted(row["id"], now)
        self._tell(
            row,
            step.id,
            step.action,
            "done",
            inputs,
            "action.done",
            {"dry_run": result.dry_run, "commands": result.commands},
            note=result.output,
            dry_run=result.dry_run,
        )
        if spec.contains and not result.dry_run:
            self._contained(row, step.action)
        return "done"

    def _fail(
        self,
        row: Mapping[str, Any],
        step_id: str,
        action: str,
        inputs: dict[str, Any],
        state: str,
        error: str,
        result: ActionResult | None = None,
    ) -> str:
        now = time.time()
        self.store.write_step(
            row,
            step_id,
            "do",
            action=action,
            state=state,
            inputs=inputs,
            error=error,
            finished=now,
            result=dumps(shown(result)) if result else None,
        )
        self._tell(
            row, step_id, action, state, inputs, f"action.{state}", {"error": error}, note=error
        )
        return state

    def _contained(self, row: Mapping[str, Any], action: str) -> None:
        """A containment done: the incident behind the run is contained (MTTC)."""
        if row["trigger"] == "incident":
            found = [row["subject"]]
        else:
            found = self.incidents.incidents_of([row["subject"]])
        for incident in found[:1]:
            try:
                if self.incidents.get(incident)["status"] in ("new", "triaged"):
                    self.incidents.set_status(
                        incident, "contained", "vigil:respond", f"{action} by run {row['id']}"
                    )
            except (Conflict, NotFound):
                pass

    # --- compensation ----------------------------------------------------------------------

    def _compensate(
        self,
        row: Mapping[str, Any],
        playbook: Playbook,
        final: str,
        *,
        actor: str,
        why: str = "",
    ) -> None:
        """Undo what the run did, newest first; the run ends `final` (undone when asked)."""
        done = [s for s in self.store.steps(row["id"], "do") if s["state"] == "done"]
        problems = []
        for record in sorted(done, key=lambda s: s["seq"], reverse=True):
            step = playbook.step(record["step"])
            spec = ACTIONS[record["action"]]
            if step.undo is not None:
                action = step.undo.action
                context = {
                    **self._context(row),
                    "inputs": record["inputs"],
                    "result": (record["result"] or {}).get("state", {}),
                }
                try:
                    inputs = render(step.undo.with_, context)
                except InputError as exc:
                    problems.append(f"{step.id}: {exc}")
                    continue
            elif spec.undo is not None:
                action = spec.undo
                inputs = {k: record["inputs"][k] for k in spec.undo_inputs if k in record["inputs"]}
            else:
                continue  # nothing to undo (a note, a message)
            undone = self.store.step(row["id"], "undo", step.id)
            if undone is None or undone["state"] != "done":
                result, error = self._undo_call(row, step.id, action, inputs)
                if result is None or not result.ok:
                    problems.append(f"{step.id}: {error}")
                    continue
            self.store.write_step(
                row,
                step.id,
                "do",
                action=record["action"],
                state="compensated",
                inputs=record["inputs"],
            )
        reason = "; ".join(problems) if problems else ""
        if problems and final == "undone":
            final = "failed"
            reason = f"undo incomplete: {reason}"
        if final != "undone":
            reason = f"{why}; {'compensation incomplete: ' + reason if reason else 'compensated'}"
        self._finish(row, final, reason)
        if final == "undone":
            self.audit.append(actor, "run.undone", f"run:{row['id']}", {"problems": problems})

    def _undo_call(
        self, row: Mapping[str, Any], step_id: str, action: str, inputs: dict[str, Any]
    ) -> tuple[ActionResult | None, str]:
        now = time.time()
        self.store.write_step(
            row,
            step_id,
            "undo",
            action=action,
            state="started",
            inputs=inputs,
            started=now,
            attempts=1,
        )
        error = ""
        result: ActionResult | None = None
        for attempt in range(3):  # compensations are idempotent: tried again on a failure
            if attempt and self._stop.wait(attempt):
                break
            result, error, again = self._call(
                row, action, inputs, f"{row['id']}:{step_id}:undo", 30.0
            )
            if (result is not None and result.ok) or not again:
                break
        ok = result is not None and result.ok
        state = "done" if ok else "failed"
        self.store.write_step(
            row,
            step_id,
            "undo",
            action=action,
            state=state,
            inputs=inputs,
            finished=time.time(),
            error=None if ok else error,
            result=dumps(shown(result)) if result else None,
        )
        said = "compensated" if ok else "undo_failed"
        self._tell(
            row, step_id, action, said, inputs, f"action.{said}", {"error": error}, note=error
        )
        return result, error

    # --- people: approvals and undo --------------------------------------------------------

    def approve(self, run_id: str, step_id: str, actor: str, roles: Iterable[str]) -> None:
        self._decide(run_id, step_id, "approved", actor, roles=set(roles))

    def deny(
        self, run_id: str, step_id: str, actor: str, roles: Iterable[str], reason: str = ""
    ) -> None:
        self._decide(run_id, step_id, "denied", actor, roles=set(roles), reason=reason)

    def _decide(
        self,
        run_id: str,
        step_id: str,
        decision: str,
        actor: str,
        *,
        roles: set[str] | None = None,
        reason: str = "",
    ) -> None:
        step = self.store.step(run_id, "do", step_id)
        if step is None or step["state"] != "waiting" or step["decided"] is not None:
            raise Conflict(f"step {step_id} of run {run_id} is not waiting for approval")
        allowed = set(loads(step["approval_roles"]) or [])
        if roles is not None and not roles & (allowed | {"admin"}):
            raise Forbidden(
                f"approving {step_id} takes one of the roles {', '.join(sorted(allowed))}"
            )
        if not self.store.decide(run_id, step_id, decision, actor):
            raise Conflict(f"step {step_id} of run {run_id} was decided already")
        self._tell(
            self.store.get(run_id),
            step_id,
            step["action"],
            decision,
            {},
            f"approval.{decision}",
            {"reason": reason},
            note=f"by {actor}",
            actor=actor,
        )
        self._queue.put(run_id)

    def decide_run(
        self, run_id: str, decision: str, actor: str, roles: Iterable[str] | None, reason: str = ""
    ) -> None:
        """Let a run held by the storm guard start (approved), or end it (denied)."""
        if decision not in ("approved", "denied"):
            raise InputError(f"a decision is approved or denied, not {decision!r}")
        allowed = set(self.settings.guardrails.approvers) | {"admin"}
        if roles is not None and not set(roles) & allowed:
            raise Forbidden(
                f"releasing a held run takes one of the roles {', '.join(sorted(allowed))}"
            )
        state = "queued" if decision == "approved" else "denied"
        now = time.time()
        changed = self.store.set(
            run_id,
            where_state="held",
            state=state,
            reason=f"{decision} by {actor}",
            finished=None if state == "queued" else now,
        )
        if not changed:
            self.store.get(run_id)  # NotFound when there is none
            raise Conflict(f"run {run_id} is not held")
        self._tell(
            self.store.get(run_id),
            "",
            "",
            decision,
            {},
            f"run.{decision}",
            {"reason": reason},
            note=f"by {actor}",
            actor=actor,
        )
        if state == "queued":
            self._queue.put(run_id)

    def undo(self, run_id: str, actor: str) -> None:
        """Compensate what a finished run did, newest first."""
        row = self.store.get(run_id)
        if row["state"] not in ("done", "failed", "denied"):
            raise Conflict(f"run {run_id} is {row['state']}: only a finished run is undone")
        if not self.store.set(run_id, where_state=row["state"], state="undoing", reason=actor):
            raise Conflict(f"run {run_id} changed meanwhile: try again")
        self.audit.append(actor, "run.undo", f"run:{run_id}", {"playbook": row["playbook"]})
        self._queue.put(run_id)

    # --- reading ---------------------------------------------------------------------------

    def playbook(self, playbook_id: str) -> Playbook:
        found = self.playbooks.get(playbook_id)
        if found is None:
            raise NotFound(f"no playbook {playbook_id!r}")
        return found

    def runs(
        self,
        *,
        state: str | None = None,
        playbook: str | None = None,
        subject: str | None = None,
        subjects: Sequence[str] = (),
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Runs, newest first (`subjects`: of any of these alerts or incidents)."""
        return self.store.find(
            state=state, playbook=playbook, subject=subject, subjects=subjects, limit=limit
        )

    def run(self, run_id: str) -> dict[str, Any]:
        """A run with its steps and their compensations."""
        return self.store.detail(run_id)

    def pending(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Steps waiting for a decision, the soonest due first."""
        return self.store.pending(limit)

    def held(self, playbook: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Runs held by the storm guard, oldest first."""
        return self.store.held(playbook, limit)

    def figures(self) -> dict[str, Any]:
        """Runs per state, approvals pending, and detection → first action (ms)."""
        return self.store.figures()


def load_playbooks(settings: RespondSettings) -> list[Playbook]:
    """The shipped playbooks (when `shipped`) and those under `playbooks`; a playbook with
    the id of a shipped one replaces it."""
    paths = ([books.SHIPPED] if settings.shipped else []) + list(settings.playbooks)
    found: dict[str, Playbook] = {}
    for path in books.files([Path(p) for p in paths]):
        playbook = books.load(path, ACTIONS)
        found[playbook.id] = playbook
    return list(found.values())


__all__ = ["Responder", "load_playbooks"]
