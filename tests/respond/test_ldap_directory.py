"""The directory connector against a real slapd (OpenLDAP, password-policy overlay): a user
who can bind is disabled (a bind with their password then fails) and enabled again by the
undo (the bind works again); both are idempotent; a name with filter characters is looked up
as itself; dry-run changes nothing."""

from __future__ import annotations

import pytest
from ldap3 import Connection, Server

from vigil.errors import NotFound
from vigil.respond.ldap import Directory

USER_PASSWORD = "alice-pass-1"


@pytest.fixture
def directory(slapd_server):
    admin = Connection(
        Server(slapd_server.url), slapd_server.ADMIN, slapd_server.PASSWORD, auto_bind=True
    )
    suffix = slapd_server.SUFFIX
    admin.add(suffix, ["dcObject", "organization"], {"dc": "vigil", "o": "Vigil test"})
    admin.add(f"ou=people,{suffix}", ["organizationalUnit"], {"ou": "people"})
    admin.add(
        slapd_server.POLICY,
        ["organizationalRole", "pwdPolicy"],
        {"cn": "default", "pwdAttribute": "userPassword", "pwdLockout": "TRUE"},
    )
    for uid in ("alice", "bob"):
        admin.add(
            f"uid={uid},ou=people,{suffix}",
            ["inetOrgPerson"],
            {"cn": uid, "sn": uid, "uid": uid, "userPassword": USER_PASSWORD},
        )
    admin.unbind()
    return Directory(slapd_server.url, slapd_server.ADMIN, slapd_server.PASSWORD, base=suffix)


def binds(directory: Directory, uid: str) -> bool:
    dn = f"uid={uid},ou=people,{directory.base}"
    conn = Connection(directory.server, dn, USER_PASSWORD)
    try:
        return bool(conn.bind())
    finally:
        conn.unbind()


def test_a_disabled_account_cannot_bind_and_undo_restores_it(directory, slapd_server) -> None:
    assert binds(directory, "alice")
    planned = Directory(
        slapd_server.url,
        slapd_server.ADMIN,
        slapd_server.PASSWORD,
        base=directory.base,
        dry_run=True,
    ).disable("alice")
    assert planned.dry_run and planned.commands and binds(directory, "alice")

    done = directory.disable("alice")
    assert done.ok and done.state == {
        "dn": f"uid=alice,ou=people,{directory.base}",
        "disabled": True,
    }
    assert not binds(directory, "alice")
    assert binds(directory, "bob")  # nobody else
    assert directory.disable("alice").output == "already so"  # idempotent

    assert directory.enable("alice").state["disabled"] is False
    assert binds(directory, "alice")
    assert directory.enable("alice").output == "already so"


def test_names_are_looked_up_as_themselves(directory) -> None:
    with pytest.raises(NotFound):
        directory.disable("*")  # a filter wildcard is a name here, not every account
    with pytest.raises(NotFound):
        directory.disable("alice)(uid=*")
    assert binds(directory, "alice") and binds(directory, "bob")
    assert "password" not in repr(directory).lower() and directory._password not in repr(directory)


def test_a_playbook_disables_the_account_for_real_and_its_undo_enables_it(
    directory, slapd_server, tmp_path
) -> None:
    from vigil.config import RespondSettings
    from vigil.correlate.store import IncidentStore
    from vigil.respond.actions import ACTIONS
    from vigil.respond.engine import Responder
    from vigil.respond.playbook import parse
    from vigil.store import state_engine

    book = parse(
        {
            "id": "disable-user",
            "name": "Disable the account",
            "steps": [
                {
                    "id": "disable",
                    "action": "directory.disable",
                    "with": {"user": "{{ entity.user | account }}"},
                }
            ],
            "trigger": {"type": "alert"},
        },
        "test",
        ACTIONS,
    )
    settings = RespondSettings.model_validate(
        {
            "dry_run": False,
            "directory": {
                "url": slapd_server.url,
                "bind_dn": slapd_server.ADMIN,
                "password": slapd_server.PASSWORD,
                "base": directory.base,
            },
        }
    )
    engine = state_engine(tmp_path)
    responder = Responder(engine, settings, IncidentStore(engine), playbooks=[book])
    run_id = responder.start_run(
        "disable-user", "alice-admin", context={"entity": {"user": "CORP\\alice"}}, dry_run=False
    )
    assert responder.execute(run_id) == "done"
    assert responder.run(run_id)["steps"][0]["inputs"] == {"user": "alice"}
    assert not binds(directory, "alice") and binds(directory, "bob")
    responder.undo(run_id, "alice-admin")
    assert responder.execute(run_id) == "undone"
    assert binds(directory, "alice")
    assert slapd_server.PASSWORD not in str(responder.run(run_id))
