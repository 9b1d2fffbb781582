"""Continuous verification, end to end: a web application behind `vigil zt proxy`, a user's
session open through it from their workstation; the real Mimikatz recording (LSASS opened on
that workstation, evtx-to-mitre-attack) replayed into `vigil serve` makes the workstation's
risk cross the policy's line through the pipeline (detection, correlation, the zerotrust
stage); within a second of the recording's arrival the user's next request is refused,
and a receiver gets a signed CAEP session-revoked token whose signature (Vigil's JWK set)
and claims the test checks."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import orjson
from joserfc import jwt
from joserfc.jwk import KeySet
from served import MIMIKATZ, MIMIKATZ_HOST, Served, evtx_documents, free_port

from servers import Inbox, in_thread
from vigil.api.auth import TokenStore
from vigil.bus import LocalStream
from vigil.events.records import RiskChange
from vigil.store import state_engine
from vigil.zerotrust.ssf import SESSION_REVOKED

RECORDING = MIMIKATZ
WORKSTATION = MIMIKATZ_HOST  # alice's workstation here
POLICY = {
    "policies": [
        {
            "id": "intranet",
            "subjects": {"users": ["alice"]},
            "resources": {"names": ["intranet"]},
            "actions": ["read", "write"],
            "when": {"max_device_risk": 20},
            "session_s": 3600,
        }
    ]
}


def test_risk_from_a_replayed_attack_ends_the_session_within_a_second(tmp_path, need_data) -> None:
    recording = need_data(*RECORDING)
    policies = tmp_path / "policies.yml"
    policies.write_text(orjson.dumps(POLICY).decode())
    proxy_port = free_port()
    with in_thread(Inbox(page=b"hello intranet")) as app:
        receivers = [
            {
                "id": "proxy",
                "audience": "https://intranet.test",
                "push_url": f"http://127.0.0.1:{proxy_port}/_vigil/ssf",
            },
            {"id": "siem", "audience": "https://siem.test", "push_url": f"{app.url}/ssf"},
        ]
        served = Served(
            tmp_path,
            env={
                "VIGIL_STARTER_RULES": "true",
                "VIGIL_ZEROTRUST__POLICIES": orjson.dumps([str(policies)]).decode(),
                "VIGIL_ZEROTRUST__RECEIVERS": orjson.dumps(receivers).decode(),
            },
        )
        pep = TokenStore(state_engine(served.data)).create("pep", "proxy")[0]
        served.start()
        proxy = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vigil.cli",
                "zt",
                "proxy",
                "--upstream",
                app.url,
                "--resource",
                "intranet",
                "--vigil",
                served.url,
                "--token",
                pep,
                "--port",
                str(proxy_port),
                "--audience",
                "https://intranet.test",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            client = httpx.Client(
                base_url=f"http://127.0.0.1:{proxy_port}",
                timeout=5,
                headers={"X-Forwarded-User": "alice", "X-Device-Id": WORKSTATION},
            )
            deadline = time.monotonic() + 30
            while True:
                try:
                    first = client.get("/")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the proxy did not start"
                    time.sleep(0.1)
            assert first.status_code == 200 and first.text == "hello intranet"
            session = client.cookies["vigil_zt"]
            assert client.get("/").status_code == 200  # in the session
            stranger = httpx.get(
                f"http://127.0.0.1:{proxy_port}/", headers={"X-Forwarded-User": "mallory"}
            )
            assert stranger.status_code == 403

            assert served.ingest(evtx_documents(recording)).status_code in (200, 202)
            sent_at = time.time()  # the events are in Vigil: the pipeline takes it from here
            refused_at = None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                answer = client.get("/")
                if answer.status_code == 403:
                    refused_at = time.time()
                    break
                time.sleep(0.02)
            assert refused_at is not None, "the session was never refused"
            jwks = served.get("/api/v1/ssf/jwks", role="admin").json()
            deadline = time.monotonic() + 10
            while not app.tokens and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            proxy.terminate()
            proxy.wait(10)
            served.stop()
    crossed = [
        c
        for _, data in LocalStream(served.data / "risk").fetch(0, 10_000, 0)
        if (c := RiskChange.from_bytes(data)).entity == ("host", WORKSTATION) and c.risk > 20
    ]
    assert crossed, "the workstation's risk never crossed the line"
    # from the recording's arrival, through detection, correlation and the zerotrust stage,
    # to the revocation and the refusal: within a second
    assert refused_at - sent_at <= 1.0, refused_at - sent_at
    [token] = app.tokens
    verified = jwt.decode(token, KeySet.import_key_set(jwks))
    assert verified.header["typ"] == "secevent+jwt" and verified.header["alg"] == "ES256"
    claims = verified.claims
    assert claims["aud"] == "https://siem.test" and claims["sub_id"]["id"] == session
    assert "device risk" in claims["events"][SESSION_REVOKED]["reason_admin"]["en"]
