"""The actions a playbook step may take: what each needs, its compensation (saga style:
isolate ↔ release, block ↔ unblock, disable ↔ enable), whether running it twice is harmless,
and which input names what the guardrails look at; and `Connectors`, which runs an action
through its connector, built from the settings, in dry-run or real mode.

    connectors = Connectors(settings.respond, incidents)
    connectors.run("firewall.block", {"address": "203.0.113.9"}, key="run:step",
                   dry_run=False, timeout_s=10)   # ActionResult

A connector is one class with dry-run (`vigil.respond.nftables`, `ldap`, `idp`, `cloud`,
`rest`, `notify`) and one line per action here.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from vigil.config import RespondSettings
from vigil.correlate.store import IncidentStore
from vigil.errors import Conflict, InputError, Unavailable
from vigil.respond.nftables import Nftables
from vigil.respond.result import ActionResult
from vigil.zerotrust.sessions import Sessions


@dataclass(frozen=True, slots=True)
class ActionSpec:
    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    undo: str | None = None  # the compensating action
    undo_inputs: tuple[str, ...] = ()  # the inputs it takes over
    idempotent: bool = True  # running it twice does no more than once
    contains: bool = False  # containment: stamps the incident contained (MTTC)
    target: str | None = None  # the input the guardrails look at
    target_kind: str | None = None  # host, user or ip


ACTIONS: dict[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        ActionSpec(
            "firewall.block",
            ("address",),
            ("timeout_s",),
            "firewall.unblock",
            ("address",),
            contains=True,
            target="address",
            target_kind="ip",
        ),
        ActionSpec("firewall.unblock", ("address",)),
        ActionSpec(
            "firewall.isolate",
            ("host",),
            ("allow",),
            "firewall.release",
            ("host",),
            contains=True,
            target="host",
            target_kind="host",
        ),
        ActionSpec("firewall.release", ("host",)),
        ActionSpec(
            "directory.disable",
            ("user",),
            (),
            "directory.enable",
            ("user",),
            contains=True,
            target="user",
            target_kind="user",
        ),
        ActionSpec("directory.enable", ("user",)),
        ActionSpec(
            "idp.suspend",
            ("user",),
            (),
            "idp.unsuspend",
            ("user",),
            contains=True,
            target="user",
            target_kind="user",
        ),
        ActionSpec("idp.unsuspend", ("user",)),
        ActionSpec(
            "idp.clear_sessions", ("user",), (), contains=True, target="user", target_kind="user"
        ),
        ActionSpec(
            "cloud.deactivate_key",
            ("key_id",),
            ("user",),
            "cloud.activate_key",
            ("key_id", "user"),
            contains=True,
            target="user",
            target_kind="user",
        ),
        ActionSpec("cloud.activate_key", ("key_id",), ("user",)),
        ActionSpec(
            "rest.request",
            ("endpoint", "method", "path"),
            ("json", "params", "expect", "expect_status"),
            idempotent=False,
        ),
        ActionSpec("notify.webhook", ("text",), ("fields",), idempotent=False),
        ActionSpec("notify.email", ("subject", "body"), ("to",), idempotent=False),
        ActionSpec(
            "session.revoke",
            (),
            ("user", "device", "reason"),
            contains=True,
            target="user",
            target_kind="user",
        ),
        ActionSpec(
            "case.open",
            (),
            ("incident", "alert", "note", "task", "status", "evidence"),
            idempotent=False,
        ),
    )
}


def _text(value: Any, name: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InputError(f"input {name} is empty (the alert or incident names none)")
    if not isinstance(value, str | int | float):
        raise InputError(f"input {name} must be text, not {type(value).__name__}")
    return str(value).strip()


class Connectors:
    """Every connector, built once per mode (dry-run, real) from the settings when first
    used; `run` calls an action, `done` says whether a non-idempotent action already ran
    under an idempotency key (None: cannot tell)."""

    def __init__(
        self, settings: RespondSettings, incidents: IncidentStore, sessions: Sessions | None = None
    ) -> None:
        self.settings = settings
        self.incidents = incidents
        self.sessions = sessions
        self._built: dict[tuple[str, bool], Any] = {}
        self._lock = threading.Lock()
        self._calls: dict[str, Callable[[Mapping[str, Any], str, bool, float], ActionResult]]
        self._calls = {
            "firewall.block": self._block,
            "firewall.unblock": self._unblock,
            "firewall.isolate": self._isolate,
            "firewall.release": self._release,
            "directory.disable": lambda i, k, d, t: self._directory(d).disable(
                _text(i.get("user"), "user")
            ),
            "directory.enable": lambda i, k, d, t: self._directory(d).enable(
                _text(i.get("user"), "user")
            ),
            "idp.suspend": lambda i, k, d, t: self._idp(d, t).suspend(_text(i.get("user"), "user")),
            "idp.unsuspend": lambda i, k, d, t: self._idp(d, t).unsuspend(
                _text(i.get("user"), "user")
            ),
            "idp.clear_sessions": lambda i, k, d, t: self._idp(d, t).clear_sessions(
                _text(i.get("user"), "user")
            ),
            "cloud.deactivate_key": lambda i, k, d, t: self._cloud(d).deactivate_key(
                str(i.get("user") or ""), _text(i.get("key_id"), "key_id")
            ),
            "cloud.activate_key": lambda i, k, d, t: self._cloud(d).activate_key(
                str(i.get("user") or ""), _text(i.get("key_id"), "key_id")
            ),
            "rest.request": self._rest,
            "notify.webhook": self._webhook,
            "notify.email": self._email,
            "case.open": self._case,
            "session.revoke": self._revoke_sessions,
        }

    def run(
        self, action: str, inputs: Mapping[str, Any], *, key: str, dry_run: bool, timeout_s: float
    ) -> ActionResult:
        call = self._calls.get(action)
        if call is None:
            raise InputError(f"unknown action {action!r}")
        return call(inputs, key, dry_run, timeout_s)

    def done(self, action: str, inputs: Mapping[str, Any], key: str) -> bool | None:
        """Whether a non-idempotent action already ran under `key` (None: cannot tell)."""
        if action == "case.open":
            incident = self._incident_of(inputs)
            if not incident:
                return False  # it found no incident, so it wrote nothing
            marker = f"[{key}]"
            return any(
                marker in str(entry.get("text", ""))
                for entry in self.incidents.timeline(str(incident))
            )
        return None

    def _incident_of(self, inputs: Mapping[str, Any]) -> str:
        """The incident named, or the one the alert named is in ("" for none yet)."""
        if inputs.get("incident"):
            return str(inputs["incident"])
        if inputs.get("alert"):
            found = self.incidents.incidents_of([str(inputs["alert"])])
            return found[0] if found else ""
        return ""

    # --- the connectors, built when first used --------------------------------------------

    def _one(self, kind: str, dry_run: bool, build: Callable[[], Any]) -> Any:
        with self._lock:
            built = self._built.get((kind, dry_run))
            if built is None:
                built = self._built[(kind, dry_run)] = build()
            return built

    def _firewall(self, prefix: list[str], dry_run: bool) -> Nftables:
        return Nftables(dry_run=dry_run, prefix=prefix)

    def _host_prefix(self, host: str) -> list[str]:
        hosts = {name.lower(): argv for name, argv in self.settings.firewall.hosts.items()}
        prefix = hosts.get(host.lower())
        if prefix is None:
            raise InputError(
                f"no firewall is configured for host {host!r} ([respond.firewall] hosts)"
            )
        return list(prefix)

    def _block(self, inputs: Mapping[str, Any], key: str, dry: bool, t: float) -> ActionResult:
        timeout = int(inputs.get("timeout_s") or self.settings.firewall.block_timeout_s)
        firewall = self._firewall(self.settings.firewall.here, dry)
        return firewall.block(
            _text(inputs.get("address"), "address"),
            timeout_s=timeout,
        )

    def _unblock(self, inputs: Mapping[str, Any], key: str, dry: bool, t: float) -> ActionResult:
        firewall = self._firewall(self.settings.firewall.here, dry)
        return firewall.unblock(_text(inputs.get("address"), "address"))

    def _isolate(self, inputs: Mapping[str, Any], key: str, dry: bool, t: float) -> ActionResult:
        host = _text(inputs.get("host"), "host")
        allow = inputs.get("allow") or self.settings.firewall.management
        if isinstance(allow, str):
            allow = [allow]
        firewall = self._firewall(self._host_prefix(host), dry)
        return firewall.isolate([str(a) for a in allow])

    def _release(self, inputs: Mapping[str, Any], key: str, dry: bool, t: float) -> ActionResult:
        host = _text(inputs.get("host"), "host")
        return self._firewall(self._host_prefix(host), dry).release()

    def _directory(self, dry: bool) -> Any:
        given = self.settings.directory
        if not given.url:
            raise InputError("no directory is configured ([respond.directory] url)")

        def build() -> Any:
            from vigil.respond.ldap import Directory

            return Directory(
                given.url or "",
                given.bind_dn,
                given.password.get_secret_value(),
                base=given.base,
                kind=given.kind,
                dry_run=dry,
            )

        return self._one("directory", dry, build)

    def _idp(self, dry: bool, timeout_s: float) -> Any:
        given = self.settings.idp
        if not given.url:
            raise InputError("no identity provider is configured ([respond.idp] url)")

        def build() -> Any:
            from vigil.respond.idp import IdentityProvider

            return IdentityProvider(
                given.url or "", given.token.get_secret_value(), dry_run=dry, timeout_s=timeout_s
            )

        return self._one("idp", dry, build)

    def _cloud(self, dry: bool) -> Any:
        given = self.settings.cloud

        def build() -> Any:
            from vigil.respond.cloud import CloudKeys

            secret = given.secret_access_key
            return CloudKeys(
                endpoint_url=given.endpoint_url,
                region=given.region,
                access_key_id=given.access_key_id,
                secret_access_key=secret.get_secret_value() if secret else None,
                dry_run=dry,
            )

        return self._one("cloud", dry, build)

    def _rest(self, inputs: Mapping[str, Any], key: str, dry: bool, t: float) -> ActionResult:
        from vigil.respond.rest import RestCall

        name = _text(inputs.get("endpoint"), "endpoint")
        endpoint = self.settings.rest.get(name)
        if endpoint is None:
            raise InputError(f"no REST endpoint {name!r} is configured ([respond.rest.{name}])")
        call = RestCall(
            base_url=endpoint.base_url,
            auth=endpoint.auth,
            headers=endpoint.headers,
            dry_run=dry,
            timeout_s=t,
            verify=endpoint.verify,
        )
        expect_status = inputs.get("expect_status") or (200, 201, 202, 204)
        return call.request(
            _text(inputs.get("method"), "method").upper(),
            _text(inputs.get("path"), "path"),
            json=inputs.get("json"),
            params=inputs.get("params"),
            expect_status=tuple(int(s) for s in expect_status),
            expect=inputs.get("expect"),
            idempotency_key=key,
        )

    def _webhook(self, inputs: Mapping[str, Any], key: str, dry: bool, t: float) -> ActionResult:
        from vigil.respond.notify import Webhook

        url = self.settings.notify.webhook_url
        if url is None:
            raise InputError("no webhook is configured ([respond.notify] webhook_url)")
        hook = Webhook(url.get_secret_value(), dry_run=dry, timeout_s=t)
        return hook.send(
            _text(inputs.get("text"), "text"),
            fields=inputs.get("fields"),
            idempotency_key=key,
        )

    def _email(self, inputs: Mapping[str, Any], key: str, dry: bool, t: float) -> ActionResult:
        from vigil.respond.notify import Mailer

        given = self.settings.notify
        if not given.smtp_host:
            raise InputError("no SMTP server is configured ([respond.notify] smtp_host)")
        to = inputs.get("to") or given.to
        if isinstance(to, str):
            to = [to]
        if not to:
            raise InputError("no recipient: give `to` or [respond.notify] to")
        mailer = Mailer(
            given.smtp_host,
            given.smtp_port,
            sender=given.sender,
            starttls=given.starttls,
            username=given.username,
            password=given.password.get_secret_value() if given.password else None,
            dry_run=dry,
            timeout_s=t,
        )
        return mailer.send(
            [str(a) for a in to],
            _text(inputs.get("subject"), "subject"),
            _text(inputs.get("body"), "body"),
            idempotency_key=key,
        )

    def _revoke_sessions(
        self, inputs: Mapping[str, Any], key: str, dry: bool, t: float
    ) -> ActionResult:
        """End the Zero Trust sessions of a user or a device at once; the receivers (the
        enforcement points, the IdP) are told with a signed CAEP session-revoked token."""
        if self.sessions is None:
            raise InputError("no Zero Trust sessions here (vigil serve keeps them)")
        user = str(inputs.get("user") or "").strip()
        device = str(inputs.get("device") or "").strip()
        if not user and not device:
            raise InputError("input user or device is empty (the alert names neither)")
        found = self.sessions.active(subject=user or None, device=device or None)
        commands = [{"revoke": s.id, "subject": s.request.subject} for s in found]
        if dry:
            return ActionResult(True, True, commands, f"would revoke {len(found)} sessions")
        reason = str(inputs.get("reason") or f"revoked by a response playbook [{key}]")
        ended = [s.id for s in found if self.sessions.revoke(s.id, reason, actor="vigil:respond")]
        return ActionResult(
            True, False, commands, f"revoked {len(ended)} sessions", state={"revoked": ended}
        )

    def _case(self, inputs: Mapping[str, Any], key: str, dry: bool, t: float) -> ActionResult:
        """Open (or update) the incident's case: a note with the evidence, a task, a status."""
        incident = self._incident_of(inputs)
        if not incident:
            raise Unavailable("the alert is not in an incident yet", retry_after=1.0)
        note = str(inputs.get("note") or "Opened by a response playbook")
        status = inputs.get("status")
        commands = [
            {"incident": incident, "note": note, "task": inputs.get("task"), "status": status}
        ]
        if dry:
            return ActionResult(True, True, commands)
        self.incidents.get(incident)  # NotFound when there is none
        self.incidents.note(incident, "vigil:respond", f"{note} [{key}]")
        if inputs.get("task"):
            self.incidents.add_task(incident, "vigil:respond", str(inputs["task"]))
        kept = ""
        if inputs.get("evidence") is not None:  # the alert (or anything given) as a JSON file
            body = orjson.dumps(inputs["evidence"], default=str, option=orjson.OPT_INDENT_2)
            name = f"{key.replace(':', '-')}.json"
            try:
                item = self.incidents.add_evidence(
                    incident, "vigil:respond", name, io.BytesIO(body)
                )
                kept = f"; evidence {name} ({item['sha256'][:12]})"
            except Conflict as exc:  # a store without an evidence folder
                kept = f"; evidence not kept: {exc}"
        state = self.incidents.get(incident)["status"]
        for wanted in ([str(status)] if status else []) or (["triaged"] if state == "new" else []):
            with contextlib.suppress(Conflict):  # already there or past it
                self.incidents.set_status(incident, wanted, "vigil:respond", note)
        after = self.incidents.get(incident)
        return ActionResult(
            True,
            False,
            commands,
            output=f"case of {incident} updated{kept}",
            state={"status": after["status"]},
        )


__all__ = ["ACTIONS", "ActionSpec", "Connectors"]
