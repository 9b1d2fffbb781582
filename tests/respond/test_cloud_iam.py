"""The cloud connector against a real IAM endpoint on loopback (moto's server, a process of its
own): a user's access key is deactivated (IAM then lists it Inactive) and activated again by
the undo, both idempotent, with the user given or looked up from the key; unknown keys and
users raise NotFound, malformed key ids are refused before anything is sent, an unreachable
endpoint is Unavailable; dry-run changes nothing; the secret key is never shown."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest

from vigil.errors import InputError, NotFound, Unavailable
from vigil.respond.cloud import CloudKeys

SECRET = "moto-test-secret-key-never-shown"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def iam_endpoint():
    """moto's server in a process of its own, on a free loopback port."""
    binary = Path(sys.executable).with_name("moto_server")
    command = [str(binary)] if binary.exists() else [sys.executable, "-m", "moto.server"]
    port = _free_port()
    server = subprocess.Popen(
        [*command, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("moto_server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.kill()
        server.wait(10)


@pytest.fixture
def iam(iam_endpoint):
    return boto3.client(
        "iam",
        endpoint_url=iam_endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIATESTTESTTESTTEST",
        aws_secret_access_key=SECRET,
    )


@pytest.fixture
def alice(iam) -> tuple[str, str, str]:
    """A fresh user (unique on the shared server) with two access keys: (name, key, other)."""
    name = f"alice-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=name)
    first = iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"]
    second = iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"]
    return name, first, second


def statuses(iam, user: str) -> dict[str, str]:
    listed = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
    return {k["AccessKeyId"]: k["Status"] for k in listed}


def keys_of(endpoint: str, **kwargs) -> CloudKeys:
    return CloudKeys(
        endpoint_url=endpoint,
        access_key_id="AKIATESTTESTTESTTEST",
        secret_access_key=SECRET,
        **kwargs,
    )


def test_deactivate_and_undo_change_the_key_status(iam_endpoint, iam, alice) -> None:
    name, key, other = alice
    keys = keys_of(iam_endpoint)
    assert keys.state(name) == {"user": name, "keys": {key: "Active", other: "Active"}}

    done = keys.deactivate_key(name, key)
    assert done.ok and not done.dry_run
    assert done.commands == [
        {"call": "update_access_key", "UserName": name, "AccessKeyId": key, "Status": "Inactive"}
    ]
    assert statuses(iam, name) == {key: "Inactive", other: "Active"}  # only that key
    assert done.state["keys"][key] == "Inactive"

    again = keys.deactivate_key(name, key)
    assert again.ok and again.output == "already so" and again.commands == []

    undone = keys.activate_key(name, key)
    assert undone.ok and statuses(iam, name) == {key: "Active", other: "Active"}
    assert keys.activate_key(name, key).output == "already so"


def test_the_owner_is_looked_up_when_no_user_is_given(iam_endpoint, iam, alice) -> None:
    name, key, other = alice
    done = keys_of(iam_endpoint).deactivate_key("", key)
    assert done.commands[0]["UserName"] == name
    assert statuses(iam, name) == {key: "Inactive", other: "Active"}
    keys_of(iam_endpoint).activate_key("", key)
    assert statuses(iam, name)[key] == "Active"


def test_unknown_keys_and_users_are_not_found(iam_endpoint, iam, alice) -> None:
    name, key, _ = alice
    keys = keys_of(iam_endpoint)
    unknown = "AKIA" + "Z" * 16
    with pytest.raises(NotFound, match=unknown):
        keys.deactivate_key(name, unknown)
    with pytest.raises(NotFound, match=unknown):
        keys.deactivate_key("", unknown)
    with pytest.raises(NotFound, match="nobody-here"):
        keys.deactivate_key("nobody-here", key)
    other = f"bob-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=other)
    with pytest.raises(NotFound):  # a key is only changed for the user who owns it
        keys.deactivate_key(other, key)
    assert statuses(iam, name)[key] == "Active"


def test_malformed_input_is_refused_before_anything_is_sent() -> None:
    keys = CloudKeys(endpoint_url="http://127.0.0.1:9", dry_run=False)  # nothing listens
    for bad in (
        "akiaiosfodnn7example",
        "AKIA123",
        "AKIAIOSFODNN7EXAMPL!",
        "AROAIOSFODNN7EXAMPLE",
        "AKIAIOSFODNN7EXAMPLE\n",
    ):
        with pytest.raises(InputError, match="not an AWS access key id"):
            keys.deactivate_key("alice", bad)
    with pytest.raises(InputError, match="not an IAM user name"):
        keys.deactivate_key("alice/../root", "AKIAIOSFODNN7EXAMPLE")


def test_an_unreachable_endpoint_is_unavailable_and_no_secret_is_shown() -> None:
    keys = CloudKeys(
        endpoint_url=f"http://127.0.0.1:{_free_port()}",
        access_key_id="AKIATESTTESTTESTTEST",
        secret_access_key=SECRET,
    )
    with pytest.raises(Unavailable, match="cannot reach") as caught:
        keys.deactivate_key("alice", "AKIAIOSFODNN7EXAMPLE")
    assert SECRET not in str(caught.value) and SECRET not in repr(keys)


def test_dry_run_changes_nothing(iam_endpoint, iam, alice) -> None:
    name, key, other = alice
    keys = keys_of(iam_endpoint, dry_run=True)
    planned = keys.deactivate_key(name, key)
    assert planned.ok and planned.dry_run
    assert planned.commands == [
        {"call": "update_access_key", "UserName": name, "AccessKeyId": key, "Status": "Inactive"}
    ]
    looked_up = keys.deactivate_key("", key)
    assert [c["call"] for c in looked_up.commands] == [
        "get_access_key_last_used",
        "update_access_key",
    ]
    assert statuses(iam, name) == {key: "Active", other: "Active"}
    assert SECRET not in str(planned) and SECRET not in str(looked_up)


def test_the_shipped_playbook_deactivates_the_key_for_real_and_undo_reactivates_it(
    iam_endpoint, iam, alice, tmp_path
) -> None:
    from vigil.config import RespondSettings
    from vigil.correlate.store import IncidentStore
    from vigil.respond.actions import ACTIONS
    from vigil.respond.engine import Responder
    from vigil.respond.playbook import SHIPPED, load
    from vigil.store import state_engine

    name, key, other = alice
    shipped = load(SHIPPED / "deactivate-cloud-key.yml", ACTIONS)
    book = shipped.model_copy(update={"steps": shipped.steps[:1]})  # its cloud step
    settings = RespondSettings.model_validate(
        {
            "dry_run": False,
            "cloud": {
                "endpoint_url": iam_endpoint,
                "access_key_id": "AKIATESTTESTTESTTEST",
                "secret_access_key": SECRET,
            },
        }
    )
    engine = state_engine(tmp_path)
    responder = Responder(engine, settings, IncidentStore(engine), playbooks=[book])
    event = {"eventName": "ListBuckets", "userIdentity": {"accessKeyId": key, "userName": name}}
    run_id = responder.start_run(
        "deactivate-cloud-key",
        "test",
        context={"alert": {"id": "a1", "rule_title": "x", "event": event}},
        dry_run=False,
    )
    assert responder.execute(run_id) == "done"
    assert statuses(iam, name) == {key: "Inactive", other: "Active"}
    responder.undo(run_id, "test")
    assert responder.execute(run_id) == "undone"
    assert statuses(iam, name) == {key: "Active", other: "Active"}
    assert SECRET not in str(responder.run(run_id))
