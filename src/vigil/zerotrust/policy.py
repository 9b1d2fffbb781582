"""Access policy in YAML, typed and compiled once: who (users, groups, service identities)
may do what (actions) on which resources (by name, asset tag or segment), and when
(authentication strength, device posture, source network, country, time of day, live user
and device risk). Default deny; a deny rule that holds wins; an allow rule whose failures can
all be fixed by the user (MFA, a healthy device) gives `step_up`.

    policies:
      - id: finance-apps
        effect: allow
        subjects: {groups: [finance]}
        resources: {tags: [finance-app]}
        actions: [read, write]
        when:
          mfa: true
          device: {managed: true, disk_encrypted: true, edr: true, max_patch_age_days: 30}
          networks: [10.0.0.0/8]
          countries: [DE, FR]
          hours: {days: [mon, tue, wed, thu, fri], start: "07:00", end: "20:00",
                  tz: Europe/Berlin}
          max_user_risk: 50
          max_device_risk: 50
        session_s: 3600
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vigil.errors import InputError

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
CLOCK = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Subjects(_Strict):
    """Who: any of these users, members of any of these groups, these service identities;
    `anyone: true` for every authenticated subject."""

    users: list[str] = []
    groups: list[str] = []
    services: list[str] = []
    anyone: bool = False


class Resources(_Strict):
    """What: resources by name, by an asset tag, or by segment; `anything: true` for all."""

    names: list[str] = []
    tags: list[str] = []
    segments: list[str] = []
    anything: bool = False


class Device(_Strict):
    """The device's posture, from the asset inventory."""

    managed: bool | None = None
    disk_encrypted: bool | None = None
    edr: bool | None = None
    max_patch_age_days: Annotated[int, Field(ge=0)] | None = None


class Hours(_Strict):
    days: list[Day] = list(DAYS)
    start: Annotated[str, Field(pattern=CLOCK)] = "00:00"
    end: Annotated[str, Field(pattern=CLOCK)] = "23:59"
    tz: str = "UTC"

    @field_validator("tz")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class Conditions(_Strict):
    mfa: bool | None = None
    device: Device | None = None
    networks: list[str] = []
    countries: list[Annotated[str, Field(pattern=r"^[A-Z]{2}$")]] = []
    hours: Hours | None = None
    max_user_risk: Annotated[float, Field(ge=0)] | None = None
    max_device_risk: Annotated[float, Field(ge=0)] | None = None

    @field_validator("networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for text in value:
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ValueError(f"not a network: {text!r}") from None
        return value


class Rule(_Strict):
    id: Annotated[str, Field(pattern=ID)]
    description: str = ""
    effect: Literal["allow", "deny"] = "allow"
    subjects: Subjects
    resources: Resources
    actions: list[str] = Field(["*"], min_length=1)
    when: Conditions = Conditions()
    # conditions the user can meet by stepping up (step_up instead of deny when only these fail)
    step_up: list[Literal["mfa", "device"]] = ["mfa"]
    session_s: Annotated[int, Field(gt=0, le=7 * 86400)] = 3600


class GrantRule(_Strict):
    """Who may ask for just-in-time access to what, for how long at most, and whether a
    person approves it first."""

    id: Annotated[str, Field(pattern=ID)]
    description: str = ""
    subjects: Subjects
    resources: Resources
    actions: list[str] = Field(["*"], min_length=1)
    max_s: Annotated[int, Field(gt=0, le=30 * 86400)] = 3600
    approval: bool = False
    approvers: list[str] = ["responder", "admin"]  # roles that decide when approval is asked


class PolicySet(_Strict):
    policies: list[Rule] = []
    grants: list[GrantRule] = []


# --- the request and what is known of it --------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """Who asks to do what on which resource, from where."""

    subject: str
    action: str
    resource: str
    groups: tuple[str, ...] = ()
    service: bool = False  # a service identity, not a person
    mfa: bool = False
    device: str | None = None  # the host it comes from (its posture is in the inventory)
    source_ip: str | None = None
    at: float | None = None  # when (epoch s; None: now)


@dataclass(frozen=True, slots=True)
class Facts:
    """What the decision point knows beyond the request: the resource's tags and segment,
    the device's posture, the country of the address, the live risk of user and device."""

    resource_tags: frozenset[str] = frozenset()
    resource_segment: str | None = None
    posture: dict[str, Any] | None = None  # managed, disk_encrypted, edr, patch_age_days
    country: str | None = None
    user_risk: float = 0.0
    device_risk: float = 0.0


# a compiled condition: the request, what is known, when (local to the rule's clock) →
# None when it holds, else why not
Check = Callable[[AccessRequest, Facts, float], str | None]


@dataclass(frozen=True, slots=True)
class Compiled:
    rule: Rule
    order: int
    users: frozenset[str]
    groups: frozenset[str]
    services: frozenset[str]
    checks: tuple[tuple[str, Check], ...]  # (kind, check): kind "mfa", "device" or "context"

    def names(self, request: AccessRequest) -> bool:
        subjects = self.rule.subjects
        if request.service:
            return subjects.anyone or request.subject in self.services
        if subjects.anyone or request.subject in self.users:
            return True
        return not self.groups.isdisjoint(request.groups)


def _risk_at_most(whose: str, limit: float) -> Check:
    """The user's or the device's live risk at most `limit`."""

    def check(request: AccessRequest, facts: Facts, at: float) -> str | None:
        risk = facts.user_risk if whose == "user" else facts.device_risk
        return None if risk <= limit else f"{whose} risk {risk:.0f} is over {limit:g}"

    return check


def _device(wanted: Device) -> Check:
    def check(request: AccessRequest, facts: Facts, at: float) -> str | None:
        posture = facts.posture
        if posture is None:
            return "the device is not in the inventory" if request.device else "no device"
        for name in ("managed", "disk_encrypted", "edr"):
            value = getattr(wanted, name)
            if value is not None and bool(posture.get(name)) != value:
                return f"device {request.device}: {name.replace('_', ' ')} is not {value}"
        if wanted.max_patch_age_days is not None:
            age = posture.get("patch_age_days")
            if age is None or age > wanted.max_patch_age_days:
                return (
                    f"device {request.device}: patched {age} days ago (at most "
                    f"{wanted.max_patch_age_days})"
                )
        return None

    return check


def _networks(texts: list[str]) -> Check:
    networks = [ipaddress.ip_network(t, strict=False) for t in texts]

    def check(request: AccessRequest, facts: Facts, at: float) -> str | None:
        if request.source_ip is None:
            return "no source address"
        try:
            address = ipaddress.ip_address(request.source_ip)
        except ValueError:
            return f"source {request.source_ip!r} is not an address"
        if any(address in n for n in networks):
            return None
        return f"source {address} is outside {', '.join(texts)}"

    return check


def _hours(hours: Hours) -> Check:
    zone = ZoneInfo(hours.tz)
    days = frozenset(DAYS.index(d) for d in hours.days)
    start = int(hours.start[:2]) * 60 + int(hours.start[3:])
    end = int(hours.end[:2]) * 60 + int(hours.end[3:])

    def check(request: AccessRequest, facts: Facts, at: float) -> str | None:
        local = datetime.fromtimestamp(at, zone)
        minute = local.hour * 60 + local.minute
        inside = start <= minute <= end if start <= end else minute >= start or minute <= end
        if local.weekday() in days and inside:
            return None
        return f"outside {','.join(hours.days)} {hours.start}–{hours.end} {hours.tz}"

    return check


def compile_rule(rule: Rule, order: int) -> Compiled:
    """A rule's conditions as checks, built once."""
    when = rule.when
    checks: list[tuple[str, Check]] = []
    if when.mfa:
        checks.append(("mfa", lambda r, f, a: None if r.mfa else "no MFA in this session"))
    if when.device is not None:
        checks.append(("device", _device(when.device)))
    if when.networks:
        checks.append(("context", _networks(when.networks)))
    if when.countries:
        allowed = frozenset(when.countries)

        def country(request: AccessRequest, facts: Facts, at: float) -> str | None:
            if facts.country in allowed:
                return None
            return (
                f"country {facts.country or 'unknown'} is not one of {', '.join(sorted(allowed))}"
            )

        checks.append(("context", country))
    if when.hours is not None:
        checks.append(("context", _hours(when.hours)))
    if when.max_user_risk is not None:
        checks.append(("risk", _risk_at_most("user", when.max_user_risk)))
    if when.max_device_risk is not None:
        checks.append(("risk", _risk_at_most("device", when.max_device_risk)))
    subjects = rule.subjects
    return Compiled(
        rule,
        order,
        frozenset(subjects.users),
        frozenset(subjects.groups),
        frozenset(subjects.services),
        tuple(checks),
    )


def parse(data: Any, source: str) -> PolicySet:
    try:
        return PolicySet.model_validate(data if data is not None else {})
    except ValidationError as exc:
        lines = [
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        ]
        raise InputError(f"{source}: " + "; ".join(lines)) from None


def load(paths: list[Path]) -> PolicySet:
    """The policies of YAML files and folders (their *.yml, *.yaml), in order; ids unique."""
    rules: list[Rule] = []
    grants: list[GrantRule] = []
    for path in paths:
        files = (
            sorted(p for p in path.iterdir() if p.suffix in (".yml", ".yaml"))
            if path.is_dir()
            else [path]
        )
        for file in files:
            try:
                data = yaml.safe_load(file.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
                raise InputError(f"{file}: cannot read a policy: {exc}") from None
            parsed = parse(data, str(file))
            rules.extend(parsed.policies)
            grants.extend(parsed.grants)
    seen: set[str] = set()
    for rule_id in [r.id for r in rules] + [g.id for g in grants]:
        if rule_id in seen:
            raise InputError(f"policy id {rule_id!r} is used twice")
        seen.add(rule_id)
    return PolicySet(policies=rules, grants=grants)


__all__ = [
    "AccessRequest",
    "Compiled",
    "Conditions",
    "Device",
    "Facts",
    "GrantRule",
    "Hours",
    "PolicySet",
    "Resources",
    "Rule",
    "Subjects",
    "compile_rule",
    "load",
    "parse",
]
