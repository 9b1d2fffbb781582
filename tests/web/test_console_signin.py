"""Console sign-in: a token exchanged for a session cookie (HttpOnly, SameSite=Strict), a
sign-in form that cannot be posted from elsewhere, posts refused without the session's
anti-forgery value or from another origin, roles exactly as in the API, sign-out and expiry,
a revoked token ending its sessions, and the security headers on every page."""

from __future__ import annotations

import re
import time

from vigil.api.auth import TokenStore


def test_a_page_without_a_session_goes_to_sign_in_and_back(console) -> None:
    away = console.get("/console/?days=7", follow_redirects=False)
    assert away.status_code == 303
    assert away.headers["location"] == "/console/login?next=/console/%3Fdays%3D7"
    form = console.get(away.headers["location"])
    assert 'name="next" value="/console/?days=7"' in form.text


def test_sign_in_sets_a_strict_http_only_cookie_and_csp(console) -> None:
    console.sign_in("analyst")
    cookie = console.client.cookies.get("vigil_session")
    assert cookie and len(cookie) >= 40
    page = console.get("/console/")
    assert page.status_code == 200 and "analyst-user · analyst" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert "<script>" not in page.text and " style=" not in page.text  # nothing inline
    # the cookie as sent: HttpOnly, SameSite=Strict, not Secure on plain HTTP
    console.client.cookies.clear()
    form = console.get("/console/login")
    value = re.search(r'name="signin" value="([^"]+)"', form.text).group(1)
    done = console.client.post(
        "/console/login",
        data={"token": console.tokens["viewer"], "signin": value},
        follow_redirects=False,
    )
    set_cookie = done.headers["set-cookie"].lower()
    assert "vigil_session=" in set_cookie and "httponly" in set_cookie
    assert "samesite=strict" in set_cookie and "path=/console" in set_cookie


def test_bad_tokens_and_forged_sign_in_are_refused(console) -> None:
    form = console.get("/console/login")
    value = re.search(r'name="signin" value="([^"]+)"', form.text).group(1)
    forged = {"token": "vgl_" + "x" * 43, "signin": value}
    wrong = console.client.post("/console/login", data=forged)
    assert wrong.status_code == 401 and "that token is not valid" in wrong.text
    value = re.search(r'name="signin" value="([^"]+)"', wrong.text).group(1)  # a fresh form
    ingest = console.client.post(
        "/console/login", data={"token": console.tokens["ingest"], "signin": value}
    )
    assert ingest.status_code == 401 and "the ingest role has no console" in ingest.text
    value = re.search(r'name="signin" value="([^"]+)"', ingest.text).group(1)
    console.client.cookies.clear()  # a page elsewhere posting the form has no sign-in cookie
    forged = console.client.post(
        "/console/login", data={"token": console.tokens["admin"], "signin": value}
    )
    assert forged.status_code == 403 and "vigil_session" not in console.client.cookies


def test_posts_need_the_anti_forgery_value_and_this_origin(console) -> None:
    console.sign_in("analyst")
    bare = console.client.post("/console/logout", follow_redirects=False)
    assert bare.status_code == 403 and "anti-forgery" in bare.text
    wrong = console.client.post("/console/logout", data={"csrf": "nope"}, follow_redirects=False)
    assert wrong.status_code == 403
    elsewhere = console.client.post(
        "/console/logout",
        data={"csrf": console.csrf},
        headers={"origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert elsewhere.status_code == 403
    assert console.get("/console/").status_code == 200  # still signed in
    out = console.post("/console/logout")
    assert out.status_code == 303 and out.headers["location"] == "/console/login"
    assert console.get("/console/", follow_redirects=False).status_code == 303


def test_sign_out_ends_the_session_even_with_the_old_cookie(console) -> None:
    console.sign_in("viewer")
    kept = console.client.cookies.get("vigil_session")
    console.post("/console/logout")
    console.client.cookies.set("vigil_session", kept, path="/console")
    assert console.get("/console/", follow_redirects=False).status_code == 303


def test_expired_idle_and_revoked_sessions_end(console) -> None:
    sessions = console.service  # the service's engine holds the sessions
    console.sign_in("analyst")
    assert console.get("/console/").status_code == 200
    from vigil.store.tables import console_session_table

    with sessions.engine.begin() as conn:  # as if signed in 13 hours ago
        conn.execute(console_session_table.update().values(expires=time.time() - 1))
    time.sleep(1.1)  # past what a session found valid is believed
    assert console.get("/console/", follow_redirects=False).status_code == 303

    console.sign_in("analyst")
    with sessions.engine.begin() as conn:  # unused for longer than idle_s
        conn.execute(console_session_table.update().values(seen=time.time() - 7200))
    time.sleep(1.1)
    assert console.get("/console/", follow_redirects=False).status_code == 303

    console.sign_in("analyst")
    store = TokenStore(sessions.engine)
    (info,) = [t for t in store.list() if t.name == "analyst-user"]
    store.revoke(info.id)
    time.sleep(1.1)
    assert console.get("/console/", follow_redirects=False).status_code == 303


def test_pages_follow_the_api_roles(console) -> None:
    console.sign_in("viewer")
    page = console.get("/console/")
    assert 'href="/console/hunt"' not in page.text  # a viewer may not run hunts
    assert console.get("/console/hunt").status_code in (403, 404)
    console.sign_in("analyst")
    assert 'href="/console/hunt"' in console.get("/console/").text


def test_static_files_are_the_pinned_ones(console) -> None:
    htmx = console.get("/console/static/htmx-2.0.11.min.js")
    assert htmx.status_code == 200 and b"htmx" in htmx.content[:2000]
    assert "javascript" in htmx.headers["content-type"]
    assert console.get("/console/static/../server.py").status_code == 404


def test_under_tls_the_cookie_is_secure(tmp_path) -> None:
    from console_client import browser

    from vigil.config import Settings
    from vigil.serve.service import Service
    from vigil.web.server import build_app

    settings = Settings(
        data_dir=tmp_path,
        indicators=False,
        starter_rules=False,
        pipeline={"workers": 0},
        api={"tls_cert": tmp_path / "cert.pem", "tls_key": tmp_path / "key.pem"},
    )
    service = Service(settings)
    made = browser(build_app(service), service)
    made.client.base_url = "https://testserver"
    with made.client:
        form = made.get("/console/login")
        value = re.search(r'name="signin" value="([^"]+)"', form.text).group(1)
        assert "secure" in form.headers["set-cookie"].lower()
        done = made.client.post(
            "/console/login",
            data={"token": made.tokens["analyst"], "signin": value},
            follow_redirects=False,
        )
        assert done.status_code == 303
        assert "; secure" in done.headers["set-cookie"].lower()


def test_the_console_can_be_turned_off(tmp_path) -> None:
    from console_client import browser

    from vigil.config import Settings
    from vigil.serve.service import Service
    from vigil.web.server import build_app

    service = Service(
        Settings(
            data_dir=tmp_path,
            indicators=False,
            starter_rules=False,
            pipeline={"workers": 0},
            console={"enabled": False},
        )
    )
    made = browser(build_app(service), service)
    with made.client:
        assert made.get("/console/login").status_code == 404
        assert made.get("/health").status_code == 200


def test_bodies_are_bounded_before_anyone_is_known(console) -> None:
    form = console.get("/console/login")
    value = re.search(r'name="signin" value="([^"]+)"', form.text).group(1)
    huge = console.client.post("/console/login", data={"token": "x" * (2 << 20), "signin": value})
    assert huge.status_code == 413
    console.sign_in("analyst")

    def chunks():  # a file past the API's limit (32 MiB), sent without a declared length
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'
        for _ in range(40):
            yield b"x" * (1 << 20)
        yield b"\r\n--b--\r\n"

    upload = console.client.post(
        "/console/incidents/INC-x/evidence",
        content=chunks(),
        headers={"x-csrf-token": console.csrf, "content-type": "multipart/form-data; boundary=b"},
    )
    assert upload.status_code == 413


def test_errors_under_the_console_are_pages(console) -> None:
    console.sign_in("viewer")
    for path, status in (("/console/nowhere", 404), ("/console/incidents?offset=-1", 400)):
        answer = console.get(path)
        assert answer.status_code == status, (path, answer.text)
        assert answer.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert console.get("/api/v1/nowhere").json()["error"] == 404  # the API answers as ever


def test_signing_in_again_ends_the_session_it_replaces(console) -> None:
    console.sign_in("analyst")
    old = console.client.cookies.get("vigil_session")
    form = console.get("/console/login")
    value = re.search(r'name="signin" value="([^"]+)"', form.text).group(1)
    console.client.post(
        "/console/login",
        data={"token": console.tokens["viewer"], "signin": value},
        follow_redirects=False,
    )
    assert console.get("/console/").status_code == 200
    time.sleep(1.1)
    console.client.cookies.set("vigil_session", old, path="/console")
    assert console.get("/console/", follow_redirects=False).status_code == 303


def test_behind_a_tls_proxy_cookies_are_secure_and_its_origin_is_taken(tmp_path) -> None:
    from console_client import browser

    from vigil.config import Settings
    from vigil.serve.service import Service
    from vigil.web.server import build_app

    settings = Settings(
        data_dir=tmp_path,
        indicators=False,
        starter_rules=False,
        pipeline={"workers": 0},
        console={"secure_cookies": True, "origins": ["https://vigil.example.org"]},
    )
    service = Service(settings)
    made = browser(build_app(service), service)
    made.client.base_url = "https://testserver"
    with made.client:
        made.sign_in("analyst")
        page = made.get("/console/")
        assert page.headers["strict-transport-security"].startswith("max-age=")
        proxied = made.client.post(
            "/console/logout",
            data={"csrf": made.csrf},
            headers={"origin": "https://vigil.example.org"},
            follow_redirects=False,
        )
        assert proxied.status_code == 303  # the proxy's origin is this console's
        made.sign_in("analyst")
        other = made.client.post(
            "/console/logout",
            data={"csrf": made.csrf},
            headers={"origin": "https://other.example.org"},
            follow_redirects=False,
        )
        assert other.status_code == 403
