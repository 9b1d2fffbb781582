"""CACAO v2.0 export and import of playbooks, checked against the OASIS CACAO JSON schemas
(read in place from ../shared/docs/cacao-v2.0-schemas; the tests skip when they are absent)."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from vigil.config import RespondSettings
from vigil.errors import InputError, Unavailable
from vigil.respond import cacao
from vigil.respond.engine import load_playbooks
from vigil.respond.playbook import Playbook, schema

CREATED = "2025-03-04T05:06:07.891Z"
SHIPPED = {p.id: p for p in load_playbooks(RespondSettings(shipped=True))}


@pytest.fixture(scope="module")
def schemas() -> Path:
    try:
        return cacao.schemas_folder()
    except Unavailable as exc:
        pytest.skip(f"the CACAO v2.0 schemas are not here: {exc}")


def _ident(kind: str) -> str:
    return f"{kind}--{uuid.uuid4()}"


def _openc2(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "openc2-http",
        "command": "POST /.well-known/openc2 HTTP/1.1",
        "content_b64": base64.b64encode(json.dumps(body).encode()).decode(),
    }


def _action(name: str, command: dict[str, Any], **links: Any) -> dict[str, Any]:
    agent = "security-category--9d5b6a0e-3c1f-4e2a-8b7d-1f2e3d4c5b6a"
    return {"type": "action", "name": name, "agent": agent, "commands": [command], **links}


def _foreign() -> dict[str, Any]:
    """A CACAO playbook as another tool writes it: deny an address, then at once contain a
    host (named by a variable) and deny an IPv6 network."""
    start, deny, fork, contain, deny6 = (
        _ident(k) for k in ("start", "action", "parallel", "action", "action")
    )
    end, end_a, end_b = _ident("end"), _ident("end"), _ident("end")
    return {
        "type": "playbook",
        "spec_version": "cacao-2.0",
        "id": "playbook--1b0f7e7c-6d52-4d7e-9f0a-2b8c3e4d5f60",
        "name": "Stop a C2 channel",
        "description": "From another SOAR.",
        "created_by": "identity--5f2c3b1a-0e9d-4c8b-a7f6-e5d4c3b2a190",
        "created": "2024-11-02T10:00:00.000Z",
        "modified": "2024-11-02T10:00:00.000Z",
        "playbook_variables": {
            "__entity_host__": {"type": "string", "external": True},
            "__sinkhole__": {"type": "ipv6-addr", "value": "2001:db8:66::/48"},
        },
        "workflow_start": start,
        "workflow": {
            start: {"type": "start", "on_completion": deny},
            deny: _action(
                "Deny C2 address",
                _openc2(
                    {
                        "action": "deny",
                        "target": {"ipv4_net": "198.51.100.7"},
                        "args": {"duration": 3600000},
                    }
                ),
                on_completion=fork,
                timeout=20000,
            ),
            fork: {"type": "parallel", "next_steps": [contain, deny6], "on_success": end},
            contain: _action(
                "Contain host",
                _openc2(
                    {
                        "action": "contain",
                        "target": {"device": {"hostname": "__entity_host__:value"}},
                    }
                ),
                on_completion=end_a,
            ),
            deny6: _action(
                "Deny sinkhole",
                _openc2({"action": "deny", "target": {"ipv6_net": "__sinkhole__:value"}}),
                on_completion=end_b,
            ),
            end_a: {"type": "end"},
            end_b: {"type": "end"},
            end: {"type": "end"},
        },
    }


def _step_key(document: dict[str, Any], name: str) -> str:
    return str(next(k for k, s in document["workflow"].items() if s.get("name") == name))


def _openc2_body(step: dict[str, Any]) -> Any:
    return json.loads(base64.b64decode(step["commands"][0]["content_b64"]))


# --- export ---------------------------------------------------------------------------------


def test_shipped_playbooks_are_here() -> None:
    assert {"block-c2-indicator", "contain-credential-dumping", "deactivate-cloud-key"} <= set(
        SHIPPED
    )


@pytest.mark.parametrize("playbook_id", sorted(SHIPPED))
def test_every_shipped_playbook_exports_valid_cacao_and_imports_back_equal(
    playbook_id: str, schemas: Path
) -> None:
    playbook = SHIPPED[playbook_id]
    document = cacao.to_cacao(playbook, created=CREATED)
    assert cacao.validate(document, schemas) == []
    assert cacao.from_cacao(document, schemas=schemas) == playbook
    # and through its JSON text, as a file would carry it
    again = cacao.from_cacao(json.loads(cacao.dumps(document)), schemas=schemas)
    assert again == playbook


def test_export_is_stable_and_dated_to_the_millisecond() -> None:
    playbook = SHIPPED["contain-credential-dumping"]
    first = cacao.to_cacao(playbook, created="2025-03-04T07:06:07.891999+02:00")
    assert first == cacao.to_cacao(playbook, created=CREATED)
    assert first["created"] == first["modified"] == CREATED
    expected = uuid.uuid5(cacao.NAMESPACE, "playbook/contain-credential-dumping")
    assert first["id"] == f"playbook--{expected}"
    assert first["spec_version"] == "cacao-2.0" and first["revoked"] is False
    assert first["created_by"].startswith("identity--")
    now = cacao.to_cacao(playbook)["created"]
    assert len(now) == len("2025-03-04T05:06:07.891Z") and now.endswith("Z")
    with pytest.raises(InputError, match="time zone"):
        cacao.to_cacao(playbook, created="2025-03-04T05:06:07")


def test_block_and_isolate_are_openc2_with_template_values_as_cacao_variables() -> None:
    document = cacao.to_cacao(SHIPPED["block-c2-indicator"], created=CREATED)
    block = document["workflow"][_step_key(document, "block")]
    assert block["commands"][0]["type"] == "openc2-http"
    assert _openc2_body(block) == {
        "action": "deny",
        "target": {"ipv4_net": "__alert_details_indicator_value__:value"},
        "args": {"duration": 86400000},
    }
    assert document["playbook_types"] == ["mitigation", "notification"]
    assert "__alert_details_indicator_value__" in document["playbook_variables"]
    assert document["labels"] == ["intel"]

    document = cacao.to_cacao(SHIPPED["contain-credential-dumping"], created=CREATED)
    isolate = document["workflow"][_step_key(document, "isolate")]
    assert _openc2_body(isolate) == {
        "action": "contain",
        "target": {"device": {"hostname": "__entity_host__:value"}},
    }
    assert document["playbook_variables"]["__entity_host__"]["external"] is True
    disable = document["workflow"][_step_key(document, "disable-account")]
    assert disable["commands"][0]["type"] == "manual"
    assert "__entity_user__:value" in disable["commands"][0]["command"]


def test_a_literal_ipv6_address_is_denied_as_an_ipv6_net() -> None:
    playbook = Playbook.model_validate(
        {
            "id": "block-v6",
            "name": "Block a v6 network",
            "trigger": {},
            "steps": [
                {"id": "block", "action": "firewall.block", "with": {"address": "2001:db8::/32"}}
            ],
        }
    )
    document = cacao.to_cacao(playbook, created=CREATED)
    block = document["workflow"][_step_key(document, "block")]
    assert _openc2_body(block) == {"action": "deny", "target": {"ipv6_net": "2001:db8::/32"}}
    assert "playbook_variables" not in document


def test_workflow_mirrors_sequence_parallel_when_and_failure_policy() -> None:
    document = cacao.to_cacao(SHIPPED["contain-credential-dumping"], created=CREATED)
    flow = document["workflow"]
    start = flow[document["workflow_start"]]
    assert start["type"] == "start"
    isolate = flow[start["on_completion"]]
    assert isolate["name"] == "isolate" and isolate["timeout"] == 30000
    # compensate: on failure the run ends undoing what it did (nothing yet before isolate)
    assert flow[isolate["on_failure"]]["type"] == "end"
    fork = flow[isolate["on_success"]]
    assert fork["type"] == "parallel" and len(fork["next_steps"]) == 3
    # both steps of the block go on when they fail: the block does too
    assert flow[fork["on_completion"]] == {"type": "end", "name": "end"}
    guarded, sessions, case = (flow[k] for k in fork["next_steps"])
    assert sessions["name"] == "end-sessions" and flow[sessions["on_completion"]]["type"] == "end"
    assert guarded["type"] == "if-condition"
    assert guarded["condition"] == "entity.user is defined and entity.user"
    assert flow[guarded["on_true"]]["name"] == "disable-account"
    assert flow[guarded["on_completion"]]["type"] == "end"
    assert case["name"] == "open-case" and flow[case["on_completion"]]["type"] == "end"


def test_a_failure_after_a_containment_enters_the_undo_chain(schemas: Path) -> None:
    playbook = Playbook.model_validate(
        {
            "id": "two-blocks",
            "name": "Block then suspend",
            "trigger": {"tags": ["intel"]},
            "steps": [
                {"id": "block", "action": "firewall.block", "with": {"address": "192.0.2.1"}},
                {"id": "suspend", "action": "idp.suspend", "with": {"user": "{{ entity.user }}"}},
                {
                    "id": "page",
                    "action": "notify.webhook",
                    "with": {"text": "done"},
                    "on_failure": "stop",
                },
            ],
        }
    )
    document = cacao.to_cacao(playbook, created=CREATED)
    flow = document["workflow"]
    suspend = flow[_step_key(document, "suspend")]
    assert suspend["commands"][0]["command"] == (
        "POST /api/v1/users/__entity_user__:value/lifecycle/suspend HTTP/1.1"
    )
    undo_block = flow[suspend["on_failure"]]
    assert undo_block["name"] == "undo block"
    assert "192.0.2.1" in undo_block["commands"][0]["command"]
    assert flow[undo_block["on_completion"]]["type"] == "end"
    page = flow[suspend["on_success"]]
    assert flow[page["on_failure"]]["name"].startswith("failed: the run ends, keeping")
    assert cacao.validate(document, schemas) == []
    assert cacao.from_cacao(document, schemas=schemas) == playbook


# --- validation -----------------------------------------------------------------------------


def _broken(change: Any) -> list[str]:
    document = cacao.to_cacao(SHIPPED["block-c2-indicator"], created=CREATED)
    change(document)
    return cacao.validate(document)


def test_a_wrong_spec_version_is_refused_naming_its_path(schemas: Path) -> None:
    found = _broken(lambda d: d.update(spec_version="cacao-1.1"))
    assert found == ["$.spec_version: 'cacao-1.1' is not one of ['cacao-2.0']"]


def test_a_missing_workflow_start_is_refused(schemas: Path) -> None:
    assert _broken(lambda d: d.pop("workflow_start")) == [
        "$: 'workflow_start' is a required property"
    ]


def test_a_step_of_unknown_type_is_refused(schemas: Path) -> None:
    def retype(document: dict[str, Any]) -> None:
        document["workflow"][_step_key(document, "block")]["type"] = "bogus"

    found = _broken(retype)
    assert found and all(".type: 'bogus' is not one of" in line for line in found)
    assert found[0].startswith("$.workflow['action--")

    unknown = _ident("webhook")
    found = _broken(lambda d: d["workflow"].update({unknown: {"type": "webhook"}}))
    assert found == [f"$.workflow: unknown property '{unknown}'"]


def test_a_command_is_checked_against_the_schema_of_its_type(schemas: Path) -> None:
    def strip(document: dict[str, Any]) -> None:
        document["workflow"][_step_key(document, "block")]["commands"][0].pop("content_b64")

    [line] = _broken(strip)
    assert line.startswith("$.workflow['action--") and line.endswith(
        ".commands[0]: 'content_b64' is a required property"
    )


def test_an_end_step_that_goes_on_and_an_unknown_property_are_refused(schemas: Path) -> None:
    def go_on(document: dict[str, Any]) -> None:
        document["extensions"] = {}
        document["workflow"][_step_key(document, "end")]["on_completion"] = document[
            "workflow_start"
        ]

    found = _broken(go_on)
    assert "$: unknown property 'extensions'" in found
    assert any(line.startswith("$.workflow['end--") and "must not match" in line for line in found)


def test_import_refuses_an_invalid_document_naming_each_problem(schemas: Path) -> None:
    document = cacao.to_cacao(SHIPPED["block-c2-indicator"], created=CREATED)
    document["spec_version"] = "cacao-1.1"
    del document["workflow_start"]
    with pytest.raises(InputError) as caught:
        cacao.from_cacao(document, schemas=schemas)
    message = str(caught.value)
    assert "not a valid CACAO v2.0 playbook" in message
    assert "$.spec_version" in message and "'workflow_start' is a required property" in message


def test_missing_schemas_are_unavailable_saying_how_to_point_at_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(Unavailable, match=cacao.ENV):
        cacao.validate({}, tmp_path)
    monkeypatch.setenv(cacao.ENV, str(tmp_path / "nowhere"))
    with pytest.raises(Unavailable, match="nowhere"):
        cacao.validate({})


def test_the_schemas_come_from_the_environment_when_set(
    schemas: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cacao.ENV, str(schemas))
    assert cacao.schemas_folder() == schemas
    assert cacao.validate({"type": "playbook"}) != []


# --- import ---------------------------------------------------------------------------------


def test_a_playbook_without_the_vigil_extension_is_translated(schemas: Path) -> None:
    document = _foreign()
    assert cacao.validate(document, schemas) == []
    playbook = cacao.from_cacao(document, schemas=schemas)
    expected = Playbook.model_validate(
        {
            "id": "stop-a-c2-channel",
            "name": "Stop a C2 channel",
            "description": "From another SOAR.",
            "enabled": False,
            "trigger": {},
            "steps": [
                {
                    "id": "deny-c2-address",
                    "action": "firewall.block",
                    "with": {"address": "198.51.100.7", "timeout_s": 3600},
                    "timeout_s": 20,
                    "on_failure": "continue",
                },
                {
                    "parallel": [
                        {
                            "id": "contain-host",
                            "action": "firewall.isolate",
                            "with": {"host": "{{ entity.host }}"},
                            "on_failure": "stop",
                        },
                        {
                            "id": "deny-sinkhole",
                            "action": "firewall.block",
                            "with": {"address": "2001:db8:66::/48"},
                            "on_failure": "stop",
                        },
                    ]
                },
            ],
        }
    )
    assert playbook == expected


def test_untranslatable_steps_are_each_named(schemas: Path) -> None:
    document = _foreign()
    flow = document["workflow"]
    deny = _step_key(document, "Deny C2 address")
    flow[deny]["commands"] = [{"type": "manual", "command": "Call the ISP"}]
    contain = _step_key(document, "Contain host")
    flow[contain]["commands"] = [_openc2({"action": "query", "target": {"features": []}})]
    guard, then = _ident("if-condition"), _ident("end")
    flow[guard] = {
        "type": "if-condition",
        "name": "Only by day",
        "condition": "[x-clock:hour < 18]",
        "on_true": then,
        "on_completion": flow[deny]["on_completion"],
    }
    flow[then] = {"type": "end"}
    flow[deny]["on_completion"] = guard
    assert cacao.validate(document, schemas) == []
    with pytest.raises(InputError) as caught:
        cacao.from_cacao(document, schemas=schemas)
    message = str(caught.value)
    assert f"step {deny} (Deny C2 address): a command of type 'manual'" in message
    assert f"step {contain} (Contain host): OpenC2 query on features has no Vigil action" in message
    assert f"step {guard} (Only by day): a step of type 'if-condition'" in message
    assert "Deny sinkhole" not in message


def test_an_unknown_variable_and_a_loop_are_named(schemas: Path) -> None:
    document = _foreign()
    flow = document["workflow"]
    del document["playbook_variables"]["__sinkhole__"]
    end = flow[_step_key(document, "Contain host")]["on_completion"]
    fork = next(k for k in flow if k.startswith("parallel--"))
    flow[fork]["on_success"] = document["workflow"][document["workflow_start"]]["on_completion"]
    assert flow[end]["type"] == "end"
    with pytest.raises(InputError) as caught:
        cacao.from_cacao(document, schemas=schemas)
    message = str(caught.value)
    assert "variable __sinkhole__ has no value" in message
    assert "comes back to it" in message


def test_the_extension_must_agree_with_the_workflow(schemas: Path) -> None:
    document = cacao.to_cacao(SHIPPED["contain-credential-dumping"], created=CREATED)
    document["workflow"][_step_key(document, "open-case")]["name"] = "open-ticket"
    with pytest.raises(InputError, match="open-ticket"):
        cacao.from_cacao(document, schemas=schemas)

    document = cacao.to_cacao(SHIPPED["contain-credential-dumping"], created=CREATED)
    definition = document["playbook_extensions"][cacao.EXTENSION]
    definition["steps"] = definition["steps"][:1]
    with pytest.raises(InputError, match=r"'disable-account' .* is not in the Vigil playbook"):
        cacao.from_cacao(document, schemas=schemas)

    document = cacao.to_cacao(SHIPPED["contain-credential-dumping"], created=CREATED)
    guarded = document["workflow"][_step_key(document, "when (disable-account)")]
    removed = guarded["on_true"]
    guarded["on_true"] = guarded["on_completion"]
    del document["workflow"][removed]
    with pytest.raises(InputError, match="the workflow has no action step 'disable-account'"):
        cacao.from_cacao(document, schemas=schemas)


def test_the_carried_definition_is_checked_like_a_playbook_file(schemas: Path) -> None:
    document = cacao.to_cacao(SHIPPED["block-c2-indicator"], created=CREATED)
    definition = copy.deepcopy(document["playbook_extensions"][cacao.EXTENSION])
    definition["steps"][0]["action"] = "firewall.explode"
    document["playbook_extensions"][cacao.EXTENSION] = definition
    with pytest.raises(InputError, match=r"unknown action 'firewall\.explode'"):
        cacao.from_cacao(document, schemas=schemas)


def test_the_extension_is_declared_with_the_playbook_schema_url() -> None:
    document = cacao.to_cacao(SHIPPED["block-c2-indicator"], created=CREATED)
    declared = document["extension_definitions"][cacao.EXTENSION]
    assert declared["name"] == "vigil-playbook"
    assert declared["schema"] == schema()["$id"]
    assert declared["created_by"] == document["created_by"]
    assert document["playbook_extensions"][cacao.EXTENSION] == (
        SHIPPED["block-c2-indicator"].to_dict()
    )


def test_dumps_is_indented_json() -> None:
    document = cacao.to_cacao(SHIPPED["block-c2-indicator"], created=CREATED)
    text = cacao.dumps(document)
    assert text.startswith('{\n  "type": "playbook"')
    assert json.loads(text) == document
