"""The console assembled on the API's app: its pages under /console (the routers of
`vigil.web.pages`), its vendored files under /console/static, sign-in and sign-out, its error
pages and its security headers."""

# No `from __future__ import annotations`: FastAPI reads the routes' signatures.
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, cast
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from vigil.api.context import Context
from vigil.errors import Forbidden, NotFound, VigilError
from vigil.web import pages
from vigil.web.console import (
    COOKIE,
    HERE,
    LOGIN_COOKIE,
    PREFIX,
    Console,
    SecurityHeaders,
    SignIn,
    local,
)
from vigil.web.sessions import ConsoleSessions, Session


def mount(
    app: FastAPI,
    context: Context,
    sessions: ConsoleSessions,
    *,
    secure: bool,
    origins: Sequence[str] = (),
) -> Console:
    """The console on the API's app: its pages under /console, its files under
    /console/static, its error pages and security headers."""
    console = Console(context, sessions, secure, tuple(origins))
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.include_router(_frame(console))
    for page in pages.ROUTERS:
        app.include_router(page(console))
    _errors(app, console)
    app.add_middleware(SecurityHeaders, hsts=secure)
    return console


def _frame(console: Console) -> APIRouter:
    routes = console.routes()
    sessions = console.sessions

    @routes.get("/")
    def root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    @routes.get(f"{PREFIX}/login")
    def login_page(request: Request, next: str = f"{PREFIX}/") -> HTMLResponse:
        value = secrets.token_urlsafe(24)
        page = console.render(request, None, "login.html", signin=value, next=local(next))
        _cookie(page, console, LOGIN_COOKIE, value, 600)
        return page

    @routes.post(f"{PREFIX}/login")
    async def login(
        request: Request,
        token: Annotated[str, Form(max_length=200)],
        signin: Annotated[str, Form(max_length=100)] = "",
        next: Annotated[str, Form(max_length=2000)] = f"{PREFIX}/",
    ) -> Response:
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not hmac.compare_digest(signin.encode(), expected.encode()):
            raise HTTPException(403, "the sign-in form has expired: load it again")
        if not console.same_origin(request):
            raise HTTPException(403, "the form's anti-forgery value is missing or wrong")
        try:
            secret, session = await run_in_threadpool(
                sessions.sign_in, token, request.cookies.get(COOKIE, "")
            )
        except Forbidden as exc:
            value = secrets.token_urlsafe(24)
            page = console.render(
                request, None, "login.html", 401, signin=value, next=local(next), problem=str(exc)
            )
            _cookie(page, console, LOGIN_COOKIE, value, 600)
            return page
        answer = console.back(local(next))
        _cookie(answer, console, COOKIE, secret, int(session.expires - time.time()))
        answer.delete_cookie(LOGIN_COOKIE, path=PREFIX)
        return answer

    @routes.post(f"{PREFIX}/logout")
    async def logout(
        session: Annotated[Session, Depends(console.writer("incidents:read"))],
    ) -> Response:
        await run_in_threadpool(sessions.sign_out, session.id)
        answer = console.back(f"{PREFIX}/login")
        answer.delete_cookie(COOKIE, path=PREFIX, secure=console.secure, httponly=True)
        return answer

    return routes


def _cookie(response: Response, console: Console, name: str, value: str, age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max(age, 1),
        path=PREFIX,
        httponly=True,
        secure=console.secure,
        samesite="strict",
    )


def _errors(app: FastAPI, console: Console) -> None:
    """Under /console, errors are pages (and a missing session a trip to sign-in); the
    API's own answers elsewhere are left as they are."""
    handler = Callable[[Request, Exception], Awaitable[Response]]  # the API's are coroutines
    api_http = cast(handler, app.exception_handlers[HTTPException])
    api_vigil = cast(handler, app.exception_handlers[VigilError])

    async def signin(request: Request, _: Exception) -> Response:
        target = f"{PREFIX}/login?next={quote(local(str(request.url.path) + _query(request)))}"
        if request.headers.get("hx-request"):
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    async def http_error(request: Request, exc: Exception) -> Response:
        if not request.url.path.startswith(PREFIX) or not isinstance(exc, HTTPException):
            return await api_http(request, exc)
        return _problem(request, exc.status_code, str(exc.detail))

    async def vigil_error(request: Request, exc: Exception) -> Response:
        if not request.url.path.startswith(PREFIX) or not isinstance(exc, VigilError):
            return await api_vigil(request, exc)
        from vigil.api.app import status_of

        return _problem(request, status_of(exc), str(exc))

    def _problem(request: Request, status: int, detail: str) -> Response:
        return console.render(request, None, "problem.html", status, code=status, detail=detail)

    api_invalid = cast(handler, app.exception_handlers[RequestValidationError])

    async def invalid(request: Request, exc: Exception) -> Response:
        if not request.url.path.startswith(PREFIX) or not isinstance(exc, RequestValidationError):
            return await api_invalid(request, exc)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return _problem(request, 400, f"the request is not valid ({problems})")

    async def routing(request: Request, exc: Exception) -> Response:
        """Starlette's own answers (no such page, method not allowed, body too large)."""
        assert isinstance(exc, StarletteHTTPException)
        if request.url.path.startswith(PREFIX):
            return _problem(request, exc.status_code, str(exc.detail))
        return await api_http(request, HTTPException(exc.status_code, exc.detail, exc.headers))

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, routing)
    app.add_exception_handler(SignIn, signin)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(VigilError, vigil_error)
    app.add_exception_handler(NotFound, vigil_error)


def _query(request: Request) -> str:
    return f"?{request.url.query}" if request.url.query else ""
