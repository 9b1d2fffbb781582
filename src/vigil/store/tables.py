"""Every table of the state database, declared once. Packages use these tables; none
declares its own. The migrations (`migrations/versions`) are frozen snapshots, not built
from here: a change to a table here needs a new migration (a test compares the two)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# --- threat intelligence (vigil.intel) ------------------------------------------------------

_KEY = BigInteger().with_variant(Integer, "sqlite")

indicator_table = Table(
    "intel_indicator",
    metadata,
    # INTEGER PRIMARY KEY in SQLite: the key is the row id, no separate index
    Column("key", _KEY, primary_key=True, autoincrement=False),
    Column("type", String(16), nullable=False),
    Column("value", Text, nullable=False),
    Column("created", Float, nullable=False),
    Column("last_sighting", Float),
    Column("sightings", Integer, nullable=False, default=0),
    UniqueConstraint("type", "value", name="uq_intel_indicator_value"),
)

provenance_table = Table(
    "intel_provenance",
    metadata,
    Column("key", BigInteger, primary_key=True, autoincrement=False),
    Column("source", String(255), primary_key=True),
    Column("reference", String(512), primary_key=True),
    Column("confidence", Integer),
    Column("first_seen", Float),
    Column("last_seen", Float),
    Column("valid_until", Float),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("tags", Text, nullable=False, default="[]"),
    Column("techniques", Text, nullable=False, default="[]"),
    Column("actors", Text, nullable=False, default="[]"),
    Column("description", Text),
    Column("imported_at", Float, nullable=False),
    sqlite_with_rowid=False,
)

source_table = Table(
    "intel_source",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("location", Text, nullable=False, default=""),
    Column("cursor", Text),
    Column("last_import", Float),
    Column("indicators", Integer, nullable=False, default=0),
    Column("unsupported", Integer, nullable=False, default=0),
    Column("rejected", Integer, nullable=False, default=0),
)

sighting_table = Table(
    "intel_sighting",
    metadata,
    Column("key", BigInteger, primary_key=True, autoincrement=False),
    Column("where", String(512), primary_key=True),
    Column("field", String(128), primary_key=True),
    Column("first_seen", Float),
    Column("last_seen", Float),
    Column("count", Integer, nullable=False),
    Column("recorded", Float, nullable=False),
)


# --- alerts and saved hunts -------------------------------------------------------------------

alert_table = Table(
    "alert",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("rule_id", String(128), nullable=False),
    Column("rule_title", Text, nullable=False),
    Column("level", String(16), nullable=False),
    Column("tags", Text, nullable=False),
    Column("time", Float, index=True),
    Column("host", Text),
    Column("source", Text, nullable=False),
    Column("record", Text),
    Column("event_offset", Integer),
    Column("detected_at", Text, nullable=False),
    Column("created", Float, nullable=False),
    Column("matched_fields", Text, nullable=False),
    Column("event", Text, nullable=False),
    Column("details", Text, nullable=False),
    # newest first without a sort, all of them or of one level or rule (offsets read the
    # index only)
    Index("ix_alert_recent", "created", "id"),
    Index("ix_alert_level_recent", "level", "created", "id"),
    Index("ix_alert_rule_recent", "rule_id", "created", "id"),
)

# The entities an alert names (host, user, ip, hash, ..., and for an indicator alert the
# indicator's value), lower case: the alerts page filters and pivots by them, newest first.
alert_entity_table = Table(
    "alert_entity",
    metadata,
    Column("alert_id", String(32), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("value", String(512), primary_key=True),
    Column("created", Float, nullable=False),  # the alert's
    Index("ix_alert_entity_recent", "kind", "value", "created", "alert_id"),
)


saved_hunt_table = Table(
    "saved_hunt",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("query", Text),
    Column("sigma", Text),
    Column("every_seconds", Integer, nullable=False),
    Column("created", Float, nullable=False),
    Column("last_run", Float),
    Column("last_result", Text),
)


# --- incidents and cases (vigil.correlate) ----------------------------------------------------

incident_table = Table(
    "incident",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("opened", Float, nullable=False, index=True),  # first alert (its time)
    Column("last", Float, nullable=False),
    Column("level", String(16), nullable=False),
    Column("risk", Float, nullable=False, index=True),
    Column("alerts", Integer, nullable=False),
    Column("entities", Text, nullable=False),  # JSON ["host:ws-1", ...]
    Column("rules", Text, nullable=False),  # JSON {rule: alerts}
    Column("tactics", Text, nullable=False),  # JSON [tactic, ...] in order first seen
    Column("merges", Text, nullable=False),  # JSON [reason, ...]
    Column("follows", String(32)),
    Column("first_event", Float),  # the earliest event behind its alerts
    Column("detected", Float),  # when its first alert was raised
    Column("created", Float, nullable=False, index=True),  # when Vigil made it (wall clock)
    Column("updated", Float, nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("assignee", Text),
    Column("triaged_at", Float),
    Column("contained_at", Float),
    Column("resolved_at", Float),
)

incident_alert_table = Table(
    "incident_alert",
    metadata,
    Column("alert_id", String(64), primary_key=True),
    Column("incident_id", String(32), nullable=False, index=True),
    Column("time", Float, nullable=False),
    Column("reason", Text, nullable=False),
)

entity_risk_table = Table(
    "entity_risk",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("value", String(512), primary_key=True),
    Column("risk", Float, nullable=False),
    Column("as_of", Float, nullable=False, index=True),
)

case_entry_table = Table(
    "case_entry",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", String(32), nullable=False, index=True),
    Column("at", Float, nullable=False),
    Column("kind", String(16), nullable=False),  # status, assign, note, task, done, evidence, merge
    Column("author", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("data", Text, nullable=False),  # JSON
)


# --- stages' kept state (vigil.serve.stages) ---------------------------------------------------

stage_state_table = Table(
    "stage_state",
    metadata,
    Column("stage", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),  # stream offsets below it are in `state`
    Column("state", Text, nullable=False),  # JSON
    Column("saved", Float, nullable=False),
)


# --- the asset inventory and its access graph (vigil.assets) ---------------------------------

asset_node_table = Table(
    "asset_node",
    metadata,
    Column("id", Text, primary_key=True),  # "<kind>:<key>"
    Column("kind", String(32), nullable=False, index=True),
    Column("name", Text, nullable=False),
    Column("attrs", Text, nullable=False),  # JSON {name: value}
    Column("sources", Text, nullable=False),  # JSON [source, ...] that named it
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
)

asset_edge_table = Table(
    "asset_edge",
    metadata,
    Column("id", String(40), primary_key=True),  # SHA-1 of kind, src, dst and attributes
    Column("kind", String(32), nullable=False),
    Column("src", Text, nullable=False, index=True),
    Column("dst", Text, nullable=False, index=True),
    Column("attrs", Text, nullable=False),  # JSON {name: value}
    Column("sources", Text, nullable=False),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
)


# --- the audit chain (vigil.respond.audit) ---------------------------------------------------

audit_table = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),  # 1, 2, 3... no gap
    Column("at", Float, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("action", String(128), nullable=False),
    Column("subject", Text, nullable=False),
    Column("detail", Text, nullable=False),  # JSON
    Column("prev", String(64), nullable=False),  # the previous entry's hash
    Column("hash", String(64), nullable=False),  # SHA-256 of prev and this entry
)


# --- response runs (vigil.respond) ------------------------------------------------------------

run_table = Table(
    "playbook_run",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("key", String(512), nullable=False, unique=True),  # playbook + dedupe key: one run
    Column("playbook", String(64), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("definition", Text, nullable=False),  # JSON: the playbook as it was when started
    Column("state", String(16), nullable=False, index=True),
    Column("dry_run", Boolean, nullable=False),
    Column("trigger", String(16), nullable=False),  # alert, incident or manual
    Column("subject", String(128), nullable=False, index=True),  # the alert's or incident's id
    Column("context", Text, nullable=False),  # JSON: what the templates read
    Column("actor", String(256), nullable=False),  # who started it (respond: the stage)
    Column("created", Float, nullable=False, index=True),
    Column("updated", Float, nullable=False),
    Column("raised", Float),  # when the detection behind it was raised
    Column("first_action", Float),  # when its first action was done
    Column("finished", Float),
    Column("owner", String(128)),  # the worker running it, while its lease holds
    Column("lease", Float),
    Column("reason", Text),
)

run_step_table = Table(
    "playbook_step",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("phase", String(8), primary_key=True),  # do, or undo (its compensation)
    Column("step", String(64), primary_key=True),
    Column("seq", Integer, nullable=False),  # order begun in the run (undo: reverse)
    Column("action", String(64), nullable=False, index=True),
    Column("state", String(16), nullable=False),
    Column("dry_run", Boolean, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("inputs", Text, nullable=False),  # JSON, rendered
    Column("result", Text),  # JSON: the connector's answer
    Column("error", Text),
    Column("started", Float, index=True),
    Column("finished", Float),
    Column("approval_due", Float, index=True),
    Column("approval_roles", Text),  # JSON
    Column("approval_reason", Text),
    Column("decided_by", String(256)),
    Column("decided", String(8)),  # approved or denied
)


# --- Zero Trust (vigil.zerotrust) --------------------------------------------------------------

ssf_event_table = Table(
    "ssf_event",
    metadata,
    Column("jti", String(64), primary_key=True),  # the Security Event Token's id
    Column("receiver", String(128), nullable=False, index=True),
    Column("token", Text, nullable=False),  # the signed SET (compact JWS)
    Column("created", Float, nullable=False, index=True),
    Column("delivered", Float),  # acknowledged (push: 202; poll: acked)
)

zt_session_table = Table(
    "zt_session",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("subject", String(256), nullable=False, index=True),
    Column("device", String(256), nullable=False, index=True),
    Column("request", Text, nullable=False),  # JSON: what is decided again on any change
    Column("created", Float, nullable=False),
    Column("expires", Float, nullable=False),
    Column("state", String(16), nullable=False, index=True),  # active, revoked, expired
    Column("decision", String(32), nullable=False),  # the allow that opened it
    Column("ended", Float),
    Column("reason", Text),
)

zt_grant_table = Table(
    "zt_grant",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("subject", String(256), nullable=False, index=True),
    Column("resource", String(256), nullable=False),
    Column("actions", Text, nullable=False),  # JSON
    Column("rule", String(128), nullable=False),  # the grant rule that let it be asked
    Column("created", Float, nullable=False, index=True),
    Column("seconds", Float, nullable=False),  # how long it was asked for
    Column("starts", Float, nullable=False),
    Column("ends", Float, nullable=False),
    Column("state", String(16), nullable=False, index=True),  # waiting, active, denied, expired
    Column("reason", Text),
    Column("approver", String(256)),
)


# --- API tokens (vigil.api) -------------------------------------------------------------------

api_token_table = Table(
    "api_token",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Column("created", Float, nullable=False),
    Column("last_used", Float),
    Column("revoked", Boolean, nullable=False, default=False),
)


# --- the console (vigil.web) ------------------------------------------------------------------

# A signed-in browser: the cookie's secret is kept as its SHA-256; the session ends on sign-out,
# after `expires`, after an idle time past `seen`, or when its token is revoked.
console_session_table = Table(
    "console_session",
    metadata,
    Column("id", String(64), primary_key=True),  # SHA-256 of the cookie's secret
    Column("token_id", String(36), nullable=False, index=True),
    Column("csrf", String(64), nullable=False),  # the forms' anti-forgery value
    Column("created", Float, nullable=False),
    Column("expires", Float, nullable=False, index=True),
    Column("seen", Float, nullable=False),
    Column("ended", Boolean, nullable=False, default=False),
)

# A hunt's notebook: its queries (with what they found) and the analysts' notes, in order.
hunt_note_table = Table(
    "hunt_note",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("hunt", String(128), nullable=False, index=True),
    Column("kind", String(8), nullable=False),  # sql, sigma, note
    Column("text", Text, nullable=False),
    Column("author", String(256), nullable=False),
    Column("created", Float, nullable=False),
    Column("result", Text),  # JSON: columns, rows (the first ones), count, seconds
)

# An exercise's results as `vigil exercise run` reported them (results.json), for coverage.
exercise_run_table = Table(
    "exercise_run",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("at", Float, nullable=False, index=True),
    Column("name", String(256), nullable=False),
    Column("results", Text, nullable=False),  # JSON
)


__all__ = [
    "alert_entity_table",
    "alert_table",
    "api_token_table",
    "asset_edge_table",
    "asset_node_table",
    "audit_table",
    "case_entry_table",
    "console_session_table",
    "entity_risk_table",
    "exercise_run_table",
    "hunt_note_table",
    "incident_alert_table",
    "incident_table",
    "indicator_table",
    "metadata",
    "provenance_table",
    "run_step_table",
    "run_table",
    "saved_hunt_table",
    "sighting_table",
    "source_table",
    "ssf_event_table",
    "stage_state_table",
    "zt_grant_table",
    "zt_session_table",
]
