"""The console's frame: sign-in and sessions, the anti-forgery check, the security headers,
the templates and the vendored static files, and the pages' routers (one module per page,
each `router(console) -> APIRouter`, like the API's domains).

Every page reads through the API's `Context` (the same backend, the same permissions), so
the console has no second path to the data: a page is a route that renders HTML instead of
JSON. Pages are server-rendered (Jinja2, autoescaped); htmx (one pinned file) swaps parts of
them, server-sent events keep the overview live, and no script is inline: the
Content-Security-Policy allows scripts from Vigil only.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' signatures, whose
# `Depends(...)` refer to closures of `Console`.
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode, urlsplit

import jinja2
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse

from vigil.api.context import Context
from vigil.web import charts
from vigil.web.sessions import ConsoleSessions, Session

HERE = Path(__file__).parent
PREFIX = "/console"
COOKIE = "vigil_session"
LOGIN_COOKIE = "vigil_signin"  # the sign-in form's anti-forgery value (no session yet)
HTMX = "htmx-2.0.11.min.js"
# What a console form may hold: read before anything else (even before the session is
# known), so it is small; the two uploads (evidence, exercise results) take the API's limit.
FORM_BYTES = 1 << 20
FORM_LIMITS = {"max_fields": 100, "max_files": 0, "max_part_size": FORM_BYTES}
UPLOAD_LIMITS = {"max_fields": 10, "max_files": 1, "max_part_size": FORM_BYTES}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}
# The pages in the navigation: (path, title, the permission that shows it)
NAV = (
    ("/console/", "Overview", "incidents:read"),
    ("/console/incidents", "Incidents", "incidents:read"),
    ("/console/alerts", "Alerts", "alerts:read"),
    ("/console/hunt", "Hunt", "hunts:run"),
    ("/console/coverage", "Coverage", "rules:read"),
    ("/console/assets", "Assets", "assets:read"),
    ("/console/zerotrust", "Zero Trust", "playbooks:read"),
    ("/console/intel", "Intel", "indicators:read"),
)


class SignIn(Exception):
    """No live session: the browser is sent to the sign-in page."""


@dataclass
class Console:
    context: Context
    sessions: ConsoleSessions
    secure: bool  # cookies marked Secure (served over TLS, or behind a TLS proxy)
    origins: tuple[str, ...] = ()  # origins posts may come from besides this Host
    env: jinja2.Environment = field(init=False)

    def __post_init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,  # every value is text unless marked Markup by Vigil itself
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals.update(charts=charts, nav=NAV, htmx=HTMX, quote=quote)
        self.env.filters.update(when=when, ago=ago, seconds=seconds, number=number)

    @property
    def backend(self) -> Any:
        return self.context.backend

    def routes(self) -> APIRouter:
        """A page's router: out of the OpenAPI document, its bodies small (see FORM_BYTES)."""
        return APIRouter(
            include_in_schema=False,
            max_body_size=FORM_BYTES,
            form_limits=FORM_LIMITS,  # type: ignore[arg-type]
        )

    def upload(self) -> dict[str, Any]:
        """A route's keywords for a form with one file, as large as the API takes."""
        return {"max_body_size": self.context.limits.max_bytes, "form_limits": UPLOAD_LIMITS}

    # --- who is asking -------------------------------------------------------------------

    async def session(self, request: Request) -> Session:
        """The signed-in session behind the request's cookie; SignIn without one."""
        return await self._session(request, touch=True)

    async def watching(self, request: Request) -> Session:
        """As `session`, but the request does not count as use (a live stream open in a
        tab does not keep an unattended session from its idle end)."""
        return await self._session(request, touch=False)

    async def _session(self, request: Request, *, touch: bool) -> Session:
        secret = request.cookies.get(COOKIE, "")
        found = self.sessions.known(secret)
        if found is None and secret:
            found = await run_in_threadpool(self.sessions.find, secret, touch=touch)
        if found is None:
            raise SignIn()
        return found

    def reader(self, permission: str, *, touch: bool = True) -> Callable[..., Awaitable[Session]]:
        """A page's dependency: a session whose role holds `permission` (403 otherwise)."""
        who = self.session if touch else self.watching

        async def check(session: Annotated[Session, Depends(who)]) -> Session:
            if not session.may(permission):
                raise HTTPException(403, f"the {session.principal.role} role may not {permission}")
            return session

        return check

    def writer(self, permission: str) -> Callable[..., Awaitable[Session]]:
        """A form's dependency: as `reader`, and the request must carry the session's
        anti-forgery value (form field `csrf` or header X-CSRF-Token) and come from this
        origin. Checked before the role, so a forged post learns nothing."""

        async def check(
            request: Request, session: Annotated[Session, Depends(self.session)]
        ) -> Session:
            sent = request.headers.get("x-csrf-token", "")
            if not sent and request.headers.get("content-type", "").startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")
            ):
                value = (await request.form()).get("csrf", "")
                sent = value if isinstance(value, str) else ""
            if not hmac.compare_digest(
                sent.encode(), session.csrf.encode()
            ) or not self.same_origin(request):
                raise HTTPException(403, "the form's anti-forgery value is missing or wrong")
            if not session.may(permission):
                raise HTTPException(403, f"the {session.principal.role} role may not {permission}")
            return session

        return check

    # --- answers ------------------------------------------------------------------------

    def render(
        self,
        request: Request,
        session: Session | None,
        template: str,
        status: int = 200,
        **values: Any,
    ) -> HTMLResponse:
        page = self.env.get_template(template).render(
            request=request,
            session=session,
            csrf=session.csrf if session is not None else "",
            path=request.url.path,
            query=request.query_params,
            **values,
        )
        return HTMLResponse(page, status_code=status)

    def same_origin(self, request: Request) -> bool:
        """A request without Origin (an older browser, a same-origin GET) passes; one with
        an Origin must name this Host, or one of the `origins` configured (a proxy that
        does not pass the Host it was asked for)."""
        origin = request.headers.get("origin")
        if origin is None:
            return True
        if origin in self.origins:
            return True
        return origin != "null" and urlsplit(origin).netloc == request.headers.get("host", "")

    def back(self, to: str) -> RedirectResponse:
        """After a form: to the page it came from (POST, redirect, GET)."""
        return RedirectResponse(to, status_code=303)


def relink(request: Request, **changed: object) -> str:
    """This page with some query values changed, the others kept (an empty value or a
    zero offset left out): a second pager's links."""
    query = {**request.query_params, **{k: str(v) for k, v in changed.items()}}
    return f"{request.url.path}?{urlencode({k: v for k, v in query.items() if v not in ('', '0')})}"


def local(target: str) -> str:
    """Only a path of this console may follow sign-in (never another site)."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(f"{PREFIX}/"):
        return f"{PREFIX}/"
    return parts.path + (f"?{parts.query}" if parts.query else "")


class SecurityHeaders:
    """The console's answers carry the Content-Security-Policy and the other browser
    guards; static files may be cached."""

    def __init__(self, app: Any, hsts: bool = False) -> None:
        self.app = app
        self.headers = dict(HEADERS)
        if hsts:  # served over TLS (here or by a proxy): browsers keep to it for a year
            self.headers["strict-transport-security"] = "max-age=31536000"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == "/" or path.startswith(PREFIX)):
            await self.app(scope, receive, send)
            return
        static = path.startswith(f"{PREFIX}/static/")

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if not (static and k.lower() == b"cache-control")
                ]
                for name, value in self.headers.items():
                    if static and name == "cache-control":
                        value = "public, max-age=86400"
                    headers.append((name.encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, sending)


# --- filters --------------------------------------------------------------------------------


def when(value: float | None) -> str:
    """A time as UTC, to the second."""
    if value is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(value)))


def ago(value: float | None) -> str:
    if value is None:
        return "—"
    return seconds(time.time() - float(value)) + " ago"


def seconds(value: float | None) -> str:
    """A duration, in the unit that reads best."""
    if value is None:
        return "—"
    value = float(value)
    if abs(value) < 1:
        return f"{value * 1000:.0f} ms"
    if abs(value) < 120:
        return f"{value:.1f} s"
    if abs(value) < 7200:
        return f"{value / 60:.0f} min"
    if abs(value) < 172800:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} d"


def number(value: float | int | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


__all__ = ["Console", "SignIn"]
