"""CACAO v2.0 (the OASIS security-playbook format) for Vigil playbooks: export a playbook
as a CACAO document other tools can read, and import one back, checked against the CACAO
JSON schemas first.

    document = to_cacao(playbook)            # a CACAO v2.0 playbook, as a dict
    print(dumps(document))                   # indented JSON
    validate(document)                       # [] when the CACAO schemas accept it
    from_cacao(document) == playbook         # True: the Vigil definition travels with it

The export is a workflow of CACAO steps: `start`, one `action` step per Vigil step (named
by the step's id), a `parallel` step per parallel block, an `if-condition` step per `when`,
`end` steps; `on_completion` where a failure goes on, `on_success`/`on_failure` where it
stops or undoes (the undo actions, newest first, are action steps too). Firewall blocks
and isolations are OpenC2 commands (`openc2-http`); the Okta, AWS IAM, REST and webhook
calls are `http-api` commands; what has no HTTP form (LDAP, e-mail, the case) is a `manual`
command saying what Vigil does. Template values become CACAO variables
(`{{ entity.host }}` is `__entity_host__:value`). The exact Vigil definition rides in the
`vigil-playbook` extension, so an import gives the same playbook back; a CACAO playbook
from another tool has none, and only its OpenC2 deny (an address) and contain (a host)
steps, in sequence or parallel, are translated: anything else is named in the error.

The CACAO schemas are third-party files read where they lie: the `schemas` argument, else
the folder in VIGIL_CACAO_SCHEMAS, else `shared/docs/cacao-v2.0-schemas/schemas` beside the
repository (searched upward from the working folder and from this file). They declare JSON
Schema draft-07 but use `unevaluatedProperties`, which draft-07 does not know; it is applied
where it means the same as `additionalProperties` (objects without `allOf`, `$ref`...), so
an unknown top-level property or workflow step kind is refused; commands are also checked
against the schema of their type, which the action schema does not reach.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import json
import os
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
from jsonschema import Draft7Validator, ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import extend, validator_for
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from vigil.errors import InputError, Unavailable
from vigil.respond.actions import ACTIONS, ActionSpec
from vigil.respond.playbook import SLUG, Playbook, Step, parse

SPEC_VERSION = "cacao-2.0"
ENV = "VIGIL_CACAO_SCHEMAS"
BESIDE = Path("shared", "docs", "cacao-v2.0-schemas", "schemas")

# Every CACAO id Vigil makes is a uuid5 under this namespace, so an export is stable.
NAMESPACE = uuid.UUID("5b0c6f1e-8f4a-4d4e-9a57-0d3c2f6a9e41")
IDENTITY = f"identity--{uuid.uuid5(NAMESPACE, 'vigil')}"
EXTENSION = "extension-definition--6c7d2a9e-3b1f-4f0e-8c55-2e9a41d7b3c8"
EXTENSION_NAME = "vigil-playbook"
EXTENSION_SCHEMA = "https://vigil.dev/schemas/playbook.json"  # `vigil playbook schema`
EXTENSION_VERSION = "1.0.0"

OPENC2_REQUEST = "POST /.well-known/openc2 HTTP/1.1"  # OpenC2 over HTTPS
OPENC2_HEADERS = {"Content-Type": ["application/openc2-cmd+json;version=1.0"]}
MESSAGE_CHARS = 300  # of one schema problem

# Vigil's context values a playbook from another tool may name as CACAO variables
ENTITY_KINDS = ("host", "user", "ip", "domain", "url", "hash", "process", "file")
CONTEXT = {
    **{f"__entity_{kind}__": f"{{{{ entity.{kind} }}}}" for kind in ENTITY_KINDS},
    "__alert_id__": "{{ alert.id }}",
    "__alert_rule_title__": "{{ alert.rule_title }}",
    "__incident_id__": "{{ incident.id }}",
    "__run_id__": "{{ run.id }}",
}

# action → (the CACAO playbook activity of its command, the playbook type it makes)
ROLES: dict[str, tuple[str | None, str | None]] = {
    "firewall.block": ("restrict-access", "mitigation"),
    "firewall.unblock": ("restore-capabilities", "remediation"),
    "firewall.isolate": ("disconnect-system", "mitigation"),
    "firewall.release": ("restore-capabilities", "remediation"),
    "directory.disable": ("restrict-access", "mitigation"),
    "directory.enable": ("restore-capabilities", "remediation"),
    "idp.suspend": ("restrict-access", "mitigation"),
    "idp.unsuspend": ("restore-capabilities", "remediation"),
    "idp.clear_sessions": ("restrict-access", "mitigation"),
    "cloud.deactivate_key": ("restrict-access", "mitigation"),
    "cloud.activate_key": ("restore-capabilities", "remediation"),
    "rest.request": (None, None),
    "notify.webhook": ("deliver-content", "notification"),
    "notify.email": ("deliver-content", "notification"),
    "case.open": ("analyze-collected-data", "investigation"),
}

# connector (the action's prefix) → the CACAO agent that stands for it
AGENTS: dict[str, tuple[str, str]] = {
    "firewall": ("Vigil firewall connector (nftables, [respond.firewall])", "firewall"),
    "directory": ("Vigil directory connector (LDAP, [respond.directory])", "aaa"),
    "idp": ("Vigil identity-provider connector (Okta API, [respond.idp])", "aaa"),
    "cloud": ("Vigil cloud connector (AWS IAM, [respond.cloud])", "aaa"),
    "rest": ("Vigil REST connector ([respond.rest])", "orchestrator"),
    "notify": ("Vigil notifications (chat webhook, SMTP; [respond.notify])", "orchestrator"),
    "case": ("Vigil incident cases", "ticketing"),
    "vigil": ("Vigil response engine", "orchestrator"),
}

STRICTNESS = {"continue": 0, "stop": 1, "compensate": 2}  # a block takes its strictest

_TEMPLATE = re.compile(r"\{\{\s*(.*?)\s*\}\}", re.DOTALL)
_PATH = re.compile(r"[A-Za-z_]\w*(?:\s*\.\s*[A-Za-z_]\w*|\s*\[\s*(?:'[^']*'|\"[^\"]*\")\s*\])*")
_REFERENCE = re.compile(r"__[a-zA-Z_][a-zA-Z0-9_-]{0,199}__:value")
_COMPOSED = ("allOf", "anyOf", "oneOf", "not", "$ref", "if", "dependencies")


# --- the schemas ----------------------------------------------------------------------------


def schemas_folder(schemas: Path | str | None = None) -> Path:
    """The folder of the CACAO v2.0 schemas (holding playbook.json): `schemas` if given,
    else VIGIL_CACAO_SCHEMAS, else `shared/docs/cacao-v2.0-schemas/schemas` in a folder above
    the working folder or above this file. Unavailable saying where it looked."""
    how = f"set {ENV} to the folder holding the CACAO v2.0 playbook.json"
    given = schemas if schemas is not None else os.environ.get(ENV) or None
    if given is not None:
        folder = Path(given).expanduser()
        if (folder / "playbook.json").is_file():
            return folder
        origin = "given" if schemas is not None else f"from {ENV}"
        raise Unavailable(f"no CACAO schemas in {folder} ({origin}: no playbook.json there); {how}")
    starts: list[Path] = []
    with contextlib.suppress(OSError):  # the working folder may be gone
        starts.append(Path.cwd())
    starts.append(Path(__file__).resolve().parent)
    for start in starts:
        for base in (start, *start.parents):
            if (base / BESIDE / "playbook.json").is_file():
                return base / BESIDE
    looked = " and ".join(str(s) for s in starts)
    raise Unavailable(
        f"the CACAO v2.0 JSON schemas were not found: no {BESIDE} in any folder above {looked}; "
        f"{how} (the schemas of github.com/oasis-open/cacao-json-schemas, cacao-v2.0-cs01)"
    )


def _unevaluated(
    validator: Validator, unevaluated: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    """`unevaluatedProperties: false` where it means `additionalProperties: false`: in an
    object schema with no `allOf`, `$ref`... (those need annotations draft-07 has not)."""
    if unevaluated is not False or not isinstance(instance, dict):
        return
    if any(key in schema for key in _COMPOSED):
        return
    known = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extra = [k for k in instance if k not in known and not any(re.search(p, k) for p in patterns)]
    if extra:
        names = ", ".join(repr(k) for k in extra)
        yield ValidationError(f"unknown {'property' if len(extra) == 1 else 'properties'} {names}")


@dataclass(frozen=True, slots=True)
class _Schemas:
    playbook: Validator
    commands: dict[str, Validator]  # command type → its own schema


@functools.lru_cache(maxsize=4)
def _compiled(folder: Path) -> _Schemas:
    """The schemas of `folder` compiled once: every file registered under its `$id` (or,
    lacking one, under the URL it would have beside playbook.json)."""
    try:
        root = json.loads((folder / "playbook.json").read_text(encoding="utf-8"))
        base = str(root.get("$id", folder.as_uri() + "/playbook.json")).rsplit("/", 1)[0] + "/"
        resources: list[tuple[str, Resource[Any]]] = []
        contents: dict[str, Any] = {}
        for path in sorted(folder.rglob("*.json")):
            schema = json.loads(path.read_text(encoding="utf-8"))
            uri = str(schema.get("$id") or base + path.relative_to(folder).as_posix())
            contents[path.relative_to(folder).as_posix()] = schema
            resources.append((uri, Resource.from_contents(schema, default_specification=DRAFT7)))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise Unavailable(f"the CACAO schemas in {folder} cannot be read: {exc}") from None
    # a Registry retrieves nothing it was not given: no $ref ever goes to the network
    registry: Registry[Any] = Registry().with_resources(resources)
    declared = validator_for(root, default=Draft7Validator)
    checker: type[Validator] = extend(  # type: ignore[no-untyped-call]
        declared, {"unevaluatedProperties": _unevaluated}
    )
    commands = {
        name.removeprefix("commands/").removesuffix(".json"): checker(schema, registry=registry)
        for name, schema in contents.items()
        if name.startswith("commands/") and name != "commands/command-data.json"
    }
    return _Schemas(checker(root, registry=registry), commands)


def _message(error: ValidationError, prefix: str = "$") -> str:
    where = prefix + error.json_path[1:]
    text = error.message
    if error.context:  # anyOf, oneOf: the branch that came closest says more
        closest = min(error.context, key=lambda e: (len(e.absolute_path), e.message))
        text = f"{error.validator} failed: {closest.message}"
    elif error.validator == "not":  # its message repeats the whole instance
        text = "must not match " + orjson.dumps(error.validator_value).decode()
    if len(text) > MESSAGE_CHARS:
        text = text[: MESSAGE_CHARS - 1] + "…"
    return f"{where}: {text}"


def validate(document: Any, schemas: Path | str | None = None) -> list[str]:
    """What the CACAO v2.0 schemas find wrong with `document` ("<JSON path>: <problem>"),
    empty when it is valid. Unavailable when the schemas are not found."""
    compiled = _compiled(schemas_folder(schemas).resolve())
    errors = sorted(
        compiled.playbook.iter_errors(document),
        key=lambda e: ([str(p) for p in e.absolute_path], e.message),
    )
    found = [_message(e) for e in errors]
    workflow = document.get("workflow") if isinstance(document, dict) else None
    for key, step in (workflow if isinstance(workflow, dict) else {}).items():
        if not isinstance(step, dict) or not isinstance(step.get("commands"), list):
            continue
        for index, command in enumerate(step["commands"]):
            kind = command.get("type") if isinstance(command, dict) else None
            checker = compiled.commands.get(kind) if isinstance(kind, str) else None
            if checker is None:
                continue  # a type of no schema of its own (an extension's)
            prefix = f"$.workflow[{key!r}].commands[{index}]"
            found.extend(_message(e, prefix) for e in checker.iter_errors(command))
    return found


# --- export ---------------------------------------------------------------------------------


def _timestamp(created: str | None) -> str:
    """RFC 3339 in UTC to the millisecond, as CACAO wants it."""
    if created is None:
        moment = datetime.now(UTC)
    else:
        try:
            moment = datetime.fromisoformat(created)
        except ValueError:
            raise InputError(f"created {created!r} is not an RFC 3339 time") from None
        if moment.tzinfo is None:
            raise InputError(f"created {created!r} has no time zone (add Z or an offset)")
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _variable(expression: str) -> tuple[str, str] | None:
    """The CACAO variable a template expression reads (name, the Vigil template), from the
    path it starts with: `entity.user | account` reads `__entity_user__`."""
    match = _PATH.match(expression)
    if match is None:
        return None
    parts = re.findall(r"[A-Za-z0-9_-]+", match.group(0))
    name = "_".join(parts)[:200]
    return f"__{name}__", "{{ " + re.sub(r"\s+", "", match.group(0)) + " }}"


def _b64(value: Any) -> str:
    return base64.b64encode(orjson.dumps(value)).decode()


def _openc2(body: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "type": "openc2-http",
        "description": description,
        "command": OPENC2_REQUEST,
        "headers": OPENC2_HEADERS,
        "content_b64": _b64(body),
    }


def _http(
    method: str, path: str, description: str, content: str | None = None, kind: str = "json"
) -> dict[str, Any]:
    command: dict[str, Any] = {
        "type": "http-api",
        "description": description,
        "command": f"{method} {path} HTTP/1.1",
    }
    if content is not None:
        media = "application/json" if kind == "json" else "application/x-www-form-urlencoded"
        command["headers"] = {"Content-Type": [media]}
        command["content"] = content
    return command


def _manual(text: str) -> dict[str, Any]:
    return {"type": "manual", "command": text}  # the command says it all


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _block(i: Mapping[str, Any]) -> list[dict[str, Any]]:
    address = i.get("address", "")
    # a literal IPv6 address is an ipv6_net; a value Vigil fills in is taken for IPv4
    net = "ipv6_net" if ":" in str(address) and not _REFERENCE.search(str(address)) else "ipv4_net"
    body: dict[str, Any] = {"action": "deny", "target": {net: address}}
    if isinstance(i.get("timeout_s"), int | float) and not isinstance(i.get("timeout_s"), bool):
        body["args"] = {"duration": int(i["timeout_s"] * 1000)}  # OpenC2: milliseconds
    return [_openc2(body, f"Block {_shown(address)} at the gateway (traffic from and to it)")]


def _isolate(i: Mapping[str, Any]) -> list[dict[str, Any]]:
    host = i.get("host", "")
    body = {"action": "contain", "target": {"device": {"hostname": host}}}
    also = f" (management still reaches it: {_shown(i['allow'])})" if i.get("allow") else ""
    return [_openc2(body, f"Isolate host {_shown(host)} from the network{also}")]


def _okta(operation: str, verb: str) -> Callable[[Mapping[str, Any]], list[dict[str, Any]]]:
    def build(i: Mapping[str, Any]) -> list[dict[str, Any]]:
        user = _shown(i.get("user", ""))
        if operation == "sessions":
            return [_http("DELETE", f"/api/v1/users/{user}/sessions", f"{verb} {user}")]
        path = f"/api/v1/users/{user}/lifecycle/{operation}"
        return [_http("POST", path, f"{verb} the account {user} at the identity provider")]

    return build


def _iam(status: str) -> Callable[[Mapping[str, Any]], list[dict[str, Any]]]:
    def build(i: Mapping[str, Any]) -> list[dict[str, Any]]:
        form = {"Action": "UpdateAccessKey", "Version": "2010-05-08"}
        form |= {"AccessKeyId": _shown(i.get("key_id", "")), "Status": status}
        if i.get("user"):
            form["UserName"] = _shown(i["user"])
        verb = "Deactivate" if status == "Inactive" else "Activate"
        text = f"{verb} the AWS access key {form['AccessKeyId']} (IAM UpdateAccessKey)"
        return [_http("POST", "/", text, urlencode(form, safe=":"), kind="form")]

    return build


def _rest(i: Mapping[str, Any]) -> list[dict[str, Any]]:
    method = _shown(i.get("method", "GET")).upper()
    path = "/" + _shown(i.get("path", "")).lstrip("/")  # relative to the endpoint's base URL
    if i.get("params"):
        path += "?" + urlencode({k: _shown(v) for k, v in dict(i["params"]).items()}, safe=":")
    content = orjson.dumps(i["json"]).decode() if "json" in i else None
    text = f"{method} {path} on the REST endpoint {_shown(i.get('endpoint', ''))}"
    return [_http(method, path, text, content)]


def _webhook(i: Mapping[str, Any]) -> list[dict[str, Any]]:
    body: dict[str, Any] = {"text": i.get("text", "")}
    if i.get("fields"):
        body["fields"] = i["fields"]
    content = orjson.dumps(body).decode()
    return [_http("POST", "/", "Post the message to the team's chat webhook", content)]


def _email(i: Mapping[str, Any]) -> list[dict[str, Any]]:
    to = _shown(i["to"]) if i.get("to") else "the SOC's address ([respond.notify] to)"
    subject, body = _shown(i.get("subject", "")), _shown(i.get("body", ""))
    return [_manual(f"E-mail {to}. Subject: {subject}. Body: {body}")]


def _case(i: Mapping[str, Any]) -> list[dict[str, Any]]:
    which = f"incident {_shown(i['incident'])}" if i.get("incident") else "the incident"
    if not i.get("incident") and i.get("alert"):
        which = f"the incident of alert {_shown(i['alert'])}"
    parts = [f"Open the case of {which}"]
    parts += [f"add the note: {_shown(i['note']).rstrip('.')}"] if i.get("note") else []
    parts += [f"add the task: {_shown(i['task']).rstrip('.')}"] if i.get("task") else []
    parts += [f"set its status to {_shown(i['status'])}"] if i.get("status") else []
    return [_manual("; ".join(parts) + ".")]


class _Given(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return f"(no {key} given)"


def _said(text: str) -> Callable[[Mapping[str, Any]], list[dict[str, Any]]]:
    return lambda i: [_manual(text.format_map(_Given({k: _shown(v) for k, v in i.items()})))]


# action → its CACAO commands, from its inputs (template values already CACAO variables)
COMMANDS: dict[str, Callable[[Mapping[str, Any]], list[dict[str, Any]]]] = {
    "firewall.block": _block,
    "firewall.unblock": _said("Unblock {address}: remove it from the gateway's block set."),
    "firewall.isolate": _isolate,
    "firewall.release": _said("Release host {host}: lift its isolation (all traffic again)."),
    "directory.disable": _said(
        "Disable the directory account {user} so it can no longer bind (LDAP: "
        "pwdAccountLockedTime set; Active Directory: ACCOUNTDISABLE in userAccountControl)."
    ),
    "directory.enable": _said(
        "Enable the directory account {user} again (LDAP: pwdAccountLockedTime removed; "
        "Active Directory: ACCOUNTDISABLE cleared in userAccountControl)."
    ),
    "idp.suspend": _okta("suspend", "Suspend"),
    "idp.unsuspend": _okta("unsuspend", "Unsuspend"),
    "idp.clear_sessions": _okta("sessions", "End every session of"),
    "cloud.deactivate_key": _iam("Inactive"),
    "cloud.activate_key": _iam("Active"),
    "rest.request": _rest,
    "notify.webhook": _webhook,
    "notify.email": _email,
    "case.open": _case,
}


class _Writer:
    """One playbook's CACAO workflow, built from the last block back to the first (each
    step then knows the one after it)."""

    def __init__(self, playbook: Playbook) -> None:
        self.playbook = playbook
        self.steps: dict[str, dict[str, Any]] = {}
        self.variables: dict[str, dict[str, Any]] = {}
        self.agents: dict[str, dict[str, Any]] = {}

    def ident(self, kind: str, *parts: str) -> str:
        return f"{kind}--{uuid.uuid5(NAMESPACE, '/'.join((self.playbook.id, kind, *parts)))}"

    def add(self, ident: str, step: dict[str, Any]) -> str:
        self.steps[ident] = step
        return ident

    def end(self, *parts: str, name: str) -> str:
        ident = self.ident("end", *parts)
        if ident not in self.steps:
            self.add(ident, {"type": "end", "name": name})
        return ident

    def cacao(self, value: Any) -> Any:
        """A Vigil input with its templates turned into CACAO variable references."""
        if isinstance(value, str):
            return _TEMPLATE.sub(self._reference, value)
        if isinstance(value, list):
            return [self.cacao(item) for item in value]
        if isinstance(value, dict):
            return {key: self.cacao(item) for key, item in value.items()}
        return value

    def _reference(self, match: re.Match[str]) -> str:
        found = _variable(match.group(1))
        if found is None:
            return match.group(0)  # no path to name it by: the template stays as it is
        name, template = found
        self.variables.setdefault(
            name,
            {
                "type": "string",
                "description": f"Filled in by Vigil from the run's context: {template}",
                "external": True,
            },
        )
        return f"{name}:value"

    def agent(self, action: str, endpoint: Any = None) -> str:
        kind = action.split(".", 1)[0] if action in COMMANDS else "vigil"
        name, category = AGENTS[kind]
        parts = [kind]
        if kind == "rest" and endpoint:
            name, parts = f"Vigil REST endpoint {_shown(endpoint)} ([respond.rest])", [kind, name]
        ident = self.ident("security-category", *parts)
        self.agents[ident] = {"type": "security-category", "name": name, "category": [category]}
        return ident

    def action(
        self, step_id: str, action: str, given: Mapping[str, Any], **extra: Any
    ) -> dict[str, Any]:
        inputs = self.cacao(dict(given))
        if action in COMMANDS:
            commands = COMMANDS[action](inputs)
        else:
            commands = [_manual(f"Run the Vigil action {action} with {_shown(inputs)}.")]
        activity = ROLES.get(action, (None, None))[0]
        for command in commands:
            if activity:
                command["playbook_activity"] = activity
        step: dict[str, Any] = {
            "type": "action",
            "name": extra.get("name", step_id),
            "description": commands[0].get("description") or commands[0]["command"],
            "agent": self.agent(action, inputs.get("endpoint")),
            "commands": commands,
        }
        if "timeout_s" in extra:
            step["timeout"] = round(extra["timeout_s"] * 1000)  # CACAO: milliseconds
        return step

    def chain(self, s: Step, ok: str, fail: str | None) -> str:
        """The step's action (behind its approval, if any) going on to `ok`, or to `fail`
        when it fails (None: to `ok` either way)."""
        ident = self.add(
            self.ident("action", "step", s.id),
            _linked(self.action(s.id, s.action, s.with_, timeout_s=s.timeout_s), ok, fail),
        )
        if s.approval is None:
            return ident
        roles = ", ".join(s.approval.roles)
        group = self.ident("group", "approvers", *s.approval.roles)
        self.agents[group] = {"type": "group", "name": f"Vigil approvers ({roles})"}
        text = (
            f"Approve step {s.id} ({s.action}): one of the roles {roles} answers within "
            f"{s.approval.timeout_s:g} s; no answer denies it."
        )
        gate = {
            "type": "action",
            "name": f"approve {s.id}",
            "description": text,
            "agent": group,
            "commands": [_manual(text)],
            "timeout": round(s.approval.timeout_s * 1000),
            "on_success": ident,
            "on_failure": fail or ok,
        }
        return self.add(self.ident("action", "approval", s.id), gate)

    def condition(self, s: Step) -> str:
        """An if-condition whose true branch is the step, ending at an end of its own."""
        assert s.when is not None
        head = self.chain(s, self.end("then", s.id, name=f"end of {s.id}"), None)
        return self.add(
            self.ident("if-condition", "when", s.id),
            {
                "type": "if-condition",
                "name": f"when ({s.id})",
                "description": f"Vigil runs step {s.id} only when this condition over the "
                "run's context holds (a Jinja expression); else the step is skipped.",
                "condition": s.when,
                "on_true": head,
            },
        )

    def branch(self, s: Step) -> str:
        end = self.end("branch", s.id, name=f"end of the branch of {s.id}")
        if s.when:
            ident = self.condition(s)
            self.steps[ident]["on_completion"] = end
            return ident
        return self.chain(s, end, None)

    def block(self, block: list[Step], ok: str, fail: str | None) -> str:
        if len(block) == 1:  # a parallel block of one step is just the step
            s = block[0]
            if s.when:
                ident = self.condition(s)
                self.steps[ident].update(_linked({}, ok, fail))
                return ident
            return self.chain(s, ok, fail)
        heads = [self.branch(s) for s in block]
        step = {
            "type": "parallel",
            "name": "at once: " + ", ".join(s.id for s in block),
            "next_steps": heads,
        }
        return self.add(self.ident("parallel", block[0].id), _linked(step, ok, fail))

    def undo_of(self, s: Step) -> tuple[str, dict[str, Any]] | None:
        spec: ActionSpec | None = ACTIONS.get(s.action)
        if s.undo is not None:
            return s.undo.action, s.undo.with_
        if spec is not None and spec.undo is not None:
            return spec.undo, {k: s.with_[k] for k in spec.undo_inputs if k in s.with_}
        return None

    def workflow(self) -> str:
        """The steps, and the id of the start step."""
        blocks = self.playbook.blocks()
        policies = [max((s.on_failure for s in b), key=STRICTNESS.__getitem__) for b in blocks]
        # the undo chain: each undo goes on to the one of the step before, then to the end
        entries: list[str] = []  # per block: where its failure enters the chain
        if "compensate" in policies:
            last = max(k for k, p in enumerate(policies) if p == "compensate")
            before = self.end("compensated", name="failed: what the run did is undone")
            for k, block in enumerate(blocks[: last + 1]):
                entry = before
                # a failed step did nothing to undo, but the others of its block may have
                if k < last or len(block) > 1:
                    for s in block:
                        undo = self.undo_of(s)
                        if undo is None:
                            continue
                        step = self.action(s.id, undo[0], undo[1], name=f"undo {s.id}")
                        step["on_completion"] = before
                        before = self.add(self.ident("action", "undo", s.id), step)
                entries.append(before if len(block) > 1 else entry)
        following = self.end("main", name="end")
        for k in reversed(range(len(blocks))):
            if policies[k] == "continue":
                fail = None
            elif policies[k] == "stop":
                fail = self.end("failed", name="failed: the run ends, keeping what it did")
            else:
                fail = entries[k]
            following = self.block(blocks[k], following, fail)
        return self.add(
            self.ident("start", "main"),
            {"type": "start", "name": "start", "on_completion": following},
        )

    def ordered(self, start: str) -> dict[str, dict[str, Any]]:
        """The steps in the order they are reached from the start (easier to read)."""
        seen: dict[str, dict[str, Any]] = {}
        todo = [start]
        while todo:
            ident = todo.pop()
            if ident in seen or ident not in self.steps:
                continue
            step = seen[ident] = self.steps[ident]
            after = [step.get(k) for k in ("on_true", "on_success", "on_completion")]
            nexts = [*step.get("next_steps", []), *after, step.get("on_failure")]
            todo.extend(reversed([n for n in nexts if n]))
        return seen | self.steps


def _linked(step: dict[str, Any], ok: str, fail: str | None) -> dict[str, Any]:
    if fail is None:
        step["on_completion"] = ok
    else:
        step["on_success"] = ok
        step["on_failure"] = fail
    return step


def to_cacao(playbook: Playbook, *, created: str | None = None) -> dict[str, Any]:
    """The playbook as a CACAO v2.0 document; `created` (RFC 3339, default now) is also its
    `modified`. The same playbook always gives the same ids."""
    stamp = _timestamp(created)
    writer = _Writer(playbook)
    start = writer.workflow()
    document: dict[str, Any] = {
        "type": "playbook",
        "spec_version": SPEC_VERSION,
        "id": f"playbook--{uuid.uuid5(NAMESPACE, 'playbook/' + playbook.id)}",
        "name": playbook.name,
    }
    if playbook.description:
        document["description"] = playbook.description
    # what the playbook is for, from what its steps do (undo steps aside)
    roles = [ROLES.get(s.action, (None, None)) for s in playbook.all_steps()]
    types = list(dict.fromkeys(kind for _, kind in roles if kind))
    activities = list(dict.fromkeys(activity for activity, _ in roles if activity))
    document["playbook_types"] = types or ["investigation"]
    document["playbook_activities"] = activities or ["analyze-collected-data"]
    if playbook.trigger.tags:
        document["labels"] = list(playbook.trigger.tags)
    document |= {
        "created_by": IDENTITY,
        "created": stamp,
        "modified": stamp,
        "revoked": False,
    }
    if writer.variables:
        document["playbook_variables"] = writer.variables
    document["workflow_start"] = start
    document["workflow"] = writer.ordered(start)
    document["agent_definitions"] = writer.agents
    document["extension_definitions"] = {
        EXTENSION: {
            "type": "extension-definition",
            "name": EXTENSION_NAME,
            "description": "The Vigil playbook this CACAO playbook was made from, exactly.",
            "created_by": IDENTITY,
            "schema": EXTENSION_SCHEMA,
            "version": EXTENSION_VERSION,
        }
    }
    document["playbook_extensions"] = {EXTENSION: playbook.to_dict()}
    return document


# --- import ---------------------------------------------------------------------------------


def _slug(text: Any, fallback: str) -> str:
    slug = re.sub(r"[^a-z0-9_-]+", "-", str(text or "").lower()).strip("-_")[:64].rstrip("-_")
    return slug if re.match(SLUG, slug) else fallback


def _next(step: Mapping[str, Any]) -> str | None:
    found = step.get("on_completion") or step.get("on_success")
    return found if isinstance(found, str) else None


class _Reader:
    """A CACAO workflow from another tool walked from its start, each step it can translate
    turned into a Vigil step, each it cannot noted."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.workflow: Mapping[str, Any] = document["workflow"]
        self.variables: Mapping[str, Any] = document.get("playbook_variables") or {}
        self.problems: list[str] = []
        self.ids: set[str] = set()

    def where(self, ident: str) -> str:
        step = self.workflow.get(ident)
        name = step.get("name") if isinstance(step, dict) else None
        return f"step {ident}" + (f" ({name})" if name else "")

    def fail(self, ident: str, why: str) -> None:
        self.problems.append(f"{self.where(ident)}: {why}")

    def get(self, ident: str, by: str) -> dict[str, Any] | None:
        step = self.workflow.get(ident)
        if not isinstance(step, dict):
            self.problems.append(
                f"{self.where(by)}: leads to {ident}, which is not in the workflow"
            )
            return None
        return step

    def steps(self, start: str) -> list[dict[str, Any]]:
        """The Vigil steps (and parallel blocks) from the start step to the end."""
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        current: str | None = _next(self.workflow[start])
        came_from = start
        while current is not None:
            if current in seen:
                self.fail(current, "the workflow comes back to it (Vigil runs no loops)")
                break
            seen.add(current)
            step = self.get(current, came_from)
            if step is None or step.get("type") == "end":
                break
            kind = step.get("type")
            if kind == "action":
                translated = self.action(current, step, self.policy(current, step))
                if translated is not None:
                    out.append(translated)
                following = _next(step)
            elif kind == "parallel":
                following = self.parallel(current, step, out)
            else:
                self.fail(
                    current, f"a step of type {kind!r}: Vigil translates action and parallel steps"
                )
                following = _next(step)
            came_from, current = current, following
        return out

    def policy(self, ident: str, step: Mapping[str, Any]) -> str:
        """What Vigil does when the step fails, from where the step then goes."""
        if "on_completion" in step:
            return "continue"
        failure = step.get("on_failure")
        if failure is not None:
            target = self.workflow.get(failure)
            if not isinstance(target, dict) or target.get("type") != "end":
                self.fail(
                    ident,
                    f"on failure it goes on to {failure}: Vigil can only stop, go on "
                    "or undo when a step fails",
                )
        return "stop"

    def parallel(
        self, ident: str, step: Mapping[str, Any], out: list[dict[str, Any]]
    ) -> str | None:
        following = _next(step)
        joins: set[str] = set()
        block: list[dict[str, Any]] = []
        for head in step.get("next_steps", []):
            branch = self.get(head, ident)
            if branch is None:
                continue
            if branch.get("type") != "action":
                self.fail(
                    head,
                    f"a step of type {branch.get('type')!r} in a parallel branch: Vigil "
                    "runs one action per branch",
                )
                continue
            on = step if ("on_completion" in step or "on_success" in step) else branch
            translated = self.action(head, branch, self.policy(ident if on is step else head, on))
            if translated is not None:
                block.append(translated)
            after = _next(branch)
            if after is not None and (self.workflow.get(after) or {}).get("type") != "end":
                joins.add(after)
        if joins:
            if following is None and len(joins) == 1:
                following = joins.pop()  # the branches meet there
            else:
                self.fail(
                    ident,
                    "its branches go on past one step: Vigil runs one action per parallel branch",
                )
        if block:
            out.append({"parallel": block} if len(block) > 1 else block[0])
        return following

    def action(self, ident: str, step: Mapping[str, Any], policy: str) -> dict[str, Any] | None:
        commands = step.get("commands") or []
        if len(commands) != 1:
            self.fail(ident, f"{len(commands)} commands: a Vigil step runs one action")
            return None
        found = self.command(ident, commands[0], step)
        if found is None:
            return None
        action, inputs = found
        base = _slug(step.get("name"), f"step-{len(self.ids) + 1}")
        step_id, n = base, 2
        while step_id in self.ids:
            step_id, n = f"{base[:60]}-{n}", n + 1
        self.ids.add(step_id)
        out: dict[str, Any] = {"id": step_id, "action": action, "with": inputs}
        out["on_failure"] = policy
        if isinstance(step.get("timeout"), int) and step["timeout"] > 0:
            out["timeout_s"] = step["timeout"] / 1000
        return out

    def command(
        self, ident: str, command: Mapping[str, Any], step: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any]] | None:
        kind = command.get("type")
        if kind != "openc2-http":
            self.fail(
                ident, f"a command of type {kind!r}: Vigil translates OpenC2 (openc2-http) only"
            )
            return None
        try:
            body = json.loads(base64.b64decode(str(command.get("content_b64", "")), validate=True))
        except (binascii.Error, ValueError):
            self.fail(ident, "its OpenC2 content_b64 is not base64 of JSON")
            return None
        if isinstance(body, dict) and isinstance(body.get("body"), dict):
            body = (body["body"].get("openc2") or {}).get("request")  # an OpenC2 1.1 message
        if not isinstance(body, dict) or not isinstance(body.get("target"), dict):
            self.fail(ident, "its OpenC2 content is not a command (action and target)")
            return None
        body = self.resolve(ident, body, step)
        verb, target, args = body.get("action"), body["target"], body.get("args") or {}
        net = target.get("ipv4_net") or target.get("ipv6_net")
        device = target.get("device")
        if verb == "deny" and len(target) == 1 and isinstance(net, str):
            inputs: dict[str, Any] = {"address": net}
            duration = args.get("duration") if isinstance(args, dict) else None
            if isinstance(duration, int) and not isinstance(duration, bool) and duration > 0:
                inputs["timeout_s"] = duration // 1000 if duration % 1000 == 0 else duration / 1000
            return "firewall.block", inputs
        if verb == "contain" and len(target) == 1 and isinstance(device, dict):
            host = device.get("hostname") or device.get("idn_hostname")
            if isinstance(host, str) and host:
                return "firewall.isolate", {"host": host}
        shown = ", ".join(sorted(target))
        self.fail(
            ident,
            f"OpenC2 {verb} on {shown} has no Vigil action (Vigil translates deny "
            "on ipv4_net or ipv6_net, and contain on a device's hostname)",
        )
        return None

    def resolve(self, ident: str, value: Any, step: Mapping[str, Any]) -> Any:
        """`__name__:value` references replaced: by the variable's value when the playbook
        gives one, by the Vigil template when it is a context value Vigil knows."""
        if isinstance(value, dict):
            return {k: self.resolve(ident, v, step) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(ident, v, step) for v in value]
        if not isinstance(value, str):
            return value
        known = {**self.variables, **(step.get("step_variables") or {})}

        def replace(match: re.Match[str]) -> str:
            name = match.group(0).removesuffix(":value")
            variable = known.get(name)
            if not isinstance(variable, dict) or variable.get("external"):
                variable = {}
            if isinstance(variable.get("value"), str):
                return str(variable["value"])
            if name in CONTEXT:
                return CONTEXT[name]
            self.fail(
                ident,
                f"variable {name} has no value and is none Vigil fills in ({', '.join(CONTEXT)})",
            )
            return match.group(0)

        return _REFERENCE.sub(replace, value)


def _actions_of(workflow: Mapping[str, Any]) -> dict[str, str]:
    return {
        ident: str(step.get("name", ""))
        for ident, step in workflow.items()
        if isinstance(step, dict) and step.get("type") == "action"
    }


def _agrees(document: Mapping[str, Any], playbook: Playbook, source: str) -> None:
    """InputError unless the workflow's action steps are those the definition makes."""
    writer = _Writer(playbook)
    writer.workflow()
    wanted, found = _actions_of(writer.steps), _actions_of(document["workflow"])
    if wanted == found:
        return
    lines = [
        f"the workflow has no action step {wanted[i]!r} ({i})" for i in wanted if i not in found
    ]
    lines += [
        f"action step {found[i]!r} ({i}) is not in the Vigil playbook"
        for i in found
        if i not in wanted
    ]
    lines += [
        f"action step {i} is named {found[i]!r}, not {wanted[i]!r}"
        for i in wanted
        if i in found and found[i] != wanted[i]
    ]
    raise InputError(
        f"{source}: the workflow does not match the Vigil playbook it carries "
        f"({EXTENSION_NAME} extension): " + "; ".join(lines)
    )


def from_cacao(
    document: Any,
    actions: Mapping[str, Any] = ACTIONS,
    *,
    schemas: Path | str | None = None,
) -> Playbook:
    """The Vigil playbook of a CACAO v2.0 document: checked against the CACAO schemas, then
    taken from the Vigil extension when it has one (which must agree with its workflow), else
    translated. InputError naming every problem; Unavailable when the schemas are missing."""
    problems = validate(document, schemas)
    name = document.get("id") if isinstance(document, dict) else None
    source = f"CACAO playbook {name}" if isinstance(name, str) else "CACAO playbook"
    if problems:
        raise InputError(f"{source}: not a valid CACAO v2.0 playbook: " + "; ".join(problems))
    definition = (document.get("playbook_extensions") or {}).get(EXTENSION)
    if definition is not None:
        playbook = parse(definition, source, actions)
        _agrees(document, playbook, source)
        return playbook
    start = document["workflow_start"]
    if (document["workflow"].get(start) or {}).get("type") != "start":
        raise InputError(f"{source}: workflow_start {start} is not a start step of the workflow")
    reader = _Reader(document)
    steps = reader.steps(start)
    if reader.problems:
        found = dict.fromkeys(reader.problems)  # a parallel step's links are read per branch
        raise InputError(f"{source}: cannot be translated: " + "; ".join(found))
    if not steps:
        raise InputError(f"{source}: has no action step to translate")
    fallback = "cacao-" + document["id"].split("--", 1)[1][:8]
    data: dict[str, Any] = {
        "id": _slug(document.get("name"), fallback),
        "name": str(document["name"])[:200] or fallback,
        "description": str(document.get("description", "")),
        "enabled": False,  # CACAO has no trigger: it runs once someone gives it one
        "trigger": {},
        "steps": steps,
    }
    return parse(data, source, actions)


def dumps(document: Mapping[str, Any]) -> str:
    """The document as indented JSON (for `vigil playbook export`)."""
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()


__all__ = [
    "ENV",
    "EXTENSION",
    "EXTENSION_NAME",
    "dumps",
    "from_cacao",
    "schemas_folder",
    "to_cacao",
    "validate",
]
