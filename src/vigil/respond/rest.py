"""The generic REST connector (an EDR, a ticketing system, anything with an HTTP API, over
`httpx`): one request under a fixed base URL, its answer checked against the status codes
and the JSON values expected of it.

    edr = RestCall(base_url="https://edr.corp/api/v2", auth={"bearer": token})
    edr.request("POST", "hosts/h-42/contain", json={"reason": "INC-7"},
                expect={"/state": "contained"}, idempotency_key="INC-7-contain")
    edr.request("GET", "hosts/h-42", expect={"/state": "contained"})   # ActionResult

`auth` is one of `{"bearer": token}`, `{"basic": [user, password]}` or `{"header": [name,
value]}`. A path stays under the base URL: an absolute URL, another host or a `..` that climbs
out is refused (InputError) before anything is sent, and redirects are not followed. An
unexpected status or value gives `ok=False` with the reason (not an exception); only an
unreachable server raises RestError (an Unavailable). The commands and the output never carry
a secret: authentication headers are shown as `***` and their values are blanked from the
answer. `Idempotency-Key` is sent when given. In dry-run nothing is sent.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import orjson

from vigil.errors import InputError, Unavailable
from vigil.respond.result import ActionResult

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
OUTPUT_BYTES = 4096  # of the answer's body, in the result
BODY_BYTES = 1 << 20  # read at most this much of an answer (to check its JSON)
REDACTED = "***"
# headers whose values are secrets wherever they come from (the auth header is added to these)
SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key",
                  "x-auth-token", "private-token"}  # fmt: skip


class RestError(Unavailable):
    """The server could not be reached or did not answer in time."""


class RestCall:
    def __init__(
        self,
        *,
        base_url: str,
        auth: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        dry_run: bool = False,
        timeout_s: float = 10.0,
        verify: bool | str = True,
    ) -> None:
        base = urlsplit(base_url.strip())
        if base.scheme not in ("http", "https") or not base.hostname:
            raise InputError(f"not an http(s) base URL: {base_url!r}")
        if base.query or base.fragment or base.username or base.password:
            raise InputError("a base URL holds no query, fragment or credentials")
        self.base_url = f"{base.scheme}://{base.netloc}{base.path.rstrip('/')}"
        self.base_path = base.path.rstrip("/")
        self._origin = (base.scheme, base.netloc.lower())
        self.dry_run = dry_run
        self.timeout_s = timeout_s
        self._verify = _verify(verify)
        self._headers = _checked_headers(headers or {})
        self._secret_names = set(SECRET_HEADERS)
        self._secrets: list[str] = []
        if auth is not None:
            name, value, secrets = _auth_header(auth)
            self._headers = {k: v for k, v in self._headers.items() if k.lower() != name.lower()}
            self._headers[name] = value
            self._secret_names.add(name.lower())
            self._secrets.extend(secrets)
        for name, value in self._headers.items():
            if name.lower() in self._secret_names:
                self._secrets.append(value)

    def __repr__(self) -> str:  # never the credentials
        return f"RestCall(base_url={self.base_url!r}, dry_run={self.dry_run})"

    # --- the action --------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        expect_status: Collection[int] = (200, 201, 202, 204),
        expect: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> ActionResult:
        """Send one request to `path` (under the base URL); ok when the status is one of
        `expect_status` and each JSON pointer in `expect` (RFC 6901) holds its value."""
        method = method.upper()
        if method not in METHODS:
            raise InputError(f"not a method Vigil sends: {method!r} (one of {', '.join(METHODS)})")
        url = self._url(path)
        for pointer in expect or {}:
            _tokens(pointer)  # a malformed pointer is refused before anything is sent
        headers = dict(self._headers)
        if idempotency_key is not None:
            headers["Idempotency-Key"] = _one_line("idempotency key", idempotency_key)
        command: dict[str, Any] = {"method": method, "url": url, "headers": self._shown(headers)}
        if params:
            command["params"] = dict(params)
        if json is not None:
            command["json"] = json
        if self.dry_run:
            return ActionResult(True, True, [command], "dry run: nothing sent")

        status, reason, body, truncated = self._send(method, url, headers, json, params)
        text = self._scrubbed(body[:OUTPUT_BYTES].decode("utf-8", "replace"))
        if len(body) > OUTPUT_BYTES or truncated:
            text += f"\n… ({'over ' if truncated else ''}{len(body)} bytes, cut)"
        state: dict[str, Any] = {"status": status}
        if status not in expect_status:
            wanted = "/".join(str(s) for s in expect_status)
            return ActionResult(False, False, [command],
                                f"expected status {wanted}, got {status} {reason}\n{text}",
                                state)  # fmt: skip
        if expect:
            problems, checked = _check(body, truncated, expect)
            state["checked"] = checked
            if problems:
                found = self._scrubbed("\n".join(problems))
                return ActionResult(False, False, [command], f"{found}\n{status} {reason}\n{text}",
                                    state)  # fmt: skip
        return ActionResult(True, False, [command], f"{status} {reason}\n{text}", state)

    # --- the request -------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        """`path` joined to the base URL; refused when it would leave it."""
        if any(ord(c) < 33 or ord(c) == 127 or c == "\\" for c in path) or "#" in path:
            raise InputError(f"not a path under {self.base_url}: {path!r}")
        parts = urlsplit(path)
        if parts.scheme or parts.netloc or path.startswith("//"):
            raise InputError(f"{path!r} leaves {self.base_url}: give a path, not a URL")
        segments = [unquote(s) for s in parts.path.split("/")]
        if any(s in (".", "..") or "/" in s or "\\" in s for s in segments):
            raise InputError(f"{path!r} leaves {self.base_url}: no '.' or '..' segments")
        url = f"{self.base_url}/{path.lstrip('/')}"
        joined = httpx.URL(url)
        if (joined.scheme, joined.netloc.decode("ascii").lower()) != self._origin or not (
            joined.path.startswith(self.base_path + "/") or joined.path == self.base_path
        ):
            raise InputError(f"{path!r} leaves {self.base_url}")
        return url

    def _send(self, method: str, url: str, headers: dict[str, str], json: Any,
              params: Mapping[str, Any] | None) -> tuple[int, str, bytes, bool]:  # fmt: skip
        """Status, reason, body (at most BODY_BYTES) and whether the body was cut."""
        host = urlsplit(url).hostname
        try:
            with (
                httpx.Client(timeout=self.timeout_s, verify=self._verify) as client,
                client.stream(method, url, headers=headers, json=json,
                              params=dict(params) if params else None) as response,
            ):  # fmt: skip
                body = bytearray()
                truncated = False
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > BODY_BYTES:
                        truncated = True
                        break
                return (response.status_code, response.reason_phrase,
                        bytes(body[:BODY_BYTES]), truncated)  # fmt: skip
        except (httpx.HTTPError, OSError) as exc:
            raise RestError(f"cannot reach {host}: {type(exc).__name__}") from None

    def _shown(self, headers: Mapping[str, str]) -> dict[str, str]:
        return {k: REDACTED if k.lower() in self._secret_names else v for k, v in headers.items()}

    def _scrubbed(self, text: str) -> str:
        """An answer that echoes a secret (a debug endpoint, a misconfigured proxy) shows
        `***` in its place."""
        for secret in self._secrets:
            if len(secret) >= 4:
                text = text.replace(secret, REDACTED)
        return text


def _auth_header(auth: Mapping[str, Any]) -> tuple[str, str, list[str]]:
    """The header `auth` stands for, and the secrets in it (to blank them out)."""
    if len(auth) != 1:
        raise InputError("auth is one of {'bearer': …}, {'basic': [user, password]}, "
                         "{'header': [name, value]}")  # fmt: skip
    kind, value = next(iter(auth.items()))
    if kind == "bearer" and isinstance(value, str) and value:
        token = _one_line("bearer token", value)
        return "Authorization", f"Bearer {token}", [token]
    if kind == "basic" and isinstance(value, list | tuple) and len(value) == 2:
        user, password = (_one_line("basic credentials", str(v)) for v in value)
        encoded = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        return "Authorization", f"Basic {encoded}", [encoded, password]
    if kind == "header" and isinstance(value, list | tuple) and len(value) == 2:
        name, secret = (_one_line("auth header", str(v)) for v in value)
        _checked_headers({name: secret})
        return name, secret, [secret]
    raise InputError(f"not an auth Vigil knows: {kind!r} (bearer, basic or header, each with "
                     "its values)")  # fmt: skip


def _checked_headers(headers: Mapping[str, str]) -> dict[str, str]:
    for name, value in headers.items():
        if not name or not all(33 <= ord(c) < 127 and c not in '()<>@,;:\\"/[]?={}' for c in name):
            raise InputError(f"not a header name: {name!r}")
        _one_line(f"header {name}", value)
    return dict(headers)


def _verify(verify: bool | str) -> bool | ssl.SSLContext:
    """True, False, or the path of a CA bundle to trust (read now, so a wrong path is told at
    once)."""
    if isinstance(verify, bool):
        return verify
    try:
        return ssl.create_default_context(cafile=verify)
    except (OSError, ssl.SSLError) as exc:
        raise InputError(f"cannot read the CA bundle {verify!r}: {exc}") from None


def _one_line(what: str, value: str) -> str:
    if not isinstance(value, str) or any((ord(c) < 32 and c != "\t") or ord(c) == 127
                                         for c in value):  # fmt: skip
        raise InputError(f"the {what} is not one line of text")
    return value


# --- JSON pointers (RFC 6901) ------------------------------------------------------------------


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise InputError(f"not a JSON pointer (RFC 6901): {pointer!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def resolve(document: Any, pointer: str) -> Any:
    """The value `pointer` names in `document`; LookupError when it names nothing."""
    current = document
    for key in _tokens(pointer):
        if isinstance(current, dict) and key in current:
            current = current[key]
        elif isinstance(current, list) and _is_index(key, len(current)):
            current = current[int(key)]
        else:
            raise LookupError(f"{pointer!r} names nothing in the document")
    return current


def _is_index(key: str, length: int) -> bool:
    """An element of the array ("-", past the end, and leading zeros name nothing)."""
    return key.isdigit() and (key == "0" or key[0] != "0") and int(key) < length


def _same(found: Any, wanted: Any) -> bool:
    """JSON equality: 1 == 1.0, but true is not 1 and "1" is not 1."""
    if isinstance(found, bool) or isinstance(wanted, bool):
        return type(found) is type(wanted) and found == wanted
    if isinstance(found, int | float) and isinstance(wanted, int | float):
        return found == wanted
    if isinstance(found, dict) and isinstance(wanted, dict):
        return found.keys() == wanted.keys() and all(_same(found[k], wanted[k]) for k in found)
    if isinstance(found, list) and isinstance(wanted, list):
        return len(found) == len(wanted) and all(map(_same, found, wanted))
    return type(found) is type(wanted) and bool(found == wanted)


def _check(
    body: bytes, truncated: bool, expect: Mapping[str, Any]
) -> tuple[list[str], dict[str, Any]]:
    """What does not hold of `expect` in the JSON answer, and the values found."""
    if truncated:
        return [f"the answer is over {BODY_BYTES} bytes: its JSON was not checked"], {}
    try:
        document = orjson.loads(body)
    except ValueError:
        return ["the answer is not JSON: its values cannot be checked"], {}
    problems: list[str] = []
    checked: dict[str, Any] = {}
    for pointer, wanted in expect.items():
        try:
            found = resolve(document, pointer)
        except LookupError:
            problems.append(f"{pointer or '(the whole answer)'}: expected {wanted!r}, missing")
            continue
        checked[pointer] = found
        if not _same(found, wanted):
            problems.append(f"{pointer or '(the whole answer)'}: expected {wanted!r}, got "
                            f"{found!r}"[:500])  # fmt: skip
    return problems, checked


__all__ = ["RestCall", "RestError", "resolve"]
