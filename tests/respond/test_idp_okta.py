"""The identity-provider connector against a real HTTP server speaking Okta's Management API
shape (`okta_shape.py`): suspending makes the account SUSPENDED and unsuspending (the undo)
ACTIVE again, both idempotent; clearing sessions ends them; a refused token, an unknown
account and an unreachable server are told apart, never with the token in the message; dry-run
sends nothing."""

from __future__ import annotations

import socket

import pytest
from okta_shape import OktaShape

from vigil.errors import Conflict, InputError, NotFound, Unavailable
from vigil.respond.idp import IdentityProvider

TOKEN = "00aBcD-the-okta-api-token-xyz"
ALICE = "alice@corp.example"


@pytest.fixture
def okta():
    stand_in = OktaShape(token=TOKEN)
    stand_in.add_user("00u1alice", ALICE, sessions=["102abc", "102def"])
    stand_in.add_user("00u2bob", "bob@corp.example", sessions=["102ghi"])
    stand_in.add_user("00u3carol", "carol@corp.example", status="DEPROVISIONED")
    stand_in.add_user("00u4dave", "dave@corp.example", status="STAGED")
    with stand_in.serve():
        yield stand_in


def test_suspend_and_undo_change_the_status_and_repeat_harmlessly(okta) -> None:
    idp = IdentityProvider(okta.url, TOKEN)
    assert idp.state(ALICE) == {"id": "00u1alice", "login": ALICE, "status": "ACTIVE"}

    done = idp.suspend(ALICE)
    assert done.ok and not done.dry_run and done.state["status"] == "SUSPENDED"
    assert okta.users["00u1alice"].status == "SUSPENDED"
    assert done.commands == [{"method": "POST", "url": f"{okta.url}/api/v1/users/"
                              "alice%40corp.example/lifecycle/suspend"}]  # fmt: skip
    assert okta.users["00u2bob"].status == "ACTIVE"  # nobody else

    again = idp.suspend(ALICE)  # Okta would answer 400 E0000001: not asked again
    assert again.ok and again.output == "already so" and again.commands == []
    assert ("POST", "/api/v1/users/alice@corp.example/lifecycle/suspend") in okta.requests
    assert okta.requests.count(("POST", "/api/v1/users/alice@corp.example/lifecycle/suspend")) == 1

    undone = idp.unsuspend("00u1alice")  # by id as well as by login
    assert undone.ok and undone.state["status"] == "ACTIVE"
    assert okta.users["00u1alice"].status == "ACTIVE"
    assert idp.unsuspend(ALICE).output == "already so"


def test_clear_sessions_ends_them_all(okta) -> None:
    idp = IdentityProvider(okta.url, TOKEN)
    done = idp.clear_sessions(ALICE)
    assert done.ok and done.output.startswith("204")
    assert okta.users["00u1alice"].sessions == []
    assert okta.users["00u2bob"].sessions == ["102ghi"]
    assert idp.clear_sessions(ALICE).ok  # nothing left to end: still fine


def test_statuses_okta_will_not_change_are_told_apart(okta) -> None:
    idp = IdentityProvider(okta.url, TOKEN)
    # a deprovisioned account cannot sign in anyway: suspending it is done already
    assert idp.suspend("carol@corp.example").output == "already so"
    with pytest.raises(Conflict, match="E0000001"):  # a staged account cannot be suspended
        idp.suspend("dave@corp.example")
    assert okta.users["00u4dave"].status == "STAGED"


def test_a_refused_token_is_unavailable_and_never_shown(okta) -> None:
    wrong = "00zz-wrong-token-secret"
    idp = IdentityProvider(okta.url, wrong)
    with pytest.raises(Unavailable, match="refused the API token") as caught:
        idp.suspend(ALICE)
    assert wrong not in str(caught.value) and TOKEN not in str(caught.value)
    assert wrong not in repr(idp)
    assert okta.users["00u1alice"].status == "ACTIVE"


def test_unknown_accounts_and_bad_names(okta) -> None:
    idp = IdentityProvider(okta.url, TOKEN)
    with pytest.raises(NotFound, match=r"mallory@corp\.example"):
        idp.suspend("mallory@corp.example")
    with pytest.raises(NotFound):  # a path trick is a name, quoted, not a route
        idp.suspend("../00u1alice")
    with pytest.raises(InputError):
        idp.suspend("alice\r\nX-Injected: 1")
    assert okta.users["00u1alice"].status == "ACTIVE"


def test_an_unreachable_server_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    with pytest.raises(Unavailable, match="cannot reach"):
        IdentityProvider(f"http://127.0.0.1:{port}", TOKEN, timeout_s=2).state(ALICE)


def test_dry_run_sends_nothing(okta) -> None:
    idp = IdentityProvider(okta.url, TOKEN, dry_run=True)
    for planned in (idp.suspend(ALICE), idp.clear_sessions(ALICE), idp.unsuspend(ALICE)):
        assert planned.ok and planned.dry_run and len(planned.commands) == 1
    assert [c["method"] for c in idp.suspend(ALICE).commands] == ["POST"]
    assert idp.clear_sessions(ALICE).commands[0]["method"] == "DELETE"
    assert okta.requests == []
    assert okta.users["00u1alice"].status == "ACTIVE"
    assert okta.users["00u1alice"].sessions == ["102abc", "102def"]


def test_a_playbook_suspends_and_clears_sessions_and_undo_restores_the_account(
    okta, tmp_path
) -> None:
    from vigil.config import RespondSettings
    from vigil.correlate.store import IncidentStore
    from vigil.respond.actions import ACTIONS
    from vigil.respond.engine import Responder
    from vigil.respond.playbook import parse
    from vigil.store import state_engine

    book = parse(
        {
            "id": "lock-out",
            "name": "Lock the account out",
            "trigger": {"type": "alert"},
            "steps": [
                {"id": "suspend", "action": "idp.suspend", "with": {"user": "{{ entity.user }}"}},
                {
                    "id": "sessions",
                    "action": "idp.clear_sessions",
                    "with": {"user": "{{ entity.user }}"},
                },
            ],
        },
        "lock-out",
        ACTIONS,
    )
    settings = RespondSettings.model_validate(
        {"dry_run": False, "idp": {"url": okta.url, "token": TOKEN}}
    )
    engine = state_engine(tmp_path)
    responder = Responder(engine, settings, IncidentStore(engine), playbooks=[book])
    run_id = responder.start_run(
        "lock-out", "test", context={"entity": {"user": ALICE}}, dry_run=False
    )
    assert responder.execute(run_id) == "done"
    assert okta.users["00u1alice"].status == "SUSPENDED"
    assert okta.users["00u1alice"].sessions == []
    assert okta.users["00u2bob"].status == "ACTIVE"
    responder.undo(run_id, "test")
    assert responder.execute(run_id) == "undone"
    assert okta.users["00u1alice"].status == "ACTIVE"  # sessions ended stay ended
    assert TOKEN not in str(responder.run(run_id))
