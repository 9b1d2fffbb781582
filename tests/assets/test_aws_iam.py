"""AWS IAM authorization details: the reference account (Bishop Fox's IAM Vulnerable users,
cloudsplaining's sample principals) against counts taken with plain json, trust relationships
read by hand, and the privilege-escalation query against the privesc users' own policies."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from vigil.assets import aws_iam
from vigil.assets.model import Inventory
from vigil.assets.privesc import Escalations, Finding, find_escalations, permissions
from vigil.errors import InputError

ACCOUNT = "arn:aws:iam::200611803367"
OTHER = "arn:aws:iam::012345678901"  # cloudsplaining's sample principals, a second account


def user(name: str, account: str = ACCOUNT) -> str:
    return f"{account}:user/{name}"


def role(name: str) -> str:
    return f"{ACCOUNT}:role/{name}"


def policy(name: str) -> str:
    return f"{ACCOUNT}:policy/{name}"


@pytest.fixture(scope="module")
def raw(need_data: Callable[..., Path]) -> dict[str, Any]:
    folder = need_data("asset_vuln", "aws-iam-authorization-details")
    return dict(json.loads((folder / "example.json").read_text("utf-8")))


@pytest.fixture(scope="module")
def inventory(need_data: Callable[..., Path]) -> Inventory:
    folder = need_data("asset_vuln", "aws-iam-authorization-details")
    return aws_iam.read((folder / "example.json").read_bytes(), "example.json")


@pytest.fixture(scope="module")
def escalations(inventory: Inventory) -> Escalations:
    return find_escalations(inventory)


def edges(inventory: Inventory, kind: str, src: str, dst: str) -> list[dict[str, Any]]:
    return [
        dict(e.attrs) for e in inventory.edges if e.kind == kind and e.src == src and e.dst == dst
    ]


# --- the importer -----------------------------------------------------------------------------


def test_counts_match_the_file_read_with_plain_json(
    inventory: Inventory, raw: dict[str, Any]
) -> None:
    users = {u["Arn"] for u in raw["UserDetailList"]}
    groups = {g["Arn"] for g in raw["GroupDetailList"]}
    roles = {r["Arn"] for r in raw["RoleDetailList"]}
    managed = {p["Arn"] for p in raw["Policies"]}
    inline = 0
    for entry, inline_list in (
        *((u, "UserPolicyList") for u in raw["UserDetailList"]),
        *((g, "GroupPolicyList") for g in raw["GroupDetailList"]),
        *((r, "RolePolicyList") for r in raw["RoleDetailList"]),
    ):
        managed |= {a["PolicyArn"] for a in entry["AttachedManagedPolicies"]}
        inline += len(entry.get(inline_list, []))
    # Principals only named by a trust policy are nodes too (a role of another account).
    assume_pairs = set()
    for r in raw["RoleDetailList"]:
        for index, statement in enumerate(r["AssumeRolePolicyDocument"]["Statement"]):
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            if statement["Effect"] != "Allow" or not any(
                a.lower().startswith("sts:assumerole") or a in ("*", "sts:*") for a in actions
            ):
                continue
            for kind, values in statement["Principal"].items():
                for value in [values] if isinstance(values, str) else values:
                    assume_pairs.add((r["Arn"], index, kind, value))
                    if kind == "AWS" and ":user/" in value:
                        users.add(value)
                    if kind == "AWS" and ":role/" in value:
                        roles.add(value)
    profiles = sum(len(r["InstanceProfileList"]) for r in raw["RoleDetailList"])
    members = sum(len(u["GroupList"]) for u in raw["UserDetailList"])

    assert (len(raw["UserDetailList"]), len(groups), len(raw["RoleDetailList"])) == (44, 5, 78)
    assert inventory.count("user") == len(users) == 44
    assert inventory.count("group") == len(groups)
    assert inventory.count("role") == len(roles) == 79  # one of another account, by trust
    policies = [n for n in inventory.nodes.values() if n.kind == "policy"]
    assert sum(1 for n in policies if n.attrs["managed"]) == len(managed) == 84
    assert sum(1 for n in policies if not n.attrs["managed"]) == inline
    assert inventory.edge_count("member_of") == members == 6
    assert inventory.edge_count("can_assume") == len(assume_pairs) + profiles
    assert inventory.report.records_read == 44 + 5 + 78 + 84
    assert inventory.report.records_rejected == 0


def test_trust_relationships_read_by_hand(inventory: Inventory) -> None:
    # privesc-sre-role trusts the user privesc-sre-user by ARN.
    (sre,) = edges(
        inventory,
        "can_assume",
        f"user:{user('privesc-sre-user')}",
        f"role:{role('privesc-sre-role')}",
    )
    assert sre["principal_type"] == "AWS" and sre["actions"] == "sts:AssumeRole"
    assert json.loads(sre["statement"])["Principal"] == {"AWS": user("privesc-sre-user")}
    # The AssumeRole chain: starting → intermediate → ending, each trusting the one before.
    for src, dst in (("starting", "intermediate"), ("intermediate", "ending")):
        assert edges(
            inventory,
            "can_assume",
            f"role:{role(f'privesc-AssumeRole-{src}-role')}",
            f"role:{role(f'privesc-AssumeRole-{dst}-role')}",
        )
    # The high-privilege service role: ten services trust it, and so does its instance profile.
    high = f"role:{role('privesc-high-priv-service-role')}"
    services = {e.src for e in inventory.edges if e.kind == "can_assume" and e.dst == high}
    assert "cloud_resource:service:ec2.amazonaws.com" in services
    assert "cloud_resource:service:lambda.amazonaws.com" in services
    profile = f"cloud_resource:{ACCOUNT}:instance-profile/privesc-high-priv-service-profile"
    assert edges(inventory, "can_assume", profile, high) == [{"via": "instance-profile"}]
    assert inventory.nodes[high].attrs["instance_profiles"] == [profile.split(":", 1)[1]]
    # OrganizationAccountAccessRole trusts the whole management account.
    org_root = "cloud_resource:arn:aws:iam::072528804237:root"
    assert edges(inventory, "can_assume", org_root, f"role:{role('OrganizationAccountAccessRole')}")
    assert inventory.nodes[org_root].attrs["type"] == "account"
    # privesc-permissive-role-trust trusts its own account's root.
    assert edges(
        inventory,
        "can_assume",
        f"cloud_resource:{ACCOUNT}:root",
        f"role:{role('privesc-permissive-role-trust')}",
    )
    # SSO: a SAML provider, by AssumeRoleWithSAML, with the audience condition kept.
    sso_name = "AWSReservedSSO_AdministratorAccess_dc6414f7f2ab04fc"
    sso = f"{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/{sso_name}"
    saml = f"cloud_resource:federated:{ACCOUNT}:saml-provider/AWSSSO_b937d2dff24f2774_DO_NOT_DELETE"
    (federated,) = edges(inventory, "can_assume", saml, f"role:{sso}")
    assert federated["actions"] == "sts:AssumeRoleWithSAML"
    assert json.loads(federated["condition"]) == {
        "StringEquals": {"SAML:aud": "https://signin.aws.amazon.com/saml"}
    }
    # The privesc roles trust one SSO session, which names its role.
    session = f"cloud_resource:arn:aws:sts::200611803367:assumed-role/{sso_name}/elad@codsec.io"
    assert edges(inventory, "can_assume", session, f"role:{role('privesc9-AttachRolePolicy-role')}")
    assert inventory.nodes[session].attrs["role"] == sso


def test_managed_policies_keep_their_default_version(
    inventory: Inventory, raw: dict[str, Any]
) -> None:
    entry = next(p for p in raw["Policies"] if p["PolicyName"] == "AWSCodeCommitPowerUser")
    node = inventory.nodes[f"policy:{entry['Arn']}"]
    (default,) = (v for v in entry["PolicyVersionList"] if v["IsDefaultVersion"])
    assert node.attrs["default_version"] == entry["DefaultVersionId"] == default["VersionId"]
    assert node.attrs["document"] == default["Document"]
    assert len(node.attrs["other_versions"]) == len(entry["PolicyVersionList"]) - 1
    assert node.attrs["attachment_count"] == entry["AttachmentCount"]
    assert node.attrs["is_attachable"] is True and node.attrs["aws_managed"] is True
    inline = inventory.nodes[f"policy:{user('biden', OTHER)}#inline/InsecureUserPolicy"]
    assert inline.attrs["managed"] is False
    assert inline.attrs["document"]["Statement"][0]["Sid"] == "VisualEditor0"


def small_account(**extra: Any) -> bytes:
    """A made-up account: documents URL-encoded as the raw API gives them, one left as an
    object, and whatever `extra` lists add."""
    admin = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    }
    self_service = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "IAM:CreateAccessKey",
                "Resource": "arn:aws:iam::111122223333:user/${aws:username}",
            },
            {"Effect": "Allow", "Action": "iam:Put?serPolicy", "Resource": "*"},
            {
                "Effect": "Deny",
                "Action": "iam:PutUserPolicy",
                "Resource": "arn:aws:iam::111122223333:user/bob",
            },
        ],
    }
    details: dict[str, list[Any]] = {
        "UserDetailList": [
            {
                "UserName": "alice",
                "UserId": "AIDAALICE",
                "Arn": "arn:aws:iam::111122223333:user/alice",
                "GroupList": [],
                "AttachedManagedPolicies": [],
                "UserPolicyList": [
                    {"PolicyName": "self", "PolicyDocument": quote(json.dumps(self_service))}
                ],
            },
            {"UserName": "no-arn"},
        ],
        "GroupDetailList": [],
        "RoleDetailList": [
            {
                "RoleName": "ops",
                "RoleId": "AROAOPS",
                "Arn": "arn:aws:iam::111122223333:role/ops",
                "AssumeRolePolicyDocument": quote(
                    json.dumps(
                        {
                            "Version": "2012-10-17",
                            "Statement": [
                                {
                                    "Effect": "Allow",
                                    "Principal": {"AWS": "111122223333"},
                                    "Action": "sts:AssumeRole",
                                }
                            ],
                        }
                    )
                ),
                "InstanceProfileList": [],
                "RolePolicyList": [],
                "AttachedManagedPolicies": [
                    {"PolicyName": "Admin", "PolicyArn": "arn:aws:iam::111122223333:policy/Admin"}
                ],
            }
        ],
        "Policies": [
            {
                "PolicyName": "Admin",
                "Arn": "arn:aws:iam::111122223333:policy/Admin",
                "DefaultVersionId": "v2",
                "PolicyVersionList": [
                    {"VersionId": "v1", "IsDefaultVersion": False, "Document": admin},
                    {
                        "VersionId": "v2",
                        "IsDefaultVersion": True,
                        "Document": quote(json.dumps(admin)),
                    },
                ],
            },
            {
                "PolicyName": "Broken",
                "Arn": "arn:aws:iam::111122223333:policy/Broken",
                "DefaultVersionId": "v1",
                "PolicyVersionList": [
                    {"VersionId": "v1", "IsDefaultVersion": True, "Document": "%7Bnot json"}
                ],
            },
        ],
    }
    for key, more in extra.items():
        details[key] += more
    return json.dumps(details).encode()


def test_url_encoded_documents_read_like_objects_and_bad_entries_are_set_aside() -> None:
    inventory = aws_iam.read(small_account(), "small.json")
    admin = inventory.nodes["policy:arn:aws:iam::111122223333:policy/Admin"]
    assert admin.attrs["document"] == admin.attrs["other_versions"]["v1"]
    assert admin.attrs["document"]["Statement"][0]["Action"] == "*"
    ops = inventory.nodes["role:arn:aws:iam::111122223333:role/ops"]
    assert ops.attrs["trust_policy"]["Statement"][0]["Principal"] == {"AWS": "111122223333"}
    assert edges(
        inventory,
        "can_assume",
        "cloud_resource:arn:aws:iam::111122223333:root",
        f"role:{ops.key}",
    )
    rejects = {p.record: p.reason for p in inventory.report.rejects}
    assert rejects == {
        "UserDetailList[1] no-arn": "no Arn",
        "Policies[1] arn:aws:iam::111122223333:policy/Broken": rejects[
            "Policies[1] arn:aws:iam::111122223333:policy/Broken"
        ],
    }
    assert "default version v1" in rejects["Policies[1] arn:aws:iam::111122223333:policy/Broken"]
    assert inventory.report.records_read == 5
    assert inventory.count("user") == 1


def test_a_bad_inline_policy_or_trust_is_set_aside_and_its_principal_kept() -> None:
    bad_user = {
        "UserName": "carol",
        "UserId": "AIDACAROL",
        "Arn": "arn:aws:iam::111122223333:user/carol",
        "GroupList": [],
        "AttachedManagedPolicies": [{"PolicyName": "no arn"}],
        "UserPolicyList": [
            {"PolicyName": "odd", "PolicyDocument": {"Statement": [{"Effect": "Maybe"}]}}
        ],
    }
    bad_role = {
        "RoleName": "lost",
        "RoleId": "AROALOST",
        "Arn": "arn:aws:iam::111122223333:role/lost",
        "AssumeRolePolicyDocument": {
            "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole"}]
        },
    }
    inventory = aws_iam.read(
        small_account(UserDetailList=[bad_user], RoleDetailList=[bad_role]), "small.json"
    )
    rejects = {p.record: p.reason for p in inventory.report.rejects}
    assert "Effect is 'Maybe'" in rejects["arn:aws:iam::111122223333:user/carol#inline/odd"]
    assert (
        rejects["arn:aws:iam::111122223333:user/carol AttachedManagedPolicies[0]"] == "no PolicyArn"
    )
    assert "Principal" in rejects["arn:aws:iam::111122223333:role/lost#trust"]
    assert "user:arn:aws:iam::111122223333:user/carol" in inventory.nodes
    assert "trust_policy" not in inventory.nodes["role:arn:aws:iam::111122223333:role/lost"].attrs


def test_what_is_not_the_format_is_told_apart() -> None:
    assert aws_iam.sniff("a.json", small_account()[:200])
    assert not aws_iam.sniff("a.json", b'{"Findings": []}')
    assert not aws_iam.sniff("a.xml", b"<nmaprun>")
    for data in (b"not json", b"[1, 2]", b'{"Findings": []}', b"[" * 5000):
        with pytest.raises(InputError, match=r"^odd\.json: "):
            aws_iam.read(data, "odd.json")


# --- effective permissions ----------------------------------------------------------------------


def test_effective_permissions_follow_allow_deny_and_wildcards(inventory: Inventory) -> None:
    fn4 = permissions(inventory, user("fn4-exploitableNotAction-user"))  # NotAction iam:Create*...
    assert fn4.grant("iam:PutUserPolicy", user("fn4-exploitableNotAction-user")) is not None
    assert fn4.grant("iam:CreateAccessKey", user("privesc1-CreateNewPolicyVersion-user")) is None
    assert fn4.grant("IAM:attachuserpolicy", "*") is None
    fp1 = permissions(inventory, user("fp1-allow-and-deny-user"))  # Allow iam:*, Deny iam:*
    assert fp1.grant("iam:PassRole", role("privesc-high-priv-service-role")) is None
    fp2 = permissions(inventory, user("fp2-allow-and-deny-multiple-policies-user"))
    assert fp2.grant("s3:GetObject") is None and fp2.admin() is None  # * and Deny *
    fn2 = permissions(inventory, user("fn2-exploitableResourceConstraint-user"))
    assert fn2.grant("iam:CreatePolicyVersion", policy("fn2-exploitableResourceConstraint"))
    assert fn2.grant("iam:CreatePolicyVersion", policy("privesc1-CreateNewPolicyVersion")) is None
    ssm = permissions(inventory, user("privesc-ssmSendCommand-user"))  # "ssm:sendCommand"
    assert ssm.grant("ssm:SendCommand") is not None
    obama = permissions(inventory, user("obama", OTHER))
    admin = obama.admin()
    assert admin is not None and admin.policy == "arn:aws:iam::aws:policy/AdministratorAccess"


def test_question_mark_and_policy_variables_match_as_iam_does() -> None:
    inventory = aws_iam.read(small_account(), "small.json")
    alice = permissions(inventory, "arn:aws:iam::111122223333:user/alice")
    assert alice.grant("iam:CreateAccessKey", "arn:aws:iam::111122223333:user/alice")
    assert alice.grant("iam:CreateAccessKey", "arn:aws:iam::111122223333:user/bob") is None
    assert alice.grant("iam:PutUserPolicy", "arn:aws:iam::111122223333:user/alice")
    assert alice.grant("iam:PutUserPolicy", "arn:aws:iam::111122223333:user/bob") is None
    assert alice.grant("iam:PutRolePolicy", "*") is None
    assert permissions(inventory, "arn:aws:iam::111122223333:role/ops").admin() is not None


# --- the privilege-escalation query -------------------------------------------------------------


def only(escalations: Escalations, who: str, method: str, target: str) -> Finding:
    found = [f for f in escalations.of(who) if f.method == method and f.target == target]
    assert len(found) == 1, [(f.method, f.target) for f in escalations.of(who)]
    return found[0]


# One-step methods, read by hand from each user's single attached policy: the method, its
# target, the action of the step and the policy and Sid of the statement that grants it.
ONE_STEP = [
    ("privesc1-CreateNewPolicyVersion-user", "CreateNewPolicyVersion",
     policy("privesc1-CreateNewPolicyVersion"), "iam:CreatePolicyVersion",
     "privesc1-CreateNewPolicyVersion", None),
    ("privesc7-AttachUserPolicy-user", "AttachUserPolicy", "self", "iam:AttachUserPolicy",
     "privesc7-AttachUserPolicy", None),
    ("privesc8-AttachGroupPolicy-user", "AttachGroupPolicy",
     f"{ACCOUNT}:group/privesc8-AttachGroupPolicy-group", "iam:AttachGroupPolicy",
     "privesc8-AttachGroupPolicy", None),
    ("privesc10-PutUserPolicy-user", "PutUserPolicy", "self", "iam:PutUserPolicy",
     "privesc10-PutUserPolicy", None),
    ("privesc11-PutGroupPolicy-user", "PutGroupPolicy",
     f"{ACCOUNT}:group/privesc11-PutGroupPolicy-group", "iam:PutGroupPolicy",
     "privesc11-PutGroupPolicy", None),
    ("fn2-exploitableResourceConstraint-user", "CreateNewPolicyVersion",
     policy("fn2-exploitableResourceConstraint"), "iam:CreatePolicyVersion",
     "fn2-exploitableResourceConstraint", None),
    ("fn4-exploitableNotAction-user", "PutUserPolicy", "self", "iam:PutUserPolicy",
     "fn4-exploitableNotAction", None),
]  # fmt: skip


@pytest.mark.parametrize(("name", "method", "target", "action", "granted_by", "sid"), ONE_STEP)
def test_one_step_escalations_cite_the_statement_that_grants_them(
    escalations: Escalations,
    name: str,
    method: str,
    target: str,
    action: str,
    granted_by: str,
    sid: str | None,
) -> None:
    finding = only(escalations, user(name), method, target)
    (step,) = finding.steps
    assert (step.method, step.action) == (method, action)
    assert step.statement.policy == policy(granted_by)
    assert (step.statement.sid, step.statement.effect) == (sid, "Allow")
    assert action in step.statement.action or step.statement.not_action


# PassRole and service methods: all reach privesc-high-priv-service-role (Action "*" on "*",
# trusted by ten services, in an instance profile), by these actions of the user's policy.
HIGH = role("privesc-high-priv-service-role")
SERVICE = [
    ("privesc3-CreateEC2WithExistingInstanceProfile-user", "CreateEC2WithExistingInstanceProfile",
     ["iam:PassRole", "ec2:RunInstances"], None),
    ("privesc15-PassExistingRoleToNewLambdaThenInvoke-user",
     "PassExistingRoleToNewLambdaThenInvoke",
     ["iam:PassRole", "lambda:CreateFunction", "lambda:InvokeFunction"], None),
    ("privesc16-PassRoleToNewLambdaThenTriggerWithNewDynamo-user",
     "PassExistingRoleToNewLambdaThenTriggerWithNewDynamo",
     ["iam:PassRole", "lambda:CreateFunction", "lambda:CreateEventSourceMapping"], None),
    ("privesc17-EditExistingLambdaFunctionWithRole-user", "EditExistingLambdaFunctionWithRole",
     ["lambda:UpdateFunctionCode"], None),
    ("privesc18-PassExistingRoleToNewGlueDevEndpoint-user", "PassExistingRoleToNewGlueDevEndpoint",
     ["iam:PassRole", "glue:CreateDevEndpoint"], None),
    ("privesc19-UpdateExistingGlueDevEndpoint-user", "UpdateExistingGlueDevEndpoint",
     ["glue:UpdateDevEndpoint"], None),
    ("privesc20-PassExistingRoleToCloudFormation-user", "PassExistingRoleToCloudFormation",
     ["iam:PassRole", "cloudformation:CreateStack"], "VisualEditor0"),
    ("privesc21-PassExistingRoleToNewDataPipeline-user", "PassExistingRoleToNewDataPipeline",
     ["iam:PassRole", "datapipeline:CreatePipeline", "datapipeline:PutPipelineDefinition",
      "datapipeline:ActivatePipeline"], None),
    ("privesc-CloudFormationUpdateStack-user", "CloudFormationUpdateStack",
     ["cloudformation:UpdateStack"], "VisualEditor0"),
    ("privesc-codeBuildCreateProjectPassRole-user", "CodeBuildCreateProjectPassRole",
     ["iam:PassRole", "codebuild:CreateProject", "codebuild:StartBuild"], None),
    ("privesc-ssmSendCommand-user", "SSMSendCommand", ["ssm:SendCommand"], None),
    ("privesc-ec2InstanceConnect-user", "EC2InstanceConnect",
     ["ec2-instance-connect:SendSSHPublicKey"], None),
    ("fn1-privesc3-partial-user", "CreateEC2WithExistingInstanceProfile",
     ["iam:PassRole", "ec2:RunInstances"], None),
]  # fmt: skip


@pytest.mark.parametrize(("name", "method", "actions", "sid"), SERVICE)
def test_service_escalations_reach_the_high_privilege_role(
    escalations: Escalations, name: str, method: str, actions: list[str], sid: str | None
) -> None:
    finding = only(escalations, user(name), method, HIGH)
    assert [s.action for s in finding.steps] == actions
    assert {s.statement.sid for s in finding.steps} == {sid}
    for step in finding.steps:
        assert step.resource == (HIGH if step.action == "iam:PassRole" else "*")
        assert step.statement.policy.startswith(f"{ACCOUNT}:policy/")
    # The role's trust names the service: the PassRole step (or the service step) cites it.
    trusts = {s.trust.policy for s in finding.steps if s.trust is not None}
    assert trusts == {f"{HIGH}#trust"}
    if not any(s.action == "iam:PassRole" for s in finding.steps):
        assert finding.assumes  # an existing function, endpoint, stack or instance


def test_passrole_uses_the_users_own_passrole_policy(escalations: Escalations) -> None:
    finding = only(
        escalations, user("fn1-privesc3-partial-user"), "CreateEC2WithExistingInstanceProfile", HIGH
    )
    passed, run = finding.steps
    assert passed.statement.policy == policy("fn1-passrole-star")
    assert run.statement.policy == policy("fn1-privesc3-partial")
    assert run.statement.action == ("ec2:DescribeInstances", "ec2:RunInstances")


def test_add_user_to_group_then_the_groups_iam_star(escalations: Escalations) -> None:
    (finding,) = escalations.of(user("privesc13-AddUserToGroup-user"))
    assert finding.target == f"{ACCOUNT}:group/privesc-sre-group"
    join, edit = finding.steps
    assert (join.action, join.resource) == (
        "iam:AddUserToGroup",
        f"{ACCOUNT}:group/privesc-sre-group",
    )
    assert join.statement.policy == policy("privesc13-AddUserToGroup")
    # What the group holds (privesc-sre-admin-policy: iam:*, ec2:*, s3:*) does the rest.
    assert edit.statement.policy == policy("privesc-sre-admin-policy")
    assert edit.statement.action == ("iam:*", "ec2:*", "s3:*")


def test_trust_rewrite_and_credentials_of_other_users(escalations: Escalations) -> None:
    rewrite = only(
        escalations,
        user("privesc14-UpdatingAssumeRolePolicy-user"),
        "UpdatingAssumeRolePolicy",
        HIGH,
    )
    assert [s.action for s in rewrite.steps] == ["iam:UpdateAssumeRolePolicy", "sts:AssumeRole"]
    assert {s.statement.policy for s in rewrite.steps} == {
        policy("privesc14-UpdatingAssumeRolePolicy")
    }
    # privesc4 takes over privesc7 with an access key, and privesc7 attaches a policy to itself.
    taken = only(
        escalations,
        user("privesc4-CreateAccessKey-user"),
        "CreateAccessKey",
        user("privesc7-AttachUserPolicy-user"),
    )
    assert [(s.action, s.resource) for s in taken.steps] == [
        ("iam:CreateAccessKey", user("privesc7-AttachUserPolicy-user")),
        ("iam:AttachUserPolicy", user("privesc7-AttachUserPolicy-user")),
    ]
    assert taken.reaches == user("privesc7-AttachUserPolicy-user")
    assert taken.steps[1].statement.policy == policy("privesc7-AttachUserPolicy")
    for name in ("privesc5-CreateLoginProfile-user", "privesc6-UpdateLoginProfile-user"):
        method = name.split("-")[1]
        assert {f.method for f in escalations.of(user(name))} == {method}


def test_assume_role_chain_through_trust_alone(escalations: Escalations) -> None:
    # Neither role has a policy: in one account, a trust naming the role is enough.
    (finding,) = escalations.of(role("privesc-AssumeRole-starting-role"))
    assert (finding.method, finding.target, finding.reaches) == (
        "AssumeRole",
        role("privesc-AssumeRole-intermediate-role"),
        role("privesc-AssumeRole-ending-role"),
    )
    assert [s.resource for s in finding.steps] == [
        role("privesc-AssumeRole-intermediate-role"),
        role("privesc-AssumeRole-ending-role"),
    ]
    assert [s.statement.policy for s in finding.steps] == [
        f"{role('privesc-AssumeRole-intermediate-role')}#trust",
        f"{role('privesc-AssumeRole-ending-role')}#trust",
    ]


def test_every_privesc_user_has_a_path_but_those_the_file_does_not_allow(
    escalations: Escalations, inventory: Inventory, raw: dict[str, Any]
) -> None:
    names = [u["UserName"] for u in raw["UserDetailList"] if "privesc" in u["UserName"]]
    without = {n for n in names if not escalations.of(user(n))}
    assert without == {
        # The policy has one version only: there is no older one to make the default.
        "privesc2-SetExistingDefaultPolicyVersion-user",
        # They can edit any role, but may assume none: no sts:AssumeRole, and every privesc
        # role trusts an SSO session, not them.
        "privesc9-AttachRolePolicy-user",
        "privesc12-PutRolePolicy-user",
        # No policy at all; the starting role trusts the SSO session, not this user.
        "privesc-AssumeRole-start-user",
    }
    (privesc2,) = (p for p in raw["Policies"] if p["PolicyName"].startswith("privesc2-"))
    assert len(privesc2["PolicyVersionList"]) == 1
    # Their roles, which can assume themselves out of the picture, do escalate.
    assert {f.method for f in escalations.of(role("privesc9-AttachRolePolicy-role"))} == {
        "AttachRolePolicy"
    }
    assert only(escalations, role("privesc12-PutRolePolicy-role"), "PutRolePolicy", "self")


def test_false_positives_stay_quiet_and_conditions_are_shown(escalations: Escalations) -> None:
    for name in (
        "fp1-allow-and-deny-user",  # iam:* allowed and denied
        "fp2-allow-and-deny-multiple-policies-user",  # * allowed, * denied by another policy
        "fp3-deny-iam-user",  # only a Deny
        "fp4-nonExploitableResourceConstraint-user",  # CreatePolicyVersion on AWS's policies
    ):
        assert escalations.of(user(name)) == []
    # Conditions are not evaluated: fp5's (a token issued before 2020) is on the finding.
    (fp5,) = escalations.of(user("fp5-nonExploitableConditionConstraint-user"))
    (conditional,) = fp5.conditions
    assert json.loads(conditional.condition or "") == {
        "DateLessThan": {"aws:TokenIssueTime": "2020-01-01T00:00:01Z"}
    }


def test_an_ordinary_user_has_no_path(escalations: Escalations, inventory: Inventory) -> None:
    # biden: S3 and RDS, and AWSLambdaFullAccess with iam:PassRole and lambda:* -- but no role
    # of his account trusts lambda.amazonaws.com, so there is nothing to pass.
    biden = user("biden", OTHER)
    assert escalations.of(biden) == []
    assert biden not in {a.principal for a in escalations.admins}
    held = permissions(inventory, biden)
    assert held.grant("iam:PassRole", f"{OTHER}:role/OverprivilegedEC2") is not None
    assert held.grant("lambda:CreateFunction") is not None
    # Two of his account's users are administrators already: reported as such, not as paths.
    assert {user("obama", OTHER), user("userwithlotsofpermissions", OTHER)} <= {
        a.principal for a in escalations.admins
    }


def test_results_are_sorted_and_the_same_every_time(
    escalations: Escalations, inventory: Inventory
) -> None:
    keys = [(f.principal, f.method, f.target) for f in escalations.findings]
    assert len(keys) == 553
    assert keys == sorted(keys) and len(keys) == len(set(keys))
    assert find_escalations(inventory) == escalations
    assert escalations.unread == ()
    json.dumps([f.as_dict() for f in escalations.findings])  # every finding serialises


def test_a_policy_full_of_wildcards_is_matched_in_linear_time() -> None:
    """`*a*a*…z` against a long run of a's: a backtracking engine took seconds per principal
    (hostile policies reach this through the privilege-escalation query)."""
    from vigil.assets.aws_iam import wildcard

    pattern = wildcard(("arn:aws:iam::1:user/" + "*a" * 12 + "*z",))
    assert pattern.fullmatch("arn:aws:iam::1:user/" + "a" * 5000) is None
    assert pattern.fullmatch("arn:aws:iam::1:user/" + "a" * 12 + "z") is not None
    assert wildcard(("S3:Get*",), True).fullmatch("s3:getobject") is not None
    assert wildcard(("arn:aws:s3:::${aws:username}/*",)).fullmatch("arn:aws:s3:::x/y") is None
