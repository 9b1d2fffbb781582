"""Every route of the console, walked from the app itself (a page added later is covered
without a line here): without a session a page sends the browser to sign in and a post
changes nothing; with a session, a post without the anti-forgery value is refused, and
every answer carries the Content-Security-Policy."""

from __future__ import annotations

import re

from fastapi.routing import APIRoute, iter_route_contexts

OPEN = {"/", "/console/login"}  # the way in


def console_routes(app) -> list[tuple[str, str]]:
    found = []
    for route in iter_route_contexts(app.routes):
        original = route.original_route
        if not isinstance(original, APIRoute) or original.include_in_schema:
            continue
        path = re.sub(r"\{[^}:]+(:path)?\}", "x", route.path)
        found += [(method, path) for method in route.methods or () if route.path not in OPEN]
    return sorted(found)


def test_every_console_route_needs_a_session_and_posts_need_the_anti_forgery_value(
    console,
) -> None:
    routes = console_routes(console.client.app)
    assert ("GET", "/console/") in routes and ("POST", "/console/logout") in routes
    for method, path in routes:
        answer = console.client.request(method, path, follow_redirects=False)
        assert answer.status_code == 303, (method, path, answer.status_code)
        assert answer.headers["location"].startswith("/console/login"), (method, path)
    console.sign_in("admin")
    for method, path in routes:
        if method != "POST":
            continue
        answer = console.client.post(path, data={"x": "1"}, follow_redirects=False)
        assert answer.status_code == 403, (path, answer.status_code)
        assert "anti-forgery" in answer.text, path
        assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert console.get("/console/").status_code == 200  # still signed in: nothing happened
