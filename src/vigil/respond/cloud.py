"""The cloud connector (AWS IAM, over `boto3`): deactivate a user's access key and activate it
again (its undo). An inactive key is refused by every AWS API at once; it is kept, so the
undo gives the same key back.

    keys = CloudKeys()                                  # credentials from the environment
    keys.deactivate_key("alice", "AKIAIOSFODNN7EXAMPLE")
    keys.deactivate_key("", "AKIAIOSFODNN7EXAMPLE")     # the key's owner is looked up
    keys.activate_key("alice", "AKIAIOSFODNN7EXAMPLE")
    keys.state("alice")                                 # {"user": "alice", "keys": {…: "Active"}}

`endpoint_url` points at another IAM endpoint (a local one in tests). Both actions are
idempotent: the key's status is read first and left alone when it is already so. A key id
that is not one (AKIA/ASIA and 16 capitals or digits) is refused before anything is sent; an
unknown user or key raises NotFound; refused credentials and unreachable endpoints raise
CloudError (an Unavailable). The secret key is never logged, shown or returned. In dry-run
nothing is sent: the calls are only returned.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from vigil.errors import InputError, NotFound, Unavailable
from vigil.respond.result import ActionResult

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

KEY_ID = re.compile(r"(AKIA|ASIA)[A-Z0-9]{16}")
USER_NAME = re.compile(r"[\w+=,.@-]{1,64}", re.ASCII)  # IAM's own rule for user names
TIMEOUT_S = 10
Status = Literal["Active", "Inactive"]
REFUSED = {  # the credentials, not the request, are at fault
    "AccessDenied", "AccessDeniedException", "InvalidClientTokenId", "SignatureDoesNotMatch",
    "ExpiredToken", "UnrecognizedClientException", "AuthFailure", "MissingAuthenticationToken",
}  # fmt: skip


class CloudError(Unavailable):
    """The cloud could not be reached, refused the credentials, or failed."""


class CloudKeys:
    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        dry_run: bool = False,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self.access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self.dry_run = dry_run
        self._client: IAMClient | None = None

    def __repr__(self) -> str:  # never the secret key
        where = self.endpoint_url or f"IAM ({self.region})"
        return f"CloudKeys({where!r}, access_key_id={self.access_key_id!r})"

    # --- actions and their undo --------------------------------------------------------------

    def deactivate_key(self, user: str, key_id: str) -> ActionResult:
        """Every AWS API refuses the key from now on; `user` may be empty (then the key's
        owner is looked up)."""
        return self._set(user, key_id, "Inactive")

    def activate_key(self, user: str, key_id: str) -> ActionResult:
        """Undo `deactivate_key`: the key works again."""
        return self._set(user, key_id, "Active")

    def state(self, user: str) -> dict[str, Any]:
        """The user's access keys and their status (Active or Inactive)."""
        name = _user(user)
        keys: dict[str, str] = {}
        with self._errors(f"IAM user {name!r}"):
            for page in self._iam().get_paginator("list_access_keys").paginate(UserName=name):
                for key in page["AccessKeyMetadata"]:
                    keys[key["AccessKeyId"]] = key["Status"]
        return {"user": name, "keys": keys}

    # --- the calls ---------------------------------------------------------------------------

    def _set(self, user: str, key_id: str, status: Status) -> ActionResult:
        key_id = _key_id(key_id)
        name = _user(user) if user else ""
        if self.dry_run:
            commands: list[dict[str, Any]] = []
            if not name:
                commands.append({"call": "get_access_key_last_used", "AccessKeyId": key_id})
            update = {"UserName": name or "(the key's owner)", "AccessKeyId": key_id}
            commands.append({"call": "update_access_key", **update, "Status": status})
            return ActionResult(True, True, commands, "dry run: nothing sent")
        name = name or self._owner(key_id)
        before = self.state(name)
        if key_id not in before["keys"]:
            raise NotFound(f"no access key {key_id} for IAM user {name!r}")
        if before["keys"][key_id] == status:
            return ActionResult(True, False, [], "already so", before)
        command = {"UserName": name, "AccessKeyId": key_id, "Status": status}
        with self._errors(f"access key {key_id} of IAM user {name!r}"):
            self._iam().update_access_key(UserName=name, AccessKeyId=key_id, Status=status)
        after = self.state(name)
        return ActionResult(True, False, [{"call": "update_access_key", **command}],
                            f"{key_id} {status}", after)  # fmt: skip

    def _owner(self, key_id: str) -> str:
        with self._errors(f"access key {key_id}"):
            used = self._iam().get_access_key_last_used(AccessKeyId=key_id)
        owner = used.get("UserName")
        if not owner:
            raise NotFound(f"access key {key_id} belongs to no IAM user (a root or temporary key)")
        return owner

    def _iam(self) -> IAMClient:
        if self._client is None:
            session = boto3.session.Session(
                aws_access_key_id=self.access_key_id,
                aws_secret_access_key=self._secret_access_key,
                region_name=self.region,
            )
            config = Config(connect_timeout=TIMEOUT_S, read_timeout=TIMEOUT_S,
                            retries={"mode": "standard", "max_attempts": 2})  # fmt: skip
            try:
                self._client = session.client("iam", endpoint_url=self.endpoint_url,
                                              config=config)  # fmt: skip
            except (BotoCoreError, ValueError) as exc:
                raise CloudError(f"cannot set up the IAM client: {type(exc).__name__}") from None
        return self._client

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """botocore's errors turned into Vigil's kinds, naming what was asked for."""
        where = self.endpoint_url or "IAM"
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code == "NoSuchEntity":
                raise NotFound(f"no {what} in {where}") from None
            if code in REFUSED:
                raise CloudError(f"{where} refused the credentials ({code}) for {what}") from None
            if code in ("Throttling", "ThrottlingException", "RequestLimitExceeded"):
                raise CloudError(f"{where} is throttling Vigil ({code})", 30.0) from None
            message = str(error.get("Message", ""))[:300]
            raise CloudError(f"{where} failed on {what}: {code} {message}") from None
        except BotoCoreError as exc:  # no credentials, endpoint unreachable, timeouts
            raise CloudError(f"cannot reach {where}: {type(exc).__name__}") from None


def _key_id(text: str) -> str:
    if not KEY_ID.fullmatch(text):
        raise InputError(f"not an AWS access key id: {text!r}")
    return text


def _user(text: str) -> str:
    if not USER_NAME.fullmatch(text):
        raise InputError(f"not an IAM user name: {text!r}")
    return text


__all__ = ["CloudError", "CloudKeys"]
