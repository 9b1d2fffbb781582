"""Response: playbooks, actions through connectors with guardrails and undo, approvals, and
the tamper-evident audit chain every action, decision and change is written to."""

from vigil.respond.audit import AuditLog, Verdict
from vigil.respond.engine import Responder, load_playbooks
from vigil.respond.playbook import Playbook
from vigil.respond.runs import RunStore

__all__ = ["AuditLog", "Playbook", "Responder", "RunStore", "Verdict", "load_playbooks"]
