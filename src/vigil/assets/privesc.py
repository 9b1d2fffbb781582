"""Cloud privilege escalation: which IAM principals of an inventory (`vigil.assets.aws_iam`)
can make themselves administrators, by which published method, through which statements.

    inventory = aws_iam.read(Path("account.json").read_bytes(), "account.json")
    for finding in find_escalations(inventory).findings:
        print(finding.principal, finding.method, finding.target)

Each user and role listed in the file is evaluated from its effective permissions: its inline
and attached managed policies, and for a user its groups' (the default version of each managed
policy). A request is allowed when an Allow statement matches it and no Deny does; Action /
NotAction, Resource / NotResource and the IAM wildcards (`*`, `?`; actions without regard to
case) are honoured, and `${aws:username}` / `${aws:userid}` in a user's resources. Trust
policies decide who may assume a role, with AWS's rule: a trust statement naming the principal
itself, in the role's account, is enough; one naming the account (or "*"), or a principal of
another account, needs an Allow of sts:AssumeRole in the principal's own policies too.

Conditions are not evaluated: each is taken the attacker's way, and shown. An Allow with a
Condition grants (its statement, condition and all, is on the step); a Deny with a Condition
does not block (it is on the step as a caveat). Permissions boundaries, SCPs and session
policies are not in the file and not applied (a principal's boundary is named in `assumes`).

The methods (Rhino Security Labs' list, by its names; then those of Bishop Fox's IAM
Vulnerable, which the same accounts are built to show):

    CreateNewPolicyVersion            iam:CreatePolicyVersion on a customer managed policy
                                      attached to the principal (or its group): a new default
                                      version that allows everything
    SetExistingDefaultPolicyVersion   iam:SetDefaultPolicyVersion on such a policy, one of
                                      whose stored versions is admin-equivalent
    AttachUserPolicy / PutUserPolicy  on itself (a user): AdministratorAccess, or an inline one
    AttachGroupPolicy / PutGroupPolicy  on a group it is in
    AttachRolePolicy / PutRolePolicy  on itself (a role), or on a role it can then assume
    AddUserToGroup                    itself into a group, then what the group allows
    UpdatingAssumeRolePolicy          iam:UpdateAssumeRolePolicy + sts:AssumeRole on a role
    AssumeRole                        sts:AssumeRole into a role whose trust lets it in
    CreateAccessKey, CreateLoginProfile, UpdateLoginProfile   on another user: become it
    iam:PassRole + a service that runs code as the role (SERVICE_METHODS), or code already
    running as a role changed or reached (lambda:UpdateFunctionCode, glue:UpdateDevEndpoint,
    cloudformation:UpdateStack, ssm:SendCommand...): become a role trusting that service

A finding is a chain of such moves (at most MAX_HOPS) from a principal to an admin-equivalent
permission set: the method of its first move and its target (what the method is used on: the
policy edited, the group joined, the role or user taken over, or "self"), what the chain
`reaches` (what ends admin-equivalent: the target, or a role or user further on), every step
with the statement that grants it, and what it takes for granted (`assumes`: a resource that
must already exist, a boundary not applied). One finding per principal, method and target:
the shortest chain from there.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from vigil.assets.aws_iam import (
    Malformed,
    account_of,
    canonical,
    principal_entries,
    statements,
    strings,
    trust_key,
    wildcard,
)
from vigil.assets.model import Inventory, Node

# --- "admin-equivalent": the one definition -----------------------------------------------------
# A permission set is admin-equivalent when an Allow statement grants every action ("*") on
# every resource ("*") -- AdministratorAccess, or any policy written the same way -- and no
# Deny statement without a Condition, on every resource ("*"), takes any action back.
# `iam:*` alone is not admin-equivalent: its holder is one call away (AttachUserPolicy on
# itself...), and that call is reported as a finding like any other.
ADMIN_ACTION = "*"
ADMIN_RESOURCE = "*"

MAX_HOPS = 4  # moves in one chain: take over a role, join a group, then edit a policy...

# Roles IAM will not let a customer edit or pass: service-linked roles and the roles IAM
# Identity Center manages. Never a target of an edit, of PassRole or of a trust rewrite.
PROTECTED_ROLE_PATHS = ("/aws-service-role/", "/aws-reserved/")

ANY_RESOURCE = "*"  # a step's resource when the attacker creates or picks it


@dataclass(frozen=True, slots=True)
class ServiceMethod:
    """Become a role by having a service run code as it: PassRole to a new resource of the
    service (`pass_role`), or reach a resource that already runs as the role."""

    name: str
    needs: tuple[tuple[str, ...], ...]  # each: one of these actions
    service: str  # the service principal the role's trust must name
    pass_role: bool
    instance_profile: bool = False  # the role must be in an instance profile (EC2)
    assumes: str = ""  # what must already exist, for the ones on existing resources


SERVICE_METHODS = (
    ServiceMethod(
        "CreateEC2WithExistingInstanceProfile",
        (("ec2:RunInstances",),),
        "ec2.amazonaws.com",
        pass_role=True,
        instance_profile=True,
    ),
    ServiceMethod(
        "PassExistingRoleToNewLambdaThenInvoke",
        (("lambda:CreateFunction",), ("lambda:InvokeFunction",)),
        "lambda.amazonaws.com",
        pass_role=True,
    ),
    ServiceMethod(
        "PassExistingRoleToNewLambdaThenTriggerWithNewDynamo",
        (("lambda:CreateFunction",), ("lambda:CreateEventSourceMapping",)),
        "lambda.amazonaws.com",
        pass_role=True,
        assumes="a DynamoDB stream to map (an existing one, or dynamodb:CreateTable)",
    ),
    ServiceMethod(
        "PassExistingRoleToNewGlueDevEndpoint",
        (("glue:CreateDevEndpoint",),),
        "glue.amazonaws.com",
        pass_role=True,
    ),
    ServiceMethod(
        "PassExistingRoleToCloudFormation",
        (("cloudformation:CreateStack",),),
        "cloudformation.amazonaws.com",
        pass_role=True,
    ),
    ServiceMethod(
        "PassExistingRoleToNewDataPipeline",
        (
            ("datapipeline:CreatePipeline",),
            ("datapipeline:PutPipelineDefinition",),
            ("datapipeline:ActivatePipeline",),
        ),
        "datapipeline.amazonaws.com",
        pass_role=True,
    ),
    ServiceMethod(
        "CodeBuildCreateProjectPassRole",
        (("codebuild:CreateProject",), ("codebuild:StartBuild", "codebuild:StartBuildBatch")),
        "codebuild.amazonaws.com",
        pass_role=True,
    ),
    ServiceMethod(
        "SageMakerCreateNotebookPassRole",
        (("sagemaker:CreateNotebookInstance",), ("sagemaker:CreatePresignedNotebookInstanceUrl",)),
        "sagemaker.amazonaws.com",
        pass_role=True,
    ),
    ServiceMethod(
        "SageMakerCreateTrainingJobPassRole",
        (("sagemaker:CreateTrainingJob",),),
        "sagemaker.amazonaws.com",
        pass_role=True,
    ),
    ServiceMethod(
        "SageMakerCreateProcessingJobPassRole",
        (("sagemaker:CreateProcessingJob",),),
        "sagemaker.amazonaws.com",
        pass_role=True,
    ),
    ServiceMethod(
        "EditExistingLambdaFunctionWithRole",
        (("lambda:UpdateFunctionCode",),),
        "lambda.amazonaws.com",
        pass_role=False,
        assumes="an existing Lambda function running as the role",
    ),
    ServiceMethod(
        "UpdateExistingGlueDevEndpoint",
        (("glue:UpdateDevEndpoint",),),
        "glue.amazonaws.com",
        pass_role=False,
        assumes="an existing Glue development endpoint running as the role",
    ),
    ServiceMethod(
        "CloudFormationUpdateStack",
        (("cloudformation:UpdateStack",),),
        "cloudformation.amazonaws.com",
        pass_role=False,
        assumes="an existing CloudFormation stack whose service role is the role",
    ),
    ServiceMethod(
        "SageMakerCreatePresignedNotebookURL",
        (("sagemaker:CreatePresignedNotebookInstanceUrl",),),
        "sagemaker.amazonaws.com",
        pass_role=False,
        assumes="an existing SageMaker notebook instance running as the role",
    ),
    ServiceMethod(
        "SSMSendCommand",
        (("ssm:SendCommand",),),
        "ec2.amazonaws.com",
        pass_role=False,
        instance_profile=True,
        assumes="a running EC2 instance with the role's instance profile, managed by SSM",
    ),
    ServiceMethod(
        "SSMStartSession",
        (("ssm:StartSession",),),
        "ec2.amazonaws.com",
        pass_role=False,
        instance_profile=True,
        assumes="a running EC2 instance with the role's instance profile, managed by SSM",
    ),
    ServiceMethod(
        "EC2InstanceConnect",
        (("ec2-instance-connect:SendSSHPublicKey",),),
        "ec2.amazonaws.com",
        pass_role=False,
        instance_profile=True,
        assumes="a running EC2 instance with the role's instance profile, reachable by SSH",
    ),
)

# Take over another user of the account: method, action, what it takes for granted.
CREDENTIAL_METHODS = (
    ("CreateAccessKey", "iam:CreateAccessKey", "the user has fewer than two access keys"),
    ("CreateLoginProfile", "iam:CreateLoginProfile", "the user has no console password yet"),
    ("UpdateLoginProfile", "iam:UpdateLoginProfile", "the user has a console password"),
)

# Edit a permission set the principal holds: method, action, whose (user, group, role).
EDIT_METHODS = (
    ("AttachUserPolicy", "iam:AttachUserPolicy", "user"),
    ("PutUserPolicy", "iam:PutUserPolicy", "user"),
    ("AttachGroupPolicy", "iam:AttachGroupPolicy", "group"),
    ("PutGroupPolicy", "iam:PutGroupPolicy", "group"),
    ("AttachRolePolicy", "iam:AttachRolePolicy", "role"),
    ("PutRolePolicy", "iam:PutRolePolicy", "role"),
)


# --- what a finding says ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement of one policy, as written (the condition recorded, not evaluated)."""

    policy: str  # managed ARN, "<principal ARN>#inline/<name>" or "<role ARN>#trust"
    index: int  # its place in the document
    sid: str | None
    effect: str
    action: tuple[str, ...]  # Action, or NotAction when not_action
    not_action: bool
    resource: tuple[str, ...]  # Resource, or NotResource when not_resource; () for trust
    not_resource: bool
    condition: str | None  # JSON
    principal: str | None = None  # a trust statement's Principal, JSON

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"policy": self.policy, "sid": self.sid, "effect": self.effect}
        out["NotAction" if self.not_action else "Action"] = list(self.action)
        if self.principal is not None:
            out["Principal"] = orjson.loads(self.principal)
        else:
            out["NotResource" if self.not_resource else "Resource"] = list(self.resource)
        if self.condition is not None:
            out["Condition"] = orjson.loads(self.condition)
        return out


@dataclass(frozen=True, slots=True)
class Step:
    """One request of a chain and the statement that allows it."""

    method: str
    action: str  # "iam:PassRole"
    resource: str  # the ARN acted on, or "*" for a resource the attacker creates
    statement: Statement  # the identity statement (a trust one when trust alone lets it in)
    trust: Statement | None = None  # the role's trust statement that lets it (or its service) in
    caveats: tuple[Statement, ...] = ()  # Denies with a Condition that may block it

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "action": self.action,
            "resource": self.resource,
            "statement": self.statement.as_dict(),
            "trust": self.trust.as_dict() if self.trust else None,
            "caveats": [c.as_dict() for c in self.caveats],
        }


@dataclass(frozen=True, slots=True)
class Finding:
    principal: str  # ARN
    method: str  # the method of the first move
    target: str  # what the method is used on: the policy, group, role or user, or "self"
    reaches: str  # what ends admin-equivalent: the target, or further down the chain
    steps: tuple[Step, ...]
    assumes: tuple[str, ...] = ()

    @property
    def conditions(self) -> tuple[Statement, ...]:
        """The statements on the path whose Condition was taken the attacker's way."""
        found: dict[Statement, None] = {}
        for step in self.steps:
            for statement in (step.statement, step.trust, *step.caveats):
                if statement is not None and statement.condition is not None:
                    found[statement] = None
        return tuple(found)

    def as_dict(self) -> dict[str, Any]:
        return {
            "principal": self.principal,
            "method": self.method,
            "target": self.target,
            "reaches": self.reaches,
            "steps": [step.as_dict() for step in self.steps],
            "assumes": list(self.assumes),
            "conditions": [c.as_dict() for c in self.conditions],
        }


@dataclass(frozen=True, slots=True)
class Admin:
    """A principal already admin-equivalent, and the statement that makes it so."""

    principal: str
    statement: Statement


@dataclass(frozen=True)
class Escalations:
    findings: tuple[Finding, ...]  # sorted by principal, method, target
    admins: tuple[Admin, ...]  # sorted by principal
    unread: tuple[str, ...]  # policies held by some principal whose document is not known

    def of(self, principal: str) -> list[Finding]:
        return [f for f in self.findings if f.principal == principal]


# --- effective permissions --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Grant:
    statement: Statement
    caveats: tuple[Statement, ...] = ()


@dataclass(frozen=True, slots=True)
class _Rule:
    statement: Statement
    actions: re.Pattern[str]
    resources: re.Pattern[str]

    def acts_on(self, action: str) -> bool:
        return (self.actions.fullmatch(action) is not None) != self.statement.not_action

    def on(self, resource: str | None, every: bool = False) -> bool:
        """Whether it applies to `resource`; None: to some resource (`every`: to all)."""
        statement = self.statement
        if resource is None:
            named_all = ANY_RESOURCE in statement.resource
            if every:
                return named_all and not statement.not_resource
            return not (named_all and statement.not_resource)
        return (self.resources.fullmatch(resource) is not None) != statement.not_resource


class Permissions:
    """A principal's effective identity-based permissions: Allow minus Deny."""

    def __init__(self, principal: str, rules: Sequence[_Rule]) -> None:
        self.principal = principal
        # Unconditional Allows first, so that the statement named is the plainest one.
        self._rules = sorted(
            rules,
            key=lambda r: (
                r.statement.condition is not None,
                r.statement.policy,
                r.statement.index,
            ),
        )
        self._by_action: dict[str, list[_Rule]] = {}
        self._grants: dict[tuple[str, str | None], Grant | None] = {}

    def _for(self, action: str) -> list[_Rule]:
        found = self._by_action.get(action)
        if found is None:
            found = self._by_action[action] = [r for r in self._rules if r.acts_on(action)]
        return found

    def grant(self, action: str, resource: str | None = None) -> Grant | None:
        """The Allow statement that grants `action` on `resource` (None: on some resource of
        the caller's making), or None when none does or a Deny without a Condition blocks."""
        key = (action, resource)
        if key not in self._grants:
            rules = self._for(action)
            every = resource is None
            denies = [
                r.statement
                for r in rules
                if r.statement.effect == "Deny" and r.on(resource, every=every)
            ]
            allow = next(
                (r.statement for r in rules if r.statement.effect == "Allow" and r.on(resource)),
                None,
            )
            blocked = any(d.condition is None for d in denies)
            self._grants[key] = None if allow is None or blocked else Grant(allow, tuple(denies))
        return self._grants[key]

    def denied(self, action: str, resource: str) -> bool:
        """Whether a Deny without a Condition blocks `action` on `resource`."""
        return any(
            r.statement.effect == "Deny" and r.statement.condition is None and r.on(resource)
            for r in self._for(action)
        )

    def admin(self) -> Statement | None:
        """The statement that makes this set admin-equivalent (see ADMIN_ACTION), or None."""
        for rule in self._rules:
            statement = rule.statement
            if (
                statement.effect == "Deny"
                and statement.condition is None
                and rule.on(None, every=True)
            ):
                return None
        for rule in self._rules:
            statement = rule.statement
            if (
                statement.effect == "Allow"
                and not statement.not_action
                and not statement.not_resource
                and ADMIN_ACTION in statement.action
                and ADMIN_RESOURCE in statement.resource
            ):
                return statement
        return None


def _statements(policy: str, document: Any) -> Iterator[tuple[Statement, dict[str, Any]]]:
    """A document's readable statements (the importer has set bad ones aside already)."""
    try:
        raws = statements(document) if isinstance(document, dict) else []
    except Malformed:
        return
    for index, raw in enumerate(raws):
        try:
            yield _statement(policy, index, raw), raw
        except (Malformed, KeyError, TypeError):
            continue


def _statement(policy: str, index: int, raw: dict[str, Any]) -> Statement:
    not_action = "NotAction" in raw
    not_resource = "NotResource" in raw
    resource_key = "NotResource" if not_resource else "Resource"
    principal_key = "NotPrincipal" if "NotPrincipal" in raw else "Principal"
    return Statement(
        policy=policy,
        index=index,
        sid=raw.get("Sid") or None,
        effect=str(raw["Effect"]),
        action=strings(raw["NotAction" if not_action else "Action"]),
        not_action=not_action,
        resource=strings(raw[resource_key]) if resource_key in raw else (),
        not_resource=not_resource,
        condition=canonical(raw["Condition"]) if raw.get("Condition") else None,
        principal=canonical(raw[principal_key]) if principal_key in raw else None,
    )


def _rules(policy: str, document: Any, variables: tuple[tuple[str, str], ...] = ()) -> list[_Rule]:
    return [
        _Rule(
            statement,
            wildcard(statement.action, True),
            wildcard(statement.resource, False, variables),
        )
        for statement, _ in _statements(policy, document)
    ]


# --- the account as the query sees it ---------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class _State:
    """Who the attacker acts as: a principal, with the groups it joined on the way."""

    principal: str  # node id
    joined: tuple[str, ...] = ()  # group node ids


@dataclass(frozen=True, slots=True)
class _Move:
    method: str
    steps: tuple[Step, ...]
    target: str  # ARN reached or edited
    to: _State | None  # None: the move itself makes the mover admin-equivalent
    assumes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Trust:
    statement: Statement
    entries: tuple[tuple[str, str], ...]
    not_principal: bool
    assume: bool  # grants sts:AssumeRole


@dataclass
class _Account:
    inventory: Inventory
    users: list[Node] = field(default_factory=list)
    roles: list[Node] = field(default_factory=list)
    groups: list[Node] = field(default_factory=list)
    held: dict[str, list[Node]] = field(default_factory=dict)  # node id → policies
    member: dict[str, list[Node]] = field(default_factory=dict)  # user id → groups
    unread: set[str] = field(default_factory=set)
    _permissions: dict[_State, Permissions] = field(default_factory=dict)
    _moves: dict[_State, list[_Move]] = field(default_factory=dict)
    _trusts: dict[str, list[_Trust]] = field(default_factory=dict)

    @classmethod
    def of(cls, inventory: Inventory) -> _Account:
        account = cls(inventory)
        # Listed in the file (with an id), not only named by a trust policy or a GroupList.
        listed = {
            "user": ("user_id", account.users),
            "role": ("role_id", account.roles),
            "group": ("group_id", account.groups),
        }
        for node in sorted(inventory.nodes.values(), key=lambda n: n.id):
            if node.kind in listed and listed[node.kind][0] in node.attrs:
                listed[node.kind][1].append(node)
        for edge in inventory.edges:
            if edge.kind == "has_policy" and edge.dst in inventory.nodes:
                account.held.setdefault(edge.src, []).append(inventory.nodes[edge.dst])
            elif edge.kind == "member_of" and edge.dst in inventory.nodes:
                account.member.setdefault(edge.src, []).append(inventory.nodes[edge.dst])
        for found in (*account.held.values(), *account.member.values()):
            found.sort(key=lambda n: n.id)
        return account

    def node(self, state: _State) -> Node:
        return self.inventory.nodes[state.principal]

    def groups_of(self, state: _State) -> list[Node]:
        joined = [self.inventory.nodes[g] for g in state.joined]
        found = {g.id: g for g in (*self.member.get(state.principal, []), *joined)}
        return [found[k] for k in sorted(found)]

    def policies_of(self, state: _State) -> list[Node]:
        """The policies in force for the state: its own, and its groups'."""
        holders = [state.principal, *(g.id for g in self.groups_of(state))]
        found = {p.id: p for h in holders for p in self.held.get(h, [])}
        return [found[k] for k in sorted(found)]

    def permissions(self, state: _State) -> Permissions:
        known = self._permissions.get(state)
        if known is not None:
            return known
        node = self.node(state)
        variables: tuple[tuple[str, str], ...] = ()
        if node.kind == "user":
            variables = (("aws:username", node.name), ("aws:userid", str(node.attrs["user_id"])))
        rules = []
        for policy in self.policies_of(state):
            if "document" not in policy.attrs:
                self.unread.add(policy.key)
                continue
            rules += _rules(policy.key, policy.attrs["document"], variables)
        made = self._permissions[state] = Permissions(node.key, rules)
        return made

    def trusts(self, role: Node) -> list[_Trust]:
        known = self._trusts.get(role.id)
        if known is None:
            known = self._trusts[role.id] = []
            for statement, raw in _statements(trust_key(role.key), role.attrs.get("trust_policy")):
                try:
                    entries = tuple(
                        principal_entries(raw.get("Principal", raw.get("NotPrincipal")))
                    )
                except Malformed:
                    continue
                assume = wildcard(statement.action, True).fullmatch("sts:AssumeRole")
                known.append(
                    _Trust(
                        statement,
                        entries,
                        "NotPrincipal" in raw,
                        (assume is not None) != statement.not_action,
                    )
                )
        return known


def _same_account(a: Node, b: Node) -> bool:
    return account_of(a.key) is not None and account_of(a.key) == account_of(b.key)


def _protected(role: Node) -> bool:
    return str(role.attrs.get("path") or "/").startswith(PROTECTED_ROLE_PATHS)


def _lets_in(
    account: _Account, role: Node, who: Node
) -> tuple[Statement, bool, tuple[Statement, ...]] | None:
    """Whether the role's trust lets `who` assume it: the statement, whether `who` needs an
    Allow of sts:AssumeRole of its own too, and conditional Denies; None when it does not."""
    names = {who.key, str(who.attrs.get("user_id") or who.attrs.get("role_id") or who.key)}
    partition, own_account = who.key.split(":")[1], account_of(who.key)
    whole = {"*", f"arn:{partition}:iam::{own_account}:root", str(own_account)}
    chosen: tuple[Statement, bool] | None = None
    caveats = []
    for trust in account.trusts(role):
        if not trust.assume or trust.not_principal:
            continue
        values = {value for kind, value in trust.entries if kind == "AWS"}
        named = bool(values & names)
        if not named and not values & whole:
            continue
        if trust.statement.effect == "Deny":
            if trust.statement.condition is None:
                return None
            caveats.append(trust.statement)
            continue
        needs_own = not (named and _same_account(role, who))
        if chosen is None or (chosen[1] and not needs_own):
            chosen = (trust.statement, needs_own)
    if chosen is None:
        return None
    return chosen[0], chosen[1], tuple(caveats)


def _trusts_service(account: _Account, role: Node, service: str) -> Statement | None:
    chosen = None
    for trust in account.trusts(role):
        if not trust.assume or trust.not_principal:
            continue
        if any(k == "Service" and v.lower() == service for k, v in trust.entries):
            if trust.statement.effect == "Deny" and trust.statement.condition is None:
                return None
            if trust.statement.effect == "Allow" and chosen is None:
                chosen = trust.statement
    return chosen


def _step(method: str, action: str, resource: str | None, grant: Grant, **more: Any) -> Step:
    return Step(
        method, action, resource or ANY_RESOURCE, grant.statement, caveats=grant.caveats, **more
    )


# --- the moves --------------------------------------------------------------------------------


def _moves(account: _Account, state: _State) -> list[_Move]:
    known = account._moves.get(state)
    if known is None:
        known = account._moves[state] = [
            *_policy_edits(account, state),
            *_edits(account, state),
            *_assume_moves(account, state),
            *_trust_rewrites(account, state),
            *_service_moves(account, state),
            *_credential_moves(account, state),
            *_group_joins(account, state),
        ]
    return known


def _assumable(account: _Account, state: _State) -> Iterator[tuple[Node, Step]]:
    """The roles the state can assume, each with its sts:AssumeRole step."""
    me = account.node(state)
    permissions = account.permissions(state)
    for role in account.roles:
        if role.id == me.id:
            continue
        let_in = _lets_in(account, role, me)
        if let_in is None:
            continue
        trust, needs_own, trust_caveats = let_in
        if needs_own:
            grant = permissions.grant("sts:AssumeRole", role.key)
            if grant is None:
                continue
            statement, caveats = grant.statement, grant.caveats + trust_caveats
        elif permissions.denied("sts:AssumeRole", role.key):
            continue
        else:
            statement, caveats = trust, trust_caveats
        yield role, Step("AssumeRole", "sts:AssumeRole", role.key, statement, trust, caveats)


def _assume_moves(account: _Account, state: _State) -> Iterator[_Move]:
    for role, step in _assumable(account, state):
        yield _Move("AssumeRole", (step,), role.key, _State(role.id))


def _policy_edits(account: _Account, state: _State) -> Iterator[_Move]:
    """CreateNewPolicyVersion and SetExistingDefaultPolicyVersion on the customer managed
    policies in force for the state."""
    permissions = account.permissions(state)
    for policy in account.policies_of(state):
        if not policy.attrs.get("managed") or policy.attrs.get("aws_managed"):
            continue  # inline ones are edited by Put*Policy; AWS's cannot be edited
        grant = permissions.grant("iam:CreatePolicyVersion", policy.key)
        if grant is not None:
            step = _step("CreateNewPolicyVersion", "iam:CreatePolicyVersion", policy.key, grant)
            yield _Move("CreateNewPolicyVersion", (step,), policy.key, None)
        grant = permissions.grant("iam:SetDefaultPolicyVersion", policy.key)
        if grant is None:
            continue
        versions = policy.attrs.get("other_versions") or {}
        for version in sorted(versions):
            if Permissions(policy.key, _rules(policy.key, versions[version])).admin():
                step = _step(
                    "SetExistingDefaultPolicyVersion",
                    "iam:SetDefaultPolicyVersion",
                    policy.key,
                    grant,
                )
                yield _Move(
                    "SetExistingDefaultPolicyVersion",
                    (step,),
                    policy.key,
                    None,
                    (f"version {version} of {policy.key} is admin-equivalent",),
                )
                break


def _edits(account: _Account, state: _State) -> Iterator[_Move]:
    """Attach*Policy / Put*Policy on the state's own user, groups or role, or on a role it can
    then assume."""
    me = account.node(state)
    permissions = account.permissions(state)
    holders: dict[str, list[tuple[Node, tuple[Step, ...]]]] = {
        "user": [(me, ())] if me.kind == "user" else [],
        "group": [(g, ()) for g in account.groups_of(state)],
        "role": [(me, ())] if me.kind == "role" else [],
    }
    holders["role"] += list((role, (step,)) for role, step in _assumable(account, state))
    for method, action, kind in EDIT_METHODS:
        for holder, then in holders[kind]:
            if kind == "role" and _protected(holder):
                continue
            grant = permissions.grant(action, holder.key)
            if grant is not None:
                steps = (_step(method, action, holder.key, grant), *then)
                yield _Move(method, steps, holder.key, None)


def _trust_rewrites(account: _Account, state: _State) -> Iterator[_Move]:
    """UpdatingAssumeRolePolicy: write the role's trust to name the state, then assume it."""
    me = account.node(state)
    permissions = account.permissions(state)
    for role in account.roles:
        if role.id == me.id or _protected(role) or not _same_account(role, me):
            continue
        update = permissions.grant("iam:UpdateAssumeRolePolicy", role.key)
        assume = update and permissions.grant("sts:AssumeRole", role.key)
        if update is None or assume is None:
            continue
        method = "UpdatingAssumeRolePolicy"
        steps = (
            _step(method, "iam:UpdateAssumeRolePolicy", role.key, update),
            _step(method, "sts:AssumeRole", role.key, assume),
        )
        yield _Move(method, steps, role.key, _State(role.id))


def _service_moves(account: _Account, state: _State) -> Iterator[_Move]:
    """Become a role by a service running code as it (SERVICE_METHODS)."""
    me = account.node(state)
    permissions = account.permissions(state)
    for method in SERVICE_METHODS:
        needed = []
        for choices in method.needs:
            found = next(((a, g) for a in choices if (g := permissions.grant(a)) is not None), None)
            if found is None:
                break
            needed.append(found)
        else:
            for role in account.roles:
                if role.id == me.id or _protected(role) or not _same_account(role, me):
                    continue
                if method.instance_profile and not role.attrs.get("instance_profiles"):
                    continue
                trust = _trusts_service(account, role, method.service)
                if trust is None:
                    continue
                steps = []
                if method.pass_role:
                    passed = permissions.grant("iam:PassRole", role.key)
                    if passed is None:
                        continue
                    steps.append(_step(method.name, "iam:PassRole", role.key, passed, trust=trust))
                for action, grant in needed:
                    more = {} if method.pass_role else {"trust": trust}
                    steps.append(_step(method.name, action, None, grant, **more))
                assumes = (method.assumes,) if method.assumes else ()
                yield _Move(method.name, tuple(steps), role.key, _State(role.id), assumes)


def _credential_moves(account: _Account, state: _State) -> Iterator[_Move]:
    me = account.node(state)
    permissions = account.permissions(state)
    for method, action, assumes in CREDENTIAL_METHODS:
        for user in account.users:
            if user.id == me.id or not _same_account(user, me):
                continue
            grant = permissions.grant(action, user.key)
            if grant is not None:
                step = _step(method, action, user.key, grant)
                yield _Move(method, (step,), user.key, _State(user.id), (assumes,))


def _group_joins(account: _Account, state: _State) -> Iterator[_Move]:
    me = account.node(state)
    if me.kind != "user":
        return
    permissions = account.permissions(state)
    mine = {g.id for g in account.groups_of(state)}
    for group in account.groups:
        if group.id in mine or not _same_account(group, me):
            continue
        grant = permissions.grant("iam:AddUserToGroup", group.key)
        if grant is not None:
            step = _step("AddUserToGroup", "iam:AddUserToGroup", group.key, grant)
            joined = tuple(sorted((*state.joined, group.id)))
            yield _Move("AddUserToGroup", (step,), group.key, _State(state.principal, joined))


# --- the query --------------------------------------------------------------------------------


def find_escalations(inventory: Inventory) -> Escalations:
    """Every listed user's and role's escalation paths to an admin-equivalent permission set,
    and the principals that already are admin-equivalent."""
    account = _Account.of(inventory)
    findings: list[Finding] = []
    admins: list[Admin] = []
    for principal in (*account.users, *account.roles):
        start = _State(principal.id)
        already = account.permissions(start).admin()
        if already is not None:
            admins.append(Admin(principal.key, already))
            continue
        findings += _search(account, principal, start)
    findings.sort(key=lambda f: (f.principal, f.method, f.target, len(f.steps)))
    admins.sort(key=lambda a: a.principal)
    return Escalations(tuple(findings), tuple(admins), tuple(sorted(account.unread)))


def permissions(inventory: Inventory, principal: str) -> Permissions:
    """A listed user's or role's effective permissions (by ARN); KeyError when it is not one."""
    account = _Account.of(inventory)
    for node in (*account.users, *account.roles):
        if node.key == principal:
            return account.permissions(_State(node.id))
    raise KeyError(f"no user or role {principal} listed in {inventory.source}")


def _search(account: _Account, principal: Node, start: _State) -> list[Finding]:
    """For each first move of the principal, the shortest chain from it to an admin-equivalent
    permission set (breadth first). A chain never comes back to the principal, nor makes a
    move the principal could have made first (that would be a detour, reported on its own)."""
    found: dict[tuple[str, str], Finding] = {}
    boundary = principal.attrs.get("permissions_boundary")
    base = (f"the permissions boundary {boundary} is not applied",) if boundary else ()
    firsts = _moves(account, start)
    direct = {(m.method, m.target) for m in firsts}
    for first in firsts:
        if (first.method, first.target) in found:
            continue
        queue: deque[tuple[_Move, ...]] = deque([(first,)])
        seen = {start, first.to}
        while queue:
            chain = queue.popleft()
            last = chain[-1]
            if last.to is None or account.permissions(last.to).admin() is not None:
                found[(first.method, first.target)] = _finding(principal, chain, base)
                break
            if len(chain) >= MAX_HOPS:
                continue
            for move in _moves(account, last.to):
                if move.to not in seen and (move.method, move.target) not in direct:
                    seen.add(move.to)
                    queue.append((*chain, move))
    return list(found.values())


def _finding(principal: Node, chain: Sequence[_Move], base: tuple[str, ...]) -> Finding:
    def named(arn: str) -> str:
        return "self" if arn == principal.key else arn

    assumes = dict.fromkeys((*base, *(a for m in chain for a in m.assumes)))
    return Finding(
        principal.key,
        chain[0].method,
        named(chain[0].target),
        named(chain[-1].target),
        tuple(step for move in chain for step in move.steps),
        tuple(assumes),
    )
