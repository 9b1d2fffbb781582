"""Playbooks as files: the shipped ones validate, against Vigil's checks and against the
published JSON Schema (docs/playbook.schema.json, which must match the model); a broken
playbook is refused with every problem named (unknown action, missing input, bad template,
an id used twice, a YAML `on:` key); templates run in Jinja's sandbox: an event's value is
data, never a template, and reaching into Python objects is refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from vigil.errors import InputError
from vigil.respond.actions import ACTIONS
from vigil.respond.playbook import SHIPPED, files, load, parse, render, schema

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_playbooks_validate_and_the_published_schema_is_current() -> None:
    published = json.loads((ROOT / "docs" / "playbook.schema.json").read_text())
    assert published == schema(), "docs/playbook.schema.json is stale: vigil playbook schema"
    shipped = files([SHIPPED])
    assert {p.stem for p in shipped} == {
        "contain-credential-dumping",
        "block-c2-indicator",
        "block-network-attacker",
        "deactivate-cloud-key",
    }
    for path in shipped:
        book = load(path, ACTIONS)
        assert book.id == path.stem
        jsonschema.validate(yaml.safe_load(path.read_text()), published)


def test_a_broken_playbook_is_refused_with_every_problem_named() -> None:
    broken = {
        "id": "broken",
        "name": "Broken",
        "trigger": {"type": "alert"},
        "steps": [
            {"id": "a", "action": "firewall.explode", "with": {}},
            {"id": "b", "action": "firewall.block", "with": {"adress": "1.2.3.4"}},
            {"id": "b", "action": "case.open", "with": {"note": "{{ unclosed "}},
        ],
    }
    with pytest.raises(InputError) as caught:
        parse(broken, "broken.yml", ACTIONS)
    said = str(caught.value)
    assert said.startswith("broken.yml: ")
    for part in (
        "unknown action 'firewall.explode'",
        "firewall.block needs address",
        "firewall.block takes no adress",
        "the id is used twice",
        "step 'b': template '{{ unclosed '",
    ):
        assert part in said, said
    with pytest.raises(InputError, match="trigger"):
        parse(
            yaml.safe_load(
                "id: x\nname: X\ntrigger: {on: alert}\nsteps: [{id: a, action: case.open}]"
            ),
            "on.yml",
            ACTIONS,
        )
    with pytest.raises(InputError, match="retries"):
        parse(
            {**broken, "steps": [{"id": "a", "action": "case.open", "retries": 99}]},
            "r.yml",
            ACTIONS,
        )


def test_templates_are_sandboxed_and_event_values_stay_data() -> None:
    context = {"entity": {"host": "{{ 7 * 7 }}"}, "alert": {"event": {"CommandLine": "a{b}"}}}
    assert render("{{ entity.host }}", context) == "{{ 7 * 7 }}"
    assert render({"h": ["{{ alert.event.CommandLine }}"]}, context) == {"h": ["a{b}"]}
    assert render("{{ 6 * 7 }}", {}) == 42  # one expression keeps its type
    with pytest.raises(InputError):
        render("{{ ''.__class__.__mro__[1].__subclasses__() }}", {})
    with pytest.raises(InputError, match="missing"):
        render("{{ entity.missing }}", context)


def test_vigil_playbook_validate_exits_1_naming_the_file(tmp_path) -> None:
    good, bad = tmp_path / "good.yml", tmp_path / "bad.yml"
    good.write_text((SHIPPED / "block-c2-indicator.yml").read_text())
    bad.write_text("id: bad\nname: Bad\ntrigger: {type: alert}\nsteps: [{id: a, action: nope}]\n")
    done = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "playbook", "validate", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "good.yml: block-c2-indicator" in done.stdout.replace("\n", "")
    assert "unknown action 'nope'" in done.stdout.replace("\n", "")
