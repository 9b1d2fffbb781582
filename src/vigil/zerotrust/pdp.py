"""The policy decision point (NIST SP 800-207's policy engine): a request and what is known of
it (the resource's tags and segment, the device's posture, the source's country, live risk)
against the compiled policies, indexed by action and resource; default deny, a deny rule that
holds wins, an allow whose only failures the user can fix gives `step_up`.

    pdp = DecisionPoint(policies, knowledge)
    pdp.decide(AccessRequest("alice", "read", "payroll", groups=("finance",), mfa=True,
                             device="ws1", source_ip="10.1.2.3"))
    # Decision(outcome="allow", policy="finance-apps", reasons=(...), obligations={...})
"""

from __future__ import annotations

import functools
import ipaddress
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from vigil.zerotrust.policy import AccessRequest, Compiled, Facts, PolicySet, compile_rule

Outcome = Literal["allow", "step_up", "deny"]
ANY = "*"


@dataclass(frozen=True, slots=True)
class Decision:
    id: str
    at: float
    outcome: Outcome
    request: AccessRequest
    policy: str | None = None  # the rule that decided (None: the default deny)
    reasons: tuple[str, ...] = ()
    obligations: dict[str, Any] = field(default_factory=dict)  # session_s, step_up

    def to_bytes(self) -> bytes:
        return orjson.dumps(self)

    def as_dict(self) -> dict[str, Any]:
        return orjson.loads(self.to_bytes())  # type: ignore[no-any-return]


def _country_lookup() -> Callable[[str], str | None]:
    """The country of an address from the offline database geoip2fast ships (loaded when
    first asked; about 70 ms); None for private or unknown addresses."""
    from geoip2fast import GeoIP2Fast

    database = GeoIP2Fast(verbose=False)

    @functools.lru_cache(maxsize=65_536)
    def country(address: str) -> str | None:
        try:
            code = database.lookup(address).country_code
        except Exception:  # an address the library cannot read: no country
            return None
        return code if code and len(code) == 2 and code.isalpha() else None

    return country


class Knowledge:
    """What the decision point looks things up in: resources (tags, segment), devices
    (posture), live risk per entity, and the country of an address. The inventory and the
    `risk` stream keep it current (`set_*`); each change bumps `version`, which tells caches
    (the proxy's) that what they hold may be stale."""

    def __init__(self, *, country: Callable[[str], str | None] | None = None) -> None:
        self.resources: dict[str, tuple[frozenset[str], str | None]] = {}
        self.devices: dict[str, dict[str, Any]] = {}
        self.risk: dict[tuple[str, str], float] = {}
        self._country = country
        self.version = 0
        self._lock = threading.Lock()
        # told (kind, value) after each change: "user"/"host" and who, "resource" and which
        self.listeners: list[Callable[[str, str], object]] = []

    def set_resource(self, name: str, tags: Iterable[str] = (), segment: str | None = None) -> None:
        self.resources[name.lower()] = (frozenset(tags), segment)
        self._changed("resource", name.lower())

    def set_device(self, host: str, posture: dict[str, Any]) -> None:
        self.devices[host.lower()] = dict(posture)
        self._changed("host", host.lower())

    def set_risk(self, kind: str, value: str, risk: float) -> None:
        self.risk[(kind, value.lower())] = float(risk)
        self._changed(kind, value.lower())

    def _changed(self, kind: str, value: str) -> None:
        with self._lock:
            self.version += 1
        for listener in self.listeners:
            listener(kind, value)

    def country(self, address: str | None) -> str | None:
        if not address:
            return None
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        if ip.is_private or ip.is_loopback or ip.is_link_local:
            return None
        if self._country is None:
            self._country = _country_lookup()
        return self._country(str(ip))

    def facts(self, request: AccessRequest) -> Facts:
        tags, segment = self.resources.get(request.resource.lower(), (frozenset(), None))
        device = request.device.lower() if request.device else None
        return Facts(
            resource_tags=tags,
            resource_segment=segment,
            posture=self.devices.get(device) if device else None,
            country=self.country(request.source_ip),
            user_risk=self.risk.get(("user", request.subject.lower()), 0.0),
            device_risk=self.risk.get(("host", device), 0.0) if device else 0.0,
        )


class DecisionPoint:
    def __init__(
        self,
        policies: PolicySet,
        knowledge: Knowledge | None = None,
        log: Callable[[Decision], object] | None = None,
        grants: Callable[[AccessRequest, float], Any] | None = None,
    ) -> None:
        self.knowledge = knowledge or Knowledge()
        self.log = log
        self.grants = grants  # the active just-in-time grant covering a request, if any
        self.version = 0
        self.load(policies)

    def load(self, policies: PolicySet) -> None:
        """Compile the policies once and index them by action and resource key."""
        index: dict[str, dict[str, list[Compiled]]] = {}
        for order, rule in enumerate(policies.policies):
            compiled = compile_rule(rule, order)
            keys = [f"name:{n.lower()}" for n in rule.resources.names]
            keys += [f"tag:{t}" for t in rule.resources.tags]
            keys += [f"segment:{s}" for s in rule.resources.segments]
            if rule.resources.anything or not keys:
                keys = [ANY]
            for action in rule.actions:
                by_key = index.setdefault(action, {})
                for key in keys:
                    by_key.setdefault(key, []).append(compiled)
        self.index = index
        self.policies = policies
        self.version += 1

    def candidates(self, request: AccessRequest, facts: Facts) -> list[Compiled]:
        keys = [f"name:{request.resource.lower()}", ANY]
        keys += [f"tag:{t}" for t in facts.resource_tags]
        if facts.resource_segment:
            keys.append(f"segment:{facts.resource_segment}")
        found: dict[int, Compiled] = {}
        for action in (request.action, ANY):
            by_key = self.index.get(action)
            if by_key is None:
                continue
            for key in keys:
                for compiled in by_key.get(key, ()):
                    if compiled.names(request):
                        found[compiled.order] = compiled
        return [found[k] for k in sorted(found)]

    def decide(
        self, request: AccessRequest, facts: Facts | None = None, *, logged: bool = True
    ) -> Decision:
        """The decision, in the decision log (unless the caller logs it: `logged=False`)."""
        at = request.at if request.at is not None else time.time()
        if facts is None:
            facts = self.knowledge.facts(request)
        candidates = self.candidates(request, facts)
        decision = self._evaluate(request, facts, candidates, at)
        if logged and self.log is not None:
            self.log(decision)
        return decision

    def decide_many(self, requests: Sequence[AccessRequest]) -> list[Decision]:
        return [self.decide(r) for r in requests]

    def _evaluate(
        self, request: AccessRequest, facts: Facts, candidates: list[Compiled], at: float
    ) -> Decision:
        make = functools.partial(Decision, uuid.uuid4().hex, at, request=request)
        for compiled in candidates:  # a deny rule that holds wins
            if compiled.rule.effect == "deny" and not _failures(compiled, request, facts, at):
                return make(
                    "deny", policy=compiled.rule.id, reasons=(f"denied by {compiled.rule.id}",)
                )
        reasons: list[str] = []
        step_up: tuple[Compiled, list[tuple[str, str]]] | None = None
        for compiled in candidates:
            if compiled.rule.effect != "allow":
                continue
            failed = _failures(compiled, request, facts, at)
            if not failed:
                rule = compiled.rule
                return make(
                    "allow",
                    policy=rule.id,
                    reasons=(f"allowed by {rule.id}",),
                    obligations={"session_s": rule.session_s},
                )
            reasons.extend(f"{compiled.rule.id}: {why}" for _, why in failed)
            fixable = set(compiled.rule.step_up)
            if step_up is None and all(kind in fixable for kind, _ in failed):
                step_up = (compiled, failed)
        grant = self.grants(request, at) if self.grants is not None else None
        if grant is not None:  # just-in-time access, for the rest of its window
            return make(
                "allow",
                policy=f"grant:{grant.id}",
                reasons=(f"granted by {grant.rule} until {grant.ends:.0f}",),
                obligations={"session_s": max(1, int(grant.ends - at))},
            )
        if step_up is not None:
            compiled, failed = step_up
            return make(
                "step_up",
                policy=compiled.rule.id,
                reasons=tuple(why for _, why in failed),
                obligations={
                    "step_up": sorted({k for k, _ in failed}),
                    "session_s": compiled.rule.session_s,
                },
            )
        if not candidates:
            reasons.append(f"no policy lets {request.subject} {request.action} {request.resource}")
        return make("deny", reasons=tuple(reasons) or ("default deny",))


def _failures(
    compiled: Compiled, request: AccessRequest, facts: Facts, at: float
) -> list[tuple[str, str]]:
    out = []
    for kind, check in compiled.checks:
        why = check(request, facts, at)
        if why is not None:
            out.append((kind, why))
    return out


__all__ = ["Decision", "DecisionPoint", "Knowledge", "Outcome"]
