"""The compiled plan is cached on the rules' contents and reused only when nothing changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.detect.sigma import load_rules

RULE = """
title: Whoami
id: 5f0a8b1e-3c2d-4e5f-8a9b-0c1d2e3f4a5b
logsource: {product: windows, category: process_creation}
detection:
  selection:
    Image|endswith: '\\whoami.exe'
  condition: selection
level: {level}
"""


@pytest.fixture
def rules_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VIGIL_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "whoami.yml").write_text(RULE.replace("{level}", "low"))
    return folder


def test_second_load_of_unchanged_rules_comes_from_the_cache(rules_dir: Path) -> None:
    first = load_rules([rules_dir])
    second = load_rules([rules_dir])
    assert not first.from_cache
    assert second.from_cache
    assert [r.title for r in second.plan.rules] == ["Whoami"]


def test_a_changed_rule_is_recompiled_not_served_stale(rules_dir: Path) -> None:
    load_rules([rules_dir])
    (rules_dir / "whoami.yml").write_text(RULE.replace("{level}", "high"))
    again = load_rules([rules_dir])
    assert not again.from_cache
    assert again.plan.rules[0].level == "high"


def test_a_damaged_cache_file_is_rebuilt(rules_dir: Path, tmp_path: Path) -> None:
    load_rules([rules_dir])
    for entry in (tmp_path / "cache").glob("*.pickle"):
        entry.write_bytes(b"not a pickle")
    again = load_rules([rules_dir])
    assert not again.from_cache
    assert again.plan.rules[0].title == "Whoami"
