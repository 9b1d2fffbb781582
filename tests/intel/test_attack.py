"""The ATT&CK knowledge base against an independent ATT&CK build, rule coverage per group (checked
against tags read straight from the SigmaHQ YAML files), and the Navigator layer export."""

from __future__ import annotations

import json
import re
import socket
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from vigil.detect.sigma.compiler import RuleMeta
from vigil.detect.sigma.logsource import RuleSource
from vigil.errors import VigilError
from vigil.intel.attack import (
    AttackKB,
    AttackLookupError,
    Group,
    coverage,
    navigator_layer,
    rule_techniques,
    stale_tags,
)

TECHNIQUE_ID = re.compile(r"^T\d{4}(\.\d{3})?$")
# The C loader when PyYAML has it: the same safe subset as yaml.safe_load, ten times faster.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@pytest.fixture(scope="module")
def kb() -> AttackKB:
    return AttackKB.load()


@pytest.fixture(scope="module")
def reference(need_data: Callable[..., Path]) -> dict[str, Any]:
    """ATT&CK Enterprise 18.1 built from mitre/cti STIX files (not from the package Vigil
    reads): see SOURCE.txt next to it."""
    path = need_data("threat_intel", "mitre-attack", "v18.1", "attack_enterprise_compact.json")
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return data


def rule(rule_id: str, *tags: str, title: str = "") -> RuleMeta:
    return RuleMeta(
        rule_id=rule_id,
        title=title or f"rule {rule_id}",
        level="high",
        status="test",
        tags=tags,
        path=f"{rule_id}.yml",
        logsource=RuleSource("windows", "process_creation", None),
    )


# Loading


def test_the_knowledge_base_loads_offline_from_the_installed_package_in_well_under_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the ATT&CK knowledge base tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    started = time.perf_counter()
    fresh = AttackKB()  # not the shared instance: really read the files
    techniques = time.perf_counter() - started
    fresh.group("APT29")  # reads the 10 MB relationship file
    fresh.software("Mimikatz")
    total = time.perf_counter() - started
    print(f"ATT&CK load: techniques {techniques * 1000:.0f} ms, with relationships {total:.3f} s")
    assert fresh.version == "18.1"
    assert techniques < 0.5
    assert total < 2.0


def test_the_shared_knowledge_base_is_read_once() -> None:
    assert AttackKB.load() is AttackKB.load()


def test_unreadable_data_is_a_vigil_error(tmp_path: Path) -> None:
    with pytest.raises(AttackLookupError, match="cannot read ATT&CK data"):
        AttackKB(tmp_path, release="18.1")


# Agreement with the independent build


def test_active_technique_ids_match_the_reference(kb: AttackKB, reference: dict[str, Any]) -> None:
    expected = {
        t["id"] for t in reference["techniques"] if not t["revoked"] and not t["deprecated"]
    }
    assert {t.id for t in kb.techniques} == expected
    assert len(expected) == 691


def test_every_technique_agrees_with_the_reference(kb: AttackKB, reference: dict[str, Any]) -> None:
    assert len(reference["techniques"]) == 835
    for ref in reference["techniques"]:
        technique = kb.technique(ref["id"])
        assert technique.name == ref["name"]
        assert technique.tactics == tuple(ref["tactics"])
        assert technique.platforms == tuple(ref["platforms"])
        assert (technique.revoked, technique.deprecated) == (ref["revoked"], ref["deprecated"])
        assert (technique.parent is not None) == ref["is_subtechnique"]


def test_the_fourteen_tactics_come_in_matrix_order(kb: AttackKB, reference: dict[str, Any]) -> None:
    assert [(t.id, t.shortname, t.name) for t in kb.tactics] == [
        (t["id"], t["shortname"], t["name"]) for t in reference["tactics"]
    ]
    assert len(kb.tactics) == 14
    assert kb.tactics[0].shortname == "reconnaissance"
    assert kb.tactics[-1].shortname == "impact"


def test_apt29_techniques_and_aliases_match_the_reference(
    kb: AttackKB, reference: dict[str, Any]
) -> None:
    ref = next(g for g in reference["groups"] if g["id"] == "G0016")
    apt29 = kb.group("G0016")
    assert apt29.name == "APT29"
    assert apt29.aliases == tuple(ref["aliases"])
    assert {"Cozy Bear", "NOBELIUM", "Midnight Blizzard"} <= set(apt29.aliases)
    assert apt29.techniques == tuple(sorted(ref["techniques"]))
    assert len(apt29.techniques) == 66


def test_every_active_group_agrees_with_the_reference(
    kb: AttackKB, reference: dict[str, Any]
) -> None:
    active = {g["id"]: g for g in reference["groups"] if not g["revoked"] and not g["deprecated"]}
    assert [g.id for g in kb.groups] == sorted(active)
    for group in kb.groups:
        ref = active[group.id]
        assert (group.name, group.aliases) == (ref["name"], tuple(ref["aliases"]))
        assert group.techniques == tuple(sorted(ref["techniques"]))


def test_software_agrees_with_the_reference(kb: AttackKB, reference: dict[str, Any]) -> None:
    compared = 0
    for ref in reference["software"]:
        try:
            software = kb.software(ref["id"])
        except AttackLookupError:  # deprecated
            continue
        if software.id != ref["id"]:  # revoked: the lookup gives its replacement
            continue
        assert (software.name, software.type) == (ref["name"], ref["type"])
        assert software.techniques == tuple(sorted(ref["techniques"]))
        compared += 1
    assert compared >= 780


# Lookups


@pytest.mark.parametrize(
    "query", ["G0016", "g0016", "APT29", "apt29", "Cozy Bear", "  midnight BLIZZARD ", "NOBELIUM"]
)
def test_a_group_is_found_by_id_name_or_alias_in_any_case(kb: AttackKB, query: str) -> None:
    assert kb.group(query).id == "G0016"


def test_a_revoked_group_leads_to_the_group_it_was_merged_into(kb: AttackKB) -> None:
    assert kb.group("G0118").id == "G0016"  # UNC2452, merged into APT29
    assert kb.group("G0057").id == "G0049"  # APT34, now OilRig


def test_a_name_wins_over_another_groups_alias(kb: AttackKB) -> None:
    assert kb.group("Thrip").id == "G0076"  # also an alias of Lotus Blossom (G0030)


def test_an_ambiguous_alias_names_every_candidate(kb: AttackKB) -> None:
    with pytest.raises(AttackLookupError, match="ambiguous") as caught:
        kb.group("UAC-0056")
    assert caught.value.suggestions == ("Ember Bear (G1003)", "Saint Bear (G1031)")


def test_a_deprecated_group_is_reported_as_such(kb: AttackKB) -> None:
    with pytest.raises(AttackLookupError, match=r"Night Dragon \(G0014\) is deprecated"):
        kb.group("night dragon")


def test_an_unknown_group_is_an_error_with_close_names(kb: AttackKB) -> None:
    with pytest.raises(AttackLookupError) as caught:
        kb.group("APT 29")
    assert isinstance(caught.value, VigilError)
    assert caught.value.suggestions[0] == "APT29 (G0016)"
    assert "did you mean: APT29 (G0016)" in str(caught.value)
    with pytest.raises(AttackLookupError) as caught:
        kb.group("Cozy Bare")
    assert "Cozy Bear (G0016)" in caught.value.suggestions
    with pytest.raises(AttackLookupError, match="no group 'zzqx'"):
        kb.group("zzqx")


def test_software_is_found_by_id_name_or_alias(kb: AttackKB) -> None:
    assert kb.software("s0002").name == "Mimikatz"
    assert kb.software("MIMIKATZ").id == "S0002"
    assert kb.software("Sodinokibi").id == "S0496"  # an alias of REvil
    with pytest.raises(AttackLookupError) as caught:
        kb.software("mimikat")
    assert "Mimikatz (S0002)" in caught.value.suggestions


def test_techniques_are_found_by_id_and_know_their_parent(kb: AttackKB) -> None:
    powershell = kb.technique("t1059.001")
    assert (powershell.id, powershell.name, powershell.parent) == (
        "T1059.001",
        "PowerShell",
        "T1059",
    )
    assert kb.technique("T1059").parent is None
    assert "T1059.001" in kb.subtechniques("T1059")
    revoked = kb.technique("T1086")
    assert revoked.revoked and not revoked.active
    assert kb.active("T1086") is None
    replacement = kb.replacement("T1086")
    assert replacement is not None and replacement.id == "T1059.001"
    with pytest.raises(AttackLookupError, match=r"no technique T1059\.099") as caught:
        kb.technique("T1059.099")
    assert caught.value.suggestions[0] == "T1059.001 PowerShell"
    with pytest.raises(AttackLookupError, match="not an ATT&CK technique id"):
        kb.technique("powershell")


# Rule tags and the sub-technique policy, on hand-made rules


def test_rule_techniques_indexes_tags_by_upper_case_id_once_per_rule(kb: AttackKB) -> None:
    rules = [
        rule("a", "attack.execution", "attack.t1059.001", "attack.T1059.001", "attack.t1059"),
        rule("b", "attack.t1059", "attack.g0016", "attack.s0002"),
        rule("c", "attack.t1086", "cve.2021-44228"),
    ]
    found = rule_techniques(rules, kb=kb)
    assert list(found) == ["T1059", "T1059.001"]
    assert [r.rule_id for r in found["T1059"]] == ["a", "b"]
    assert [r.rule_id for r in found["T1059.001"]] == ["a"]


def test_stale_technique_tags_are_reported_with_their_replacement(kb: AttackKB) -> None:
    rules = [
        rule("old", "attack.t1086", "attack.t1064", "attack.t1059.001"),
        rule("odd", "attack.t9999", "attack.t1059.1", "attack.t1003"),
    ]
    stale = {
        (s.rule.rule_id, s.tag, s.technique_id, s.reason, s.replacement)
        for s in stale_tags(rules, kb=kb)
    }
    assert stale == {
        ("old", "attack.t1086", "T1086", "revoked", "T1059.001"),
        ("old", "attack.t1064", "T1064", "deprecated", None),
        ("odd", "attack.t9999", "T9999", "unknown", None),
        ("odd", "attack.t1059.1", "attack.t1059.1", "malformed", None),
    }
    assert set(rule_techniques(rules, kb=kb)) == {"T1059.001", "T1003"}


def test_a_parent_only_rule_is_partial_coverage_of_a_sub_technique(kb: AttackKB) -> None:
    generic = rule("generic", "attack.t1059")  # any interpreter
    cmd = rule("cmd", "attack.t1059", "attack.t1059.003")  # about cmd.exe, not PowerShell
    lsass = rule("lsass", "attack.t1003.001")
    group = Group("G9999", "Test", (), ("T1003", "T1003.001", "T1059", "T1059.001", "T1105"))
    report = coverage(group, rule_techniques([generic, cmd, lsass], kb=kb), kb=kb)
    by_id = {item.technique.id: item for item in report.techniques}

    assert by_id["T1059.001"].status == "partial"
    assert by_id["T1059.001"].rules == ()
    assert by_id["T1059.001"].related == (generic,)  # not cmd: a sibling's rule
    assert by_id["T1059"].status == "covered"
    assert by_id["T1059"].rules == (generic, cmd)
    assert by_id["T1003"].status == "partial"  # only a sub-technique's rule
    assert by_id["T1003"].related == (lsass,)
    assert by_id["T1003.001"].status == "covered"
    assert by_id["T1105"].status == "uncovered"
    assert report.counts == {"covered": 2, "partial": 2, "uncovered": 1}
    assert report.ratio == pytest.approx(2 / 5)
    assert [i.technique.id for i in report.partial] == ["T1003", "T1059.001"]


def test_a_siblings_rule_does_not_cover_a_sub_technique(kb: AttackKB) -> None:
    cmd = rule("cmd", "attack.t1059", "attack.t1059.003")
    group = Group("G9999", "Test", (), ("T1059.001",))
    report = coverage(group, rule_techniques([cmd], kb=kb), kb=kb)
    assert report.counts == {"covered": 0, "partial": 0, "uncovered": 1}
    assert report.ratio == 0.0


def test_coverage_accepts_a_mapping_with_lower_case_keys(kb: AttackKB) -> None:
    group = Group("G9999", "Test", (), ("T1105",))
    report = coverage(group, {"t1105": [rule("x", "attack.t1105")]}, kb=kb)
    assert report.counts["covered"] == 1


# Coverage of APT29 by the SigmaHQ rules, checked against the YAML files read independently


@pytest.fixture(scope="module")
def yaml_technique_tags(sigma_rules: Any) -> dict[str, set[str]]:
    """Rule id → its technique tags (upper case), read from the YAML files themselves. The
    few files Vigil reports as problems (placeholders without values) are left out, as the
    loader leaves them out."""
    skipped = {p.path for p in sigma_rules.loaded.problems}
    tags: dict[str, set[str]] = {}
    for folder in sigma_rules.folders:
        for path in sorted(folder.rglob("*.yml")):
            if str(path) in skipped:
                continue
            for doc in yaml.load_all(path.read_text("utf-8"), Loader=SAFE_LOADER):
                if not doc or "detection" not in doc:
                    continue
                found = {
                    t.split(".", 1)[1].upper()
                    for t in doc.get("tags") or ()
                    if re.fullmatch(r"attack\.t\d{4}(\.\d{3})?", t, re.IGNORECASE)
                }
                tags[str(doc.get("id") or path)] = found
    return tags


def test_rule_techniques_agrees_with_the_yaml_tags(
    sigma_rules: Any, yaml_technique_tags: dict[str, set[str]], kb: AttackKB
) -> None:
    rules = sigma_rules.loaded.plan.rules
    assert len(yaml_technique_tags) == len(rules)
    expected: dict[str, set[str]] = defaultdict(set)
    for rule_id, tags in yaml_technique_tags.items():
        for tag in tags:
            expected[tag].add(rule_id)
    found = rule_techniques(rules, kb=kb)
    assert {k: {r.rule_id for r in v} for k, v in found.items()} == expected
    assert len(found) == 397
    assert stale_tags(rules, kb=kb) == []  # SigmaHQ's tags are all current in ATT&CK 18.1


def test_apt29_coverage_by_sigmahq_matches_an_independent_count(
    sigma_rules: Any,
    yaml_technique_tags: dict[str, set[str]],
    reference: dict[str, Any],
    kb: AttackKB,
) -> None:
    tagged: dict[str, set[str]] = defaultdict(set)
    for rule_id, tags in yaml_technique_tags.items():
        for tag in tags:
            tagged[tag].add(rule_id)
    expected: dict[str, tuple[str, set[str]]] = {}
    for technique in next(g for g in reference["groups"] if g["id"] == "G0016")["techniques"]:
        parent = technique.split(".")[0]
        if tagged[technique]:
            expected[technique] = ("covered", tagged[technique])
            continue
        if technique != parent:  # rules on the parent that name no sub-technique of it
            related = {
                r
                for r in tagged[parent]
                if not any(t.startswith(parent + ".") for t in yaml_technique_tags[r])
            }
        else:  # rules on any of its sub-techniques
            related = {r for t, rs in tagged.items() if t.startswith(parent + ".") for r in rs}
        expected[technique] = ("partial" if related else "uncovered", related)

    report = coverage(kb.group("APT29"), rule_techniques(sigma_rules.loaded.plan.rules, kb=kb))
    found = {
        item.technique.id: (item.status, {r.rule_id for r in item.rules or item.related})
        for item in report.techniques
    }
    assert found == expected
    assert report.counts == {"covered": 52, "partial": 10, "uncovered": 4}
    assert report.ratio == pytest.approx(52 / 66)
    assert found["T1059.001"][0] == "covered" and len(found["T1059.001"][1]) == 219
    assert found["T1003.002"][0] == "covered"  # SAM dumping
    assert found["T1027.006"][0] == "partial"  # HTML smuggling: only generic T1027 rules
    assert found["T1037"][0] == "partial"  # only rules on its sub-techniques
    assert {i.technique.id for i in report.uncovered} == {
        "T1037.004",
        "T1583.006",
        "T1651",
        "T1665",
    }


# The Navigator layer


def test_a_layer_scores_techniques_by_rule_count_once_per_tactic(kb: AttackKB) -> None:
    rules = [
        rule("t1", "attack.t1053.005", title="Scheduled task created"),
        rule("t2", "attack.t1053.005", "attack.t1053", title="Schtasks from temp"),
        rule("t3", "attack.t1053.005"),
        rule("t4", "attack.t1053.005"),
    ]
    covered = dict(rule_techniques(rules, kb=kb))
    covered["T1086"] = rules[:1]  # revoked: never in a layer
    covered["T9999"] = rules[:1]  # unknown
    layer = navigator_layer(covered, name="Scheduled tasks", description="test", kb=kb)

    assert layer["versions"] == {"attack": "18", "navigator": "5.1.0", "layer": "4.5"}
    assert (layer["domain"], layer["name"], layer["description"]) == (
        "enterprise-attack",
        "Scheduled tasks",
        "test",
    )
    entries = {(e["techniqueID"], e["tactic"]): e for e in layer["techniques"]}
    tactics = ("execution", "persistence", "privilege-escalation")
    assert set(entries) == {(t, tactic) for t in ("T1053", "T1053.005") for tactic in tactics}
    sub = entries["T1053.005", "persistence"]
    assert sub["score"] == 4
    assert sub["comment"] == (
        "4 Sigma rules: Scheduled task created; Schtasks from temp; rule t3 (and 1 more)"
    )
    assert "showSubtechniques" not in sub  # a sub-technique has none
    parent = entries["T1053", "execution"]
    assert parent["score"] == 1 and parent["showSubtechniques"] is True
    assert layer["gradient"] == {"colors": ["#d9f0d3", "#1b7837"], "minValue": 1, "maxValue": 4}
    assert "Windows" in layer["filters"]["platforms"]


def test_apt29_layer_over_sigmahq_is_valid_and_shows_the_gaps(
    sigma_rules: Any, kb: AttackKB, tmp_path: Path
) -> None:
    covered = rule_techniques(sigma_rules.loaded.plan.rules, kb=kb)
    apt29 = kb.group("APT29")
    layer = navigator_layer(covered, name="SigmaHQ vs APT29", group=apt29, kb=kb)
    path = tmp_path / "apt29.json"
    path.write_text(json.dumps(layer, indent=2), "utf-8")
    layer = json.loads(path.read_text("utf-8"))

    required = {"name", "versions", "domain", "description", "filters", "sorting", "layout"}
    assert required | {"hideDisabled", "techniques", "gradient", "legendItems"} <= set(layer)
    assert layer["versions"] == {"attack": "18", "navigator": "5.1.0", "layer": "4.5"}
    assert layer["domain"] == "enterprise-attack"
    assert set(layer["filters"]["platforms"]) == set(kb.platforms)
    assert layer["gradient"]["maxValue"] > layer["gradient"]["minValue"]
    assert all(set(item) == {"label", "color"} for item in layer["legendItems"])
    shortnames = {t.shortname for t in kb.tactics}

    seen: dict[str, set[str]] = defaultdict(set)
    for entry in layer["techniques"]:
        ident = entry["techniqueID"]
        assert TECHNIQUE_ID.match(ident)
        technique = kb.active(ident)
        assert technique is not None
        assert entry["tactic"] in shortnames and entry["tactic"] in technique.tactics
        assert entry["score"] == len(covered.get(ident, ()))
        assert entry["enabled"] is True
        seen[ident].add(entry["tactic"])
    assert all(seen[ident] == set(kb.technique(ident).tactics) for ident in seen)
    assert set(seen) == set(covered) | set(apt29.techniques)

    first = {e["techniqueID"]: e for e in layer["techniques"]}
    assert first["T1651"]["color"] == "#e6341d"
    assert first["T1651"]["comment"] == "Used by APT29 (G0016), no rule."
    assert first["T1027.006"]["color"] == "#fdae61"
    assert "only on the parent T1027" in first["T1027.006"]["comment"]
    assert first["T1059.001"]["color"] == ""
    assert first["T1059.001"]["comment"].startswith("Used by APT29 (G0016). 219 Sigma rules: ")
    assert {"name": "group", "value": "APT29 (G0016)"} in layer["metadata"]
