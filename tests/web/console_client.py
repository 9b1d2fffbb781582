"""A signed-in console in a test: a real service, its app (API and console) in Starlette's
TestClient, and one token per role. `Browser.sign_in(role)` goes through the real sign-in
form and returns the page's anti-forgery value for posts."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient

from vigil.api.auth import TokenStore

ROLES = ("admin", "analyst", "responder", "viewer", "ingest")


@dataclass
class Browser:
    client: TestClient
    tokens: dict[str, str]
    csrf: str = ""
    role: str = ""
    service: Any = field(default=None)

    def sign_in(self, role: str) -> str:
        """Signs in with `role`'s token through the form; the session's anti-forgery value."""
        self.client.cookies.clear()
        form = self.client.get("/console/login")
        signin = re.search(r'name="signin" value="([^"]+)"', form.text)
        assert signin, form.text
        done = self.client.post(
            "/console/login",
            data={"token": self.tokens[role], "signin": signin.group(1), "next": "/console/"},
            follow_redirects=False,
        )
        assert done.status_code == 303, done.text
        page = self.client.get("/console/")
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found, page.text
        self.csrf, self.role = found.group(1), role
        return self.csrf

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, **kw)

    def post(self, path: str, data: dict[str, Any] | None = None, **kw: Any) -> Any:
        """A form post with the session's anti-forgery value (as a browser sends it)."""
        return self.client.post(
            path, data={**(data or {}), "csrf": self.csrf}, follow_redirects=False, **kw
        )


def browser(app: Any, service: Any) -> Browser:
    store = TokenStore(service.engine)
    tokens = {role: store.create(role, f"{role}-user")[0] for role in ROLES}
    return Browser(TestClient(app, base_url="http://testserver"), tokens, service=service)
