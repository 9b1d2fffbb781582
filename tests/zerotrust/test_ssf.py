"""The Shared Signals transmitter: a CAEP session-revoked event becomes, for each receiver
that wants it, a Security Event Token whose signature verifies with the published JWK set
and whose header and claims are RFC 8417's; a push receiver (a real HTTP server) gets it
with RFC 8935's content type and acknowledges with 202; a receiver that was down gets it
again when pushes are retried; a poll receiver (RFC 8936) gets what waits and, once it
acknowledges, never again; the signing key is kept readable by its owner only."""

from __future__ import annotations

import json
import stat
import time

from joserfc import jwt
from joserfc.jwk import KeySet

from servers import Inbox, in_thread
from vigil.store import state_engine
from vigil.zerotrust.ssf import (
    DEVICE_COMPLIANCE_CHANGE,
    SESSION_REVOKED,
    Receiver,
    SigningKey,
    Transmitter,
)


def test_signed_sets_are_pushed_polled_and_acknowledged(tmp_path) -> None:
    key = SigningKey.at(tmp_path / "ssf-key.pem")
    assert stat.S_IMODE((tmp_path / "ssf-key.pem").stat().st_mode) == 0o600
    assert SigningKey.at(tmp_path / "ssf-key.pem").kid == key.kid  # made once, then kept
    with in_thread(Inbox()) as inbox:
        receivers = [
            Receiver("proxy", "https://proxy.example", push_url=f"{inbox.url}/events"),
            Receiver("siem", "https://siem.example", events=(SESSION_REVOKED,)),
        ]
        transmitter = Transmitter(state_engine(tmp_path), key, "https://vigil.example", receivers)
        at = time.time()
        sent = transmitter.emit(
            SESSION_REVOKED,
            {"format": "opaque", "id": "s-1"},
            {"reason_admin": {"en": "user risk 80 is over 50"}},
            at=at,
        )
        assert len(sent) == 2
        transmitter.emit(
            DEVICE_COMPLIANCE_CHANGE,
            {"format": "opaque", "id": "ws1"},
            {"previous_status": "compliant", "current_status": "not-compliant"},
        )
        transmitter.close()  # the pushes are done
        assert len(inbox.got) == 2 and transmitter.pushed == 2
        keys = KeySet.import_key_set(key.jwks())
        assert {kind for kind, _ in inbox.got} == {"application/secevent+jwt"}
        [token] = [
            t for _, t in inbox.got if SESSION_REVOKED in jwt.decode(t, keys).claims["events"]
        ]
        verified = jwt.decode(token, keys)
        assert verified.header == {"alg": "ES256", "typ": "secevent+jwt", "kid": key.kid}
        claims = verified.claims
        assert claims["iss"] == "https://vigil.example" and claims["aud"] == "https://proxy.example"
        assert claims["sub_id"] == {"format": "opaque", "id": "s-1"}
        assert claims["iat"] == int(at) and claims["jti"] in sent
        event = claims["events"][SESSION_REVOKED]
        assert event["reason_admin"] == {"en": "user risk 80 is over 50"}
        assert event["event_timestamp"] == int(at)

        polled = transmitter.poll("siem", max_events=10)
        assert polled["moreAvailable"] is False and len(polled["sets"]) == 1  # it wants one kind
        [(jti, polled_token)] = polled["sets"].items()
        assert jwt.decode(polled_token, KeySet.import_key_set(key.jwks())).claims["aud"] == (
            "https://siem.example"
        )
        assert transmitter.poll("siem", ack=[jti])["sets"] == {}  # acknowledged: never again
        assert transmitter.undelivered() == 0

        inbox.up = False  # a receiver that is down gets it when pushes are retried
        again = Transmitter(state_engine(tmp_path), key, "https://vigil.example", receivers[:1])
        again.emit(SESSION_REVOKED, {"format": "opaque", "id": "s-2"}, {})
        again.close()
        assert again.push_failures == 1 and again.undelivered() == 1
        inbox.up = True
        assert again.redeliver() == 1 and again.undelivered() == 0
        assert (
            json.loads(
                json.dumps(jwt.decode(inbox.got[-1][1], KeySet.import_key_set(key.jwks())).claims)
            )["sub_id"]["id"]
            == "s-2"
        )
