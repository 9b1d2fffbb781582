"""Response: playbooks, actions through connectors with guardrails and undo, approvals, and
the tamper-evident audit chain every action, decision and change is written to."""

from vigil.respond.audit import AuditLog, Verdict

__all__ = ["AuditLog", "Verdict"]
