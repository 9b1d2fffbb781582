"""The identity-provider connector (Okta's Management API, over `httpx`): suspend an account
and unsuspend it again (its undo), and end every session the account has open (no undo: a
signed-out user signs in again).

    idp = IdentityProvider("https://corp.okta.com", token)   # an API token (SSWS)
    idp.suspend("alice@corp.example")    # by login or by Okta user id
    idp.clear_sessions("alice@corp.example")
    idp.unsuspend("alice@corp.example")
    idp.state("alice@corp.example")      # {"id": …, "login": …, "status": "ACTIVE"}

Suspending and unsuspending are idempotent: the account's status is read first and a change
that is already made is not asked for again (Okta answers 400 E0000001 to suspending an
account that is not ACTIVE). Unknown accounts raise NotFound; a refused token, an outage or a
network failure raise IdentityProviderError (an Unavailable) that never carries the token. In
dry-run no request at all is sent: the requests are only returned.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from vigil.errors import Conflict, InputError, NotFound, Unavailable
from vigil.respond.result import ActionResult

USERS = "/api/v1/users"
ERROR_BODY_CHARS = 300  # of Okta's errorSummary, in an error message


class IdentityProviderError(Unavailable):
    """The identity provider could not be reached, refused the token, or failed."""


class IdentityProvider:
    def __init__(
        self, url: str, token: str, *, dry_run: bool = False, timeout_s: float = 10.0
    ) -> None:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"not an identity provider URL: {url!r}")
        if not token or any(c in token for c in "\r\n"):
            raise InputError("the identity provider's API token is empty or not one line")
        self.url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self.host = parts.hostname
        self._token = token
        self.dry_run = dry_run
        self.timeout_s = timeout_s

    def __repr__(self) -> str:  # never the token
        return f"IdentityProvider({self.url!r}, dry_run={self.dry_run})"

    # --- actions and their undo --------------------------------------------------------------

    def suspend(self, user: str) -> ActionResult:
        """The account can no longer sign in (its sessions stay: see `clear_sessions`)."""
        return self._lifecycle(user, "suspend", done=("SUSPENDED", "DEPROVISIONED"))

    def unsuspend(self, user: str) -> ActionResult:
        """Undo `suspend`: the account is ACTIVE again."""
        return self._lifecycle(user, "unsuspend", done=("ACTIVE",))

    def clear_sessions(self, user: str) -> ActionResult:
        """End every session the account has open; it has to sign in again."""
        command = self._command("DELETE", f"{self._path(user)}/sessions")
        if self.dry_run:
            return ActionResult(True, True, [command], "dry run: nothing sent")
        response = self._send(command, user)
        return ActionResult(True, False, [command], _status_line(response), self.state(user))

    def state(self, user: str) -> dict[str, Any]:
        response = self._send(self._command("GET", self._path(user)), user)
        body = _json(response)
        profile = body.get("profile")
        login = profile.get("login") if isinstance(profile, dict) else None
        return {"id": body.get("id"), "login": login, "status": body.get("status")}

    # --- the requests ------------------------------------------------------------------------

    def _lifecycle(self, user: str, operation: str, *, done: tuple[str, ...]) -> ActionResult:
        command = self._command("POST", f"{self._path(user)}/lifecycle/{operation}")
        if self.dry_run:
            return ActionResult(True, True, [command], "dry run: nothing sent")
        before = self.state(user)
        if before["status"] in done:
            return ActionResult(True, False, [], "already so", before)
        try:
            response = self._send(command, user)
        except Conflict:
            after = self.state(user)  # changed meanwhile (by someone else): done all the same
            if after["status"] in done:
                return ActionResult(True, False, [], "already so", after)
            raise
        return ActionResult(True, False, [command], _status_line(response), self.state(user))

    def _path(self, user: str) -> str:
        if not user.strip() or len(user) > 256 or any(ord(c) < 32 or ord(c) == 127 for c in user):
            raise InputError(f"not an account login or id: {user!r}")
        return f"{USERS}/{quote(user, safe='')}"

    def _command(self, method: str, path: str) -> dict[str, Any]:
        return {"method": method, "url": f"{self.url}{path}"}

    def _send(self, command: dict[str, Any], user: str) -> httpx.Response:
        headers = {
            "Authorization": f"SSWS {self._token}",
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        try:
            with httpx.Client(timeout=self.timeout_s, follow_redirects=False) as client:
                response = client.request(command["method"], command["url"], headers=headers)
        except httpx.HTTPError as exc:
            raise IdentityProviderError(
                f"cannot reach the identity provider at {self.host}: {type(exc).__name__}"
            ) from None
        if response.is_success:
            return response
        summary = _summary(response)
        status = response.status_code
        if status == 404:
            raise NotFound(f"no account {user!r} at the identity provider {self.host}")
        if status in (401, 403):
            raise IdentityProviderError(
                f"the identity provider {self.host} refused the API token ({status}: {summary})"
            )
        if status == 400:  # E0000001: the account's status does not allow this operation
            raise Conflict(f"the identity provider {self.host} refused to change {user!r}: "
                           f"{summary}")  # fmt: skip
        if status == 429:
            raise IdentityProviderError(
                f"the identity provider {self.host} is rate-limiting Vigil ({summary})",
                _retry_after(response),
            )
        raise IdentityProviderError(f"the identity provider {self.host} failed ({status}: "
                                    f"{summary})")  # fmt: skip


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _summary(response: httpx.Response) -> str:
    """Okta's error body (`errorCode`, `errorSummary`, `errorCauses`) in one short line."""
    body = _json(response)
    text = " ".join(str(body.get(k, "")) for k in ("errorCode", "errorSummary")).strip()
    causes = body.get("errorCauses")
    if isinstance(causes, list):
        text += "".join(f"; {c.get('errorSummary')}" for c in causes if isinstance(c, dict))
    return (text or response.reason_phrase)[:ERROR_BODY_CHARS]


def _status_line(response: httpx.Response) -> str:
    return f"{response.status_code} {response.reason_phrase}"


def _retry_after(response: httpx.Response) -> float:
    """Okta says when its rate limit resets (X-Rate-Limit-Reset, epoch seconds)."""
    try:
        return max(1.0, float(response.headers["X-Rate-Limit-Reset"]) - time.time())
    except (KeyError, ValueError):
        return 30.0


__all__ = ["IdentityProvider", "IdentityProviderError"]
