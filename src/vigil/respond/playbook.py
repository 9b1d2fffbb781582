"""Playbooks: what triggers a response and the steps it takes, written in YAML, checked
against a published JSON Schema (`vigil playbook schema`) and against the actions Vigil
knows (`vigil playbook validate`).

    id: contain-credential-dumping
    name: Contain credential dumping
    trigger: {type: alert, tags: [attack.t1003], level: high, entity: host}
    steps:
      - {id: isolate, action: firewall.isolate, with: {host: "{{ entity.host }}"}}
      - parallel:
          - {id: disable, action: directory.disable, with: {user: "{{ entity.user }}"},
             when: "entity.user"}
          - {id: case, action: case.open, with: {note: "Contained {{ entity.host }}"}}

Inputs and conditions are Jinja templates rendered in Jinja's immutable sandbox: they read
the alert or incident (`alert`, `incident`, `entity`, `entities`, `run`, `steps`), call no
code and change nothing. Event values are data put into a template, never templates.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
import yaml
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vigil.errors import InputError
from vigil.events.records import LEVELS

SLUG = r"^[a-z0-9][a-z0-9_-]{0,63}$"
MAX_TEMPLATE = 4096  # characters of one template
MAX_RENDERED = 65536  # characters of one rendered input

Level = Literal["informational", "low", "medium", "high", "critical"]
Id = Annotated[str, Field(pattern=SLUG)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Trigger(_Strict):
    """When a playbook runs: every condition given must hold (lists: any of their items)."""

    type: Literal["alert", "incident"] = Field("alert", description="what it reacts to")
    rules: list[str] = Field([], description="rule ids or titles")
    tags: list[str] = Field(
        [], description="ATT&CK tags (attack.t1003 also matches attack.t1003.001)"
    )
    level: Level | None = Field(None, description="the alert's or incident's lowest level")
    entity: Literal["host", "user", "ip", "domain", "url", "hash", "process", "file"] | None = (
        Field(None, description="an entity the alert or incident must name")
    )
    risk: Annotated[float, Field(ge=0)] | None = Field(
        None, description="an incident's lowest risk score"
    )
    asset_tags: list[str] = Field([], description="a tag the named host carries in the inventory")
    dataset: list[str] = Field([], description="the alert's dataset (vigil, suricata...)")
    dedupe: str | None = Field(
        None,
        description="template of the run's key: one run per key (default: the alert's or "
        "incident's id)",
    )


class Approval(_Strict):
    """A gate: the step waits (costing no worker) until one of `roles` approves; when
    `timeout_s` passes without an answer, it is denied."""

    roles: list[str] = Field(["responder", "admin"], min_length=1)
    timeout_s: Annotated[float, Field(gt=0, le=30 * 86400)] = 3600.0


class Undo(_Strict):
    """The compensation of an action that has none of its own (a generic REST call)."""

    action: str
    with_: dict[str, Any] = Field({}, alias="with")


class Step(_Strict):
    id: Id
    action: str = Field(description="an action Vigil knows: firewall.isolate, case.open...")
    with_: dict[str, Any] = Field({}, alias="with", description="inputs, templated")
    when: str | None = Field(None, description="a condition (a Jinja expression)")
    approval: Approval | None = None
    retries: Annotated[int, Field(ge=0, le=10)] = 0
    backoff_s: Annotated[float, Field(ge=0, le=600)] = 1.0
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    on_failure: Literal["compensate", "continue", "stop"] = Field(
        "compensate",
        description="compensate: undo what the run did, in reverse; continue: go on; stop: "
        "end the run and keep what it did",
    )
    undo: Undo | None = None


class Parallel(_Strict):
    parallel: list[Step] = Field(min_length=1)


class Playbook(_Strict):
    id: Id
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    version: Annotated[int, Field(ge=1)] = 1
    enabled: bool = True
    dry_run: bool = Field(False, description="only say what it would do (a pilot)")
    trigger: Trigger
    steps: list[Step | Parallel] = Field(min_length=1)

    def blocks(self) -> list[list[Step]]:
        """The steps as blocks run one after the other; the steps of a block run at once."""
        return [list(s.parallel) if isinstance(s, Parallel) else [s] for s in self.steps]

    def all_steps(self) -> Iterator[Step]:
        for block in self.blocks():
            yield from block

    def step(self, step_id: str) -> Step:
        for step in self.all_steps():
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=True)


def schema() -> dict[str, Any]:
    """The published JSON Schema of a playbook file."""
    out = Playbook.model_json_schema(by_alias=True)
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    out["$id"] = "https://vigil.dev/schemas/playbook.json"
    return out


# --- templates ------------------------------------------------------------------------------

_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_ENV.filters["json"] = lambda value: orjson.dumps(value, default=str).decode()
# an account name without its domain: CORP\\alice and alice@corp.example are alice
_ENV.filters["account"] = lambda value: str(value).rsplit("\\", 1)[-1].split("@", 1)[0]
_WHOLE = re.compile(r"^\{\{[^{}]*\}\}$")


def _check_template(text: str) -> None:
    if len(text) > MAX_TEMPLATE:
        raise InputError(f"a template is longer than {MAX_TEMPLATE} characters")
    _ENV.parse(text)


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """An input with its templates rendered: strings rendered (a string that is one
    `{{ expression }}` keeps the expression's type), lists and mappings walked."""
    if isinstance(value, str):
        if "{" not in value:
            return value
        try:
            if _WHOLE.match(value.strip()):
                out = _ENV.compile_expression(value.strip()[2:-2].strip(), undefined_to_none=False)(
                    **context
                )
                if isinstance(out, StrictUndefined):
                    str(out)  # raises: names what is missing
                return out
            text = _ENV.from_string(value).render(**context)
        except TemplateError as exc:
            raise InputError(f"template {value!r}: {exc}") from None
        if len(text) > MAX_RENDERED:
            raise InputError(f"template {value!r} gave more than {MAX_RENDERED} characters")
        return text
    if isinstance(value, list):
        return [render(item, context) for item in value]
    if isinstance(value, dict):
        return {key: render(item, context) for key, item in value.items()}
    return value


def holds(condition: str | None, context: Mapping[str, Any]) -> bool:
    """Whether a step's `when` holds; a name that is not there is false."""
    if not condition:
        return True
    try:
        expression = _ENV.compile_expression(condition)
        return bool(expression(**context))
    except TemplateError:
        return False


# --- loading and checking -------------------------------------------------------------------


def _templates(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _templates(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _templates(item)


def problems(playbook: Playbook, actions: Mapping[str, Any]) -> list[str]:
    """What is wrong beyond the schema: step ids used twice, actions unknown, inputs
    missing or unknown, templates that do not parse."""
    found: list[str] = []
    seen: set[str] = set()
    for step in playbook.all_steps():
        where = f"step {step.id!r}"
        if step.id in seen:
            found.append(f"{where}: the id is used twice")
        seen.add(step.id)
        for action, given in [(step.action, step.with_)] + (
            [(step.undo.action, step.undo.with_)] if step.undo else []
        ):
            spec = actions.get(action)
            if spec is None:
                found.append(
                    f"{where}: unknown action {action!r} (known: {', '.join(sorted(actions))})"
                )
                continue
            missing = [name for name in spec.required if name not in given]
            unknown = [name for name in given if name not in (*spec.required, *spec.optional)]
            if missing:
                found.append(f"{where}: {action} needs {', '.join(missing)}")
            if unknown:
                found.append(f"{where}: {action} takes no {', '.join(unknown)}")
        for text in [*_templates(step.with_), *([step.when] if step.when else [])]:
            try:
                _check_template(text)
            except (TemplateError, InputError) as exc:
                found.append(f"{where}: template {text[:60]!r}: {exc}")
    if playbook.trigger.dedupe:
        try:
            _check_template(playbook.trigger.dedupe)
        except (TemplateError, InputError) as exc:
            found.append(f"trigger dedupe: {exc}")
    if playbook.trigger.level is not None and playbook.trigger.level not in LEVELS:
        found.append(f"trigger level {playbook.trigger.level!r} is not a level")
    return found


def parse(data: Any, source: str, actions: Mapping[str, Any]) -> Playbook:
    """A playbook from its parsed YAML or JSON; InputError naming the file and every
    problem."""
    try:
        playbook = Playbook.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"{'.'.join(str(p) for p in error['loc']) or '(top)'}: {error['msg']}"
            for error in exc.errors()
        ]
        raise InputError(f"{source}: " + "; ".join(lines)) from None
    found = problems(playbook, actions)
    if found:
        raise InputError(f"{source}: " + "; ".join(found))
    return playbook


def load(path: Path, actions: Mapping[str, Any]) -> Playbook:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not YAML: {exc}") from None
    return parse(data, str(path), actions)


def files(paths: list[Path]) -> list[Path]:
    """The playbook files under the paths given (folders: their *.yml and *.yaml)."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(p for p in path.iterdir() if p.suffix in (".yml", ".yaml")))
        elif path.exists():
            out.append(path)
        else:
            raise InputError(f"{path}: no such playbook file or folder")
    return out


SHIPPED = Path(__file__).resolve().parent.parent / "playbooks"

__all__ = [
    "SHIPPED",
    "Approval",
    "Parallel",
    "Playbook",
    "Step",
    "Trigger",
    "Undo",
    "files",
    "holds",
    "load",
    "parse",
    "problems",
    "render",
    "schema",
]
