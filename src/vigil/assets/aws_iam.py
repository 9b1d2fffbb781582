"""AWS IAM: an account's identities, policies and trust, from the output of
`aws iam get-account-authorization-details`.

    aws iam get-account-authorization-details > account.json
    vigil assets import account.json                  # sniffed, or --format aws-iam

What becomes what (every ARN as the file spells it):

    UserDetailList   user     key ARN, name UserName: user_id, path, created, account, tags,
                              permissions_boundary
    GroupDetailList  group    key ARN, name GroupName: group_id, path, created, account
    RoleDetailList   role     key ARN, name RoleName: role_id, path, created, account, tags,
                              last_used, trust_policy (the AssumeRolePolicyDocument, parsed),
                              instance_profiles (their ARNs)
    Policies         policy   key ARN (managed=True): policy_id, path, default_version,
                              attachment_count, is_attachable, aws_managed, created, updated,
                              document (the default version's, parsed), other_versions
                              ({version id: document})
    inline policies  policy   key "<principal ARN>#inline/<policy name>" (managed=False):
                              owner, document
    instance profile cloud_resource  key its ARN (type "instance-profile")

    member_of   user → group                  from the user's GroupList (group names, looked
                                              up in the user's account)
    has_policy  user / group / role → policy  attachment "managed" or "inline"
    can_assume  principal → role              one per principal named by an Allow statement of
                                              the role's trust policy that grants sts:AssumeRole
                                              (or AssumeRoleWithSAML / WithWebIdentity); the
                                              edge holds the statement (JSON), its Sid, the
                                              principal's type, the actions (comma-separated)
                                              and the condition (JSON) if any: scalars only
    can_assume  instance profile → role       via "instance-profile": what runs with the profile
                                              acts as the role

The principals of a trust policy, as nodes:

    AWS "arn:…:iam::<acct>:root" or "<acct>"  cloud_resource key "arn:aws:iam::<acct>:root",
                                              type "account": any principal of that account
                                              whose own policies allow sts:AssumeRole on the role
    AWS user / role ARN                       user / role, key the ARN
    AWS "arn:…:sts::<acct>:assumed-role/R/S"  cloud_resource key the ARN, type "role-session"
                                              (role: R's ARN when R is in the file)
    AWS "*"                                   cloud_resource key "aws:*" (anyone)
    Service "ec2.amazonaws.com"               cloud_resource key "service:ec2.amazonaws.com"
    Federated "<provider>"                    cloud_resource key "federated:<provider>"
    CanonicalUser "<id>"                      cloud_resource key "canonical-user:<id>"
    anything else (a deleted principal's id)  cloud_resource key the value, type "principal"

A principal named only in a trust policy (a role of another account) is a node with what the
ARN tells (name, account) and nothing more: its permissions are not in this file.

Policy documents come as JSON objects (CLI v2) or URL-encoded JSON text (the raw API, older
CLIs): both are read. A malformed entry of the four lists (no ARN, not an object) is set aside
with its reason; so is, on its own, a malformed part of a good entry (an inline policy, the
trust policy, a managed policy's default version, an attachment), and the rest of the entry
is kept. A file that is not JSON, or holds none of the four lists, raises InputError.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import orjson
import re2

from vigil.assets.model import Inventory, Node
from vigil.errors import InputError
from vigil.ingest.base import too_deep

FORMAT = "aws-iam"

LISTS = ("UserDetailList", "GroupDetailList", "RoleDetailList", "Policies")

# The trust-policy actions that let a principal become the role.
ASSUME_ACTIONS = ("sts:AssumeRole", "sts:AssumeRoleWithSAML", "sts:AssumeRoleWithWebIdentity")

# Trust-policy principal type → the cloud_resource key prefix of its principals (AWS ones are
# told apart by their ARN, see `_aws_principal`).
PRINCIPAL_PREFIXES = {
    "Service": "service:",
    "Federated": "federated:",
    "CanonicalUser": "canonical-user:",
}

ANYONE = "aws:*"

_IAM_ARN = re.compile(r"^arn:(?P<partition>aws[\w-]*):iam::(?P<account>\d{12}):(?P<rest>.+)$")
_STS_SESSION = re.compile(
    r"^arn:(?P<partition>aws[\w-]*):sts::(?P<account>\d{12}):assumed-role/(?P<role>[^/]+)/.+$"
)
_ACCOUNT = re.compile(r"^\d{12}$")


class Malformed(ValueError):
    """A part of the file that cannot be read, with why."""


# --- the policy language, shared with the privilege-escalation query -------------------------


def inline_key(principal_arn: str, policy_name: str) -> str:
    return f"{principal_arn}#inline/{policy_name}"


def trust_key(role_arn: str) -> str:
    return f"{role_arn}#trust"


def strings(value: Any) -> tuple[str, ...]:
    """An IAM element that may be one string or a list of them, as a tuple."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise Malformed(f"not a string or a list of strings: {_short(value)}")


NOTHING = r"[^\x00-\x{10FFFF}]"  # a pattern no text matches (RE2 has no lookahead)


def _literal(text: str) -> str:
    """Text as RE2 source that matches it exactly."""
    return "".join(c if c.isalnum() or c == "_" else f"\\x{{{ord(c):x}}}" for c in text)


def translate(pattern: str, variables: tuple[tuple[str, str], ...] = ()) -> str:
    """An IAM pattern as regular-expression source (RE2): `*` any run of characters, `?`
    one, `${name}` a policy variable given in `variables` (one with no value here matches
    nothing), `${*}` `${?}` `${$}` those characters themselves."""
    known = {name.lower(): value for name, value in variables}
    out = []
    index = 0
    while index < len(pattern):
        end = pattern.find("}", index) if pattern.startswith("${", index) else -1
        if end > 0:
            name = pattern[index + 2 : end]
            if name in ("*", "?", "$"):
                out.append(_literal(name))
            elif name.lower() in known:
                out.append(_literal(known[name.lower()]))
            else:
                out.append(NOTHING)
            index = end + 1
            continue
        char = pattern[index]
        out.append(".*" if char == "*" else "." if char == "?" else _literal(char))
        index += 1
    return "".join(out)


@functools.lru_cache(maxsize=8192)
def wildcard(
    patterns: tuple[str, ...],
    ignore_case: bool = False,
    variables: tuple[tuple[str, str], ...] = (),
) -> Any:
    """Any of IAM patterns as one regular expression (actions match without regard to case,
    resources with), on RE2: linear time, whatever wildcards a policy holds (on a
    backtracking engine `*a*a*a*a…z` took seconds per principal)."""
    body = "|".join(f"(?:{translate(p, variables)})" for p in patterns) or NOTHING
    options = re2.Options()
    options.dot_nl = True
    options.case_sensitive = not ignore_case
    options.max_mem = 32 << 20  # a policy of hundreds of resources is one large alternation
    options.log_errors = False  # past its memory the DFA gives way to the NFA: no noise
    return re2.compile(body, options)


def matches(patterns: Iterable[str], text: str, ignore_case: bool = False) -> bool:
    return wildcard(tuple(patterns), ignore_case).fullmatch(text) is not None


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    """A document's statements (a lone statement object counts as a list of one)."""
    found = document.get("Statement")
    if isinstance(found, dict):
        return [found]
    if isinstance(found, list):
        return found
    raise Malformed("the document has no Statement list")


def policy_document(value: Any, *, trust: bool = False) -> dict[str, Any]:
    """A policy document parsed (from an object, JSON text or URL-encoded JSON text) and
    checked: each statement has an Effect of Allow or Deny, one of Action / NotAction, and
    one of Resource / NotResource (a trust policy: Principal / NotPrincipal instead)."""
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            try:
                value = orjson.loads(unquote(value))
            except orjson.JSONDecodeError as exc:
                raise Malformed(f"the policy document is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise Malformed(f"the policy document is not an object: {_short(value)}")
    for index, statement in enumerate(statements(value)):
        try:
            _check_statement(statement, trust)
        except Malformed as exc:
            raise Malformed(f"statement {index}: {exc}") from None
    return value


def _check_statement(statement: Any, trust: bool) -> None:
    if not isinstance(statement, dict):
        raise Malformed(f"not an object: {_short(statement)}")
    if statement.get("Effect") not in ("Allow", "Deny"):
        raise Malformed(f"Effect is {_short(statement.get('Effect'))}, not Allow or Deny")
    pairs = [("Action", "NotAction")]
    pairs.append(("Principal", "NotPrincipal") if trust else ("Resource", "NotResource"))
    for one, other in pairs:
        given = [key for key in (one, other) if key in statement]
        if len(given) != 1:
            raise Malformed(f"needs one of {one} or {other}")
        if one != "Principal":
            strings(statement[given[0]])
    for key in ("Principal", "NotPrincipal"):
        if key in statement:
            principal_entries(statement[key])
    if "Condition" in statement and not isinstance(statement["Condition"], dict):
        raise Malformed("Condition is not an object")
    if "Sid" in statement and not isinstance(statement["Sid"], str):
        raise Malformed("Sid is not a string")


def principal_entries(value: Any) -> list[tuple[str, str]]:
    """A Principal element as (type, value) pairs: `"*"` is ("AWS", "*")."""
    if value == "*":
        return [("AWS", "*")]
    if not isinstance(value, dict):
        raise Malformed(f'Principal is not "*" or an object: {_short(value)}')
    return [(kind, item) for kind, given in value.items() for item in strings(given)]


def account_of(arn: str) -> str | None:
    found = _IAM_ARN.match(arn) or _STS_SESSION.match(arn)
    return found["account"] if found else None


def canonical(value: Any) -> str:
    """A JSON value as canonical text (keys sorted): small, hashable, comparable."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- the importer -----------------------------------------------------------------------------


def sniff(name: str, head: bytes) -> bool:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not start.startswith(b"{"):
        return False
    return any(f'"{key}"'.encode() in head for key in LISTS[:3]) or (
        b'"Policies"' in head and b'"PolicyVersionList"' in head
    )


def read(data: bytes, name: str) -> Inventory:
    """The file's identities, policies and trust relationships (see the module's docstring)."""
    try:
        details = orjson.loads(data.removeprefix(b"\xef\xbb\xbf"))
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{name}: not JSON ({exc})") from None
    if not isinstance(details, dict) or not any(key in details for key in LISTS):
        raise InputError(
            f"{name}: not the output of `aws iam get-account-authorization-details` "
            f"(none of {', '.join(LISTS)})"
        )
    inventory = Inventory(name)
    inventory.report.format = FORMAT
    if details.get("IsTruncated"):
        inventory.report.warn(None, "IsTruncated: this is one page of the output, not all")
    entries = {key: _entries(inventory, details, key) for key in LISTS}
    account = _Account(
        groups=_index(entries["GroupDetailList"], "GroupName"),
        roles=_index(entries["RoleDetailList"], "RoleName"),
    )
    readers: dict[str, Callable[[Inventory, _Account, dict[str, Any]], None]] = {
        "Policies": _managed_policy,
        "GroupDetailList": _group,
        "UserDetailList": _user,
        "RoleDetailList": _role,
    }
    for key, reader in readers.items():
        for index, entry in entries[key]:
            inventory.report.records_read += 1
            where = f"{key}[{index}]"
            if not isinstance(entry, dict):
                inventory.report.reject(where, f"not an object: {_short(entry)}")
                continue
            if too_deep(entry):
                inventory.report.reject(where, "nests deeper than any policy does")
                continue
            try:
                reader(inventory, account, entry)
            except Malformed as exc:
                inventory.report.reject(f"{where} {_label(entry)}".rstrip(), str(exc))
    return inventory


@dataclass(frozen=True, slots=True)
class _Account:
    """What the lists say about each other: (account, name) → ARN of groups and roles (a user's
    GroupList names its groups; a role session names its role)."""

    groups: dict[tuple[str, str], str]
    roles: dict[tuple[str, str], str]


def _entries(inventory: Inventory, details: dict[str, Any], key: str) -> list[tuple[int, Any]]:
    found = details.get(key, [])
    if not isinstance(found, list):
        inventory.report.reject(key, f"not a list: {_short(found)}")
        return []
    return list(enumerate(found))


def _index(entries: list[tuple[int, Any]], name_key: str) -> dict[tuple[str, str], str]:
    out = {}
    for _, entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("Arn"), str):
            account = account_of(entry["Arn"])
            if account and isinstance(entry.get(name_key), str):
                out[(account, entry[name_key])] = entry["Arn"]
    return out


def _label(entry: dict[str, Any]) -> str:
    for key in ("Arn", "UserName", "GroupName", "RoleName", "PolicyName"):
        if isinstance(entry.get(key), str):
            return str(entry[key])
    return ""


def _text(entry: dict[str, Any], key: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise Malformed(f"no {key}")
    return value.strip()


def _list(entry: dict[str, Any], key: str) -> list[Any]:
    value = entry.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise Malformed(f"{key} is not a list")
    return value


def _time(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).isoformat()
    except ValueError:
        return value


def _tags(entry: dict[str, Any]) -> dict[str, str] | None:
    tags = entry.get("Tags")
    if not isinstance(tags, list) or not tags:
        return None
    return {
        str(tag["Key"]): str(tag.get("Value", ""))
        for tag in tags
        if isinstance(tag, dict) and "Key" in tag
    }


def _boundary(entry: dict[str, Any]) -> str | None:
    boundary = entry.get("PermissionsBoundary")
    if isinstance(boundary, dict) and isinstance(boundary.get("PermissionsBoundaryArn"), str):
        return str(boundary["PermissionsBoundaryArn"])
    return None


def _managed_policy(inventory: Inventory, account: _Account, entry: dict[str, Any]) -> None:
    arn = _text(entry, "Arn")
    default = entry.get("DefaultVersionId")
    document = None
    others: dict[str, Any] = {}
    for version in _list(entry, "PolicyVersionList"):
        if not isinstance(version, dict):
            raise Malformed("a PolicyVersionList entry is not an object")
        version_id = version.get("VersionId")
        is_default = version.get("IsDefaultVersion") is True or (
            default is not None and version_id == default
        )
        try:
            parsed = policy_document(version.get("Document"))
        except Malformed as exc:
            if is_default:
                raise Malformed(f"default version {version_id}: {exc}") from None
            inventory.report.warn(f"{arn} {version_id}", f"version set aside: {exc}")
            continue
        if is_default:
            document = parsed
        else:
            others[str(version_id)] = parsed
    if document is None:
        raise Malformed(f"no document for the default version {default}")
    inventory.node(
        "policy",
        arn,
        name=entry.get("PolicyName") or arn.rsplit("/", 1)[-1],
        managed=True,
        aws_managed=":aws:policy/" in arn,
        account=account_of(arn),
        policy_id=entry.get("PolicyId"),
        path=entry.get("Path"),
        default_version=default,
        attachment_count=entry.get("AttachmentCount"),
        permissions_boundary_usage_count=entry.get("PermissionsBoundaryUsageCount"),
        is_attachable=entry.get("IsAttachable"),
        created=_time(entry.get("CreateDate")),
        updated=_time(entry.get("UpdateDate")),
        document=document,
        other_versions=others,
    )


def _policies(
    inventory: Inventory, principal: Node, entry: dict[str, Any], inline_list: str
) -> None:
    """A principal's attached managed policies and inline policies, each set aside alone."""
    for index, attached in enumerate(_list(entry, "AttachedManagedPolicies")):
        if not isinstance(attached, dict) or not isinstance(attached.get("PolicyArn"), str):
            inventory.report.reject(
                f"{principal.key} AttachedManagedPolicies[{index}]", "no PolicyArn"
            )
            continue
        arn = attached["PolicyArn"]
        known = inventory.nodes.get(f"policy:{arn}")
        policy = known or inventory.node(
            "policy", arn, name=attached.get("PolicyName"), managed=True
        )
        inventory.edge("has_policy", principal, policy, attachment="managed")
    for index, inline in enumerate(_list(entry, inline_list)):
        where = f"{principal.key} {inline_list}[{index}]"
        try:
            if not isinstance(inline, dict):
                raise Malformed("not an object")
            policy_name = _text(inline, "PolicyName")
            where = inline_key(principal.key, policy_name)
            document = policy_document(inline.get("PolicyDocument"))
        except Malformed as exc:
            inventory.report.reject(where, str(exc))
            continue
        policy = inventory.node(
            "policy",
            inline_key(principal.key, policy_name),
            name=policy_name,
            managed=False,
            owner=principal.key,
            document=document,
        )
        inventory.edge("has_policy", principal, policy, attachment="inline")


def _group(inventory: Inventory, account: _Account, entry: dict[str, Any]) -> None:
    arn = _text(entry, "Arn")
    group = inventory.node(
        "group",
        arn,
        name=_text(entry, "GroupName"),
        group_id=entry.get("GroupId"),
        path=entry.get("Path"),
        created=_time(entry.get("CreateDate")),
        account=account_of(arn),
    )
    _policies(inventory, group, entry, "GroupPolicyList")


def _user(inventory: Inventory, account: _Account, entry: dict[str, Any]) -> None:
    arn = _text(entry, "Arn")
    name = _text(entry, "UserName")
    groups = _list(entry, "GroupList")
    user = inventory.node(
        "user",
        arn,
        name=name,
        user_id=entry.get("UserId"),
        path=entry.get("Path"),
        created=_time(entry.get("CreateDate")),
        account=account_of(arn),
        tags=_tags(entry),
        permissions_boundary=_boundary(entry),
    )
    for group_name in groups:
        if not isinstance(group_name, str) or not group_name:
            inventory.report.reject(f"{arn} GroupList", f"not a group name: {_short(group_name)}")
            continue
        group_arn = account.groups.get((account_of(arn) or "", group_name))
        if group_arn is None:
            group_arn = _sibling_arn(arn, "group", group_name)
            inventory.report.warn(arn, f"group {group_name} is not in GroupDetailList")
        group = inventory.nodes.get(f"group:{group_arn}") or inventory.node(
            "group", group_arn, name=group_name
        )
        inventory.edge("member_of", user, group)
    _policies(inventory, user, entry, "UserPolicyList")


def _sibling_arn(arn: str, kind: str, name: str) -> str:
    found = _IAM_ARN.match(arn)
    if not found:
        return f"{kind}/{name}"
    return f"arn:{found['partition']}:iam::{found['account']}:{kind}/{name}"


def _role(inventory: Inventory, account: _Account, entry: dict[str, Any]) -> None:
    arn = _text(entry, "Arn")
    name = _text(entry, "RoleName")
    profiles = _list(entry, "InstanceProfileList")
    last_used = entry.get("RoleLastUsed")
    role = inventory.node(
        "role",
        arn,
        name=name,
        role_id=entry.get("RoleId"),
        path=entry.get("Path"),
        created=_time(entry.get("CreateDate")),
        account=account_of(arn),
        tags=_tags(entry),
        permissions_boundary=_boundary(entry),
        description=entry.get("Description"),
        max_session_duration=entry.get("MaxSessionDuration"),
        last_used=_time(last_used.get("LastUsedDate")) if isinstance(last_used, dict) else None,
    )
    try:
        trust = policy_document(entry.get("AssumeRolePolicyDocument"), trust=True)
    except Malformed as exc:
        inventory.report.reject(trust_key(arn), str(exc))
    else:
        role.attrs["trust_policy"] = trust
        _trust(inventory, account, role, trust)
    arns = []
    for index, profile in enumerate(profiles):
        try:
            if not isinstance(profile, dict):
                raise Malformed("not an object")
            profile_arn = _text(profile, "Arn")
        except Malformed as exc:
            inventory.report.reject(f"{arn} InstanceProfileList[{index}]", str(exc))
            continue
        node = inventory.node(
            "cloud_resource",
            profile_arn,
            name=profile.get("InstanceProfileName"),
            type="instance-profile",
            instance_profile_id=profile.get("InstanceProfileId"),
            path=profile.get("Path"),
            created=_time(profile.get("CreateDate")),
            account=account_of(profile_arn),
        )
        inventory.edge("can_assume", node, role, via="instance-profile")
        arns.append(profile_arn)
    role.attrs["instance_profiles"] = arns
    _policies(inventory, role, entry, "RolePolicyList")


def _trust(inventory: Inventory, account: _Account, role: Node, trust: dict[str, Any]) -> None:
    """A can_assume edge per principal an Allow statement lets assume the role."""
    for index, statement in enumerate(statements(trust)):
        if statement["Effect"] != "Allow":
            continue  # a Deny narrows who may assume: the query reads it from trust_policy
        if "NotPrincipal" in statement:
            inventory.report.warn(
                trust_key(role.key), f"statement {index}: Allow with NotPrincipal not drawn"
            )
            continue
        negated = "NotAction" in statement
        listed = strings(statement["NotAction" if negated else "Action"])
        grants = [a for a in ASSUME_ACTIONS if matches(listed, a, ignore_case=True) != negated]
        if not grants:
            continue  # sts:TagSession, sts:SetSourceIdentity...: not a way in on their own
        text = canonical(statement)
        condition = canonical(statement["Condition"]) if "Condition" in statement else None
        for kind, value in principal_entries(statement["Principal"]):
            source = _principal_node(inventory, account, kind, value)
            inventory.edge(
                "can_assume",
                source,
                role,
                principal_type=kind,
                actions=",".join(grants),
                sid=statement.get("Sid") or None,
                condition=condition,
                statement=text,
            )


def _principal_node(inventory: Inventory, account: _Account, kind: str, value: str) -> Node:
    if kind == "AWS":
        return _aws_principal(inventory, account, value)
    prefix = PRINCIPAL_PREFIXES.get(kind)
    if prefix is None:
        return inventory.node("cloud_resource", f"{kind.lower()}:{value}", type=kind.lower())
    return inventory.node("cloud_resource", prefix + value, name=value, type=prefix[:-1])


def _aws_principal(inventory: Inventory, account: _Account, value: str) -> Node:
    if value == "*":
        return inventory.node("cloud_resource", ANYONE, name="any AWS principal", type="anyone")
    if _ACCOUNT.match(value):
        value = f"arn:aws:iam::{value}:root"
    iam = _IAM_ARN.match(value)
    if iam and iam["rest"] == "root":
        return inventory.node(
            "cloud_resource",
            value,
            name=f"account {iam['account']}",
            type="account",
            account=iam["account"],
        )
    if iam and iam["rest"].split("/", 1)[0] in ("user", "role"):
        kind = iam["rest"].split("/", 1)[0]
        known = inventory.nodes.get(f"{kind}:{value}")
        return known or inventory.node(
            kind, value, name=value.rsplit("/", 1)[-1], account=iam["account"]
        )
    session = _STS_SESSION.match(value)
    if session:
        return inventory.node(
            "cloud_resource",
            value,
            type="role-session",
            account=session["account"],
            role=account.roles.get((session["account"], session["role"])),
        )
    return inventory.node("cloud_resource", value, type="principal", account=account_of(value))
