"""STIX 2.x import: real bundles checked against an independent count, and small hand-made
bundles for each rule (ORs, IN lists, lifecycle, relationships, 2.0, malformed input)."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vigil.intel.model import ImportResult
from vigil.intel.stix import from_objects, import_bundle, is_stix

# The test's own reading of a pattern, kept apart from the importer's parser: a simple
# pattern is one `[path = 'value' OR path = 'value' ...]` over these paths.
MAPPED = {
    "ipv4-addr:value",
    "ipv6-addr:value",
    "domain-name:value",
    "url:value",
    "email-addr:value",
    "file:name",
    "file:hashes.md5",
    "file:hashes.sha-1",
    "file:hashes.sha-256",
    "file:hashes.sha256",
    "file:hashes.sha-512",
}
_ONE = r"[a-z0-9-]+:[A-Za-z0-9_.'-]+\s*=\s*'(?:[^'\\]|\\.)*'"
SIMPLE = re.compile(rf"\[\s*{_ONE}(?:\s+OR\s+{_ONE})*\s*\]")
COMPARISON = re.compile(r"([a-z0-9-]+:[A-Za-z0-9_.'-]+)\s*=\s*'((?:[^'\\]|\\.)*)'")

# Figures per file, as the independent count also finds them: indicators, unsupported
# indicator objects, rejected values.
EXPECTED = {
    "apt1.json": (10, 2, 0),  # two x509 issuer AND serial patterns
    "poisonivy.json": (66, 0, 1),  # 'domain autuo.xicp.net' is not a domain name
    "malicious-email-indicator-with-attachment.json": (0, 2, 0),  # MATCHES
    "using-granular-markings.json": (0, 1, 0),  # MATCHES
    "2024-02-08-Pikabot.json": (10, 0, 0),
    "brute-ratel.json.gz": (56, 2, 0),  # x509 AND patterns
    "conti-ransomware.json.gz": (49, 26, 0),  # process:command_line
    "emotet.json.gz": (880, 6, 0),  # hash AND file name
}


def _load(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as stream:
        doc = json.load(stream)
    if isinstance(doc, list):
        return doc
    return doc["objects"] if doc.get("type") == "bundle" else [doc]


def _independent(objects: list[dict[str, Any]]) -> tuple[int, set[str], int]:
    """(values that should become indicators, ids that should be unsupported, values that
    should be rejected), from plain JSON and the regular expressions above."""
    good = bad = 0
    unsupported: set[str] = set()
    for obj in objects:
        if obj.get("type") != "indicator" or obj.get("pattern_type", "stix") != "stix":
            continue
        pattern = obj["pattern"]
        pairs = [(p.lower().replace("'", ""), v) for p, v in COMPARISON.findall(pattern)]
        if not SIMPLE.fullmatch(pattern.strip()) or any(p not in MAPPED for p, _ in pairs):
            unsupported.add(obj["id"])
            continue
        for _, value in {(p, v.lower()) for p, v in pairs}:
            if re.search(r"\s", value):
                bad += 1
            else:
                good += 1
    return good, unsupported, bad


def _bundle_files(need_data: Callable[..., Path]) -> list[Path]:
    oasis = need_data("threat_intel", "stix21-oasis-examples")
    unit42 = need_data("threat_intel", "unit42-playbooks-stix20")
    files = sorted(oasis.glob("**/*.json"))
    files += sorted(p for p in unit42.iterdir() if p.name.endswith((".json", ".json.gz")))
    assert len(files) >= 20
    return files


def test_real_bundles_import_the_values_an_independent_count_finds(
    need_data: Callable[..., Path],
) -> None:
    seen: dict[str, tuple[int, int, int]] = {}
    for path in _bundle_files(need_data):
        objects = _load(path)
        good, unsupported, bad = _independent(objects)
        result = import_bundle(path)
        assert len(result.indicators) == good, path.name
        assert {u.reference for u in result.unsupported} == unsupported, path.name
        assert len(result.unsupported) == len(unsupported), path.name
        assert len(result.rejected) == bad, path.name
        seen[path.name] = (good, len(unsupported), bad)
    for name, figures in EXPECTED.items():
        assert seen[name] == figures, name


def test_unsupported_names_the_indicator_and_why(need_data: Callable[..., Path]) -> None:
    examples = need_data("threat_intel", "stix21-oasis-examples")
    apt1 = import_bundle(next(examples.glob("**/apt1.json")))
    assert {u.reference for u in apt1.unsupported} == {
        "indicator--b3b6b540-d838-41e2-853b-005056c00008",
        "indicator--b3b7035e-d838-41e2-8d38-005056c00008",
    }
    assert all("AND" in u.reason and "x509-certificate" in u.text for u in apt1.unsupported)

    unit42 = need_data("threat_intel", "unit42-playbooks-stix20")
    conti = import_bundle(unit42 / "conti-ransomware.json.gz")
    assert all("process:command_line has no indicator type" in u.reason for u in conti.unsupported)
    emotet = import_bundle(unit42 / "emotet.json.gz")
    assert all(u.reason.startswith("AND") for u in emotet.unsupported)


def test_poisonivy_or_patterns_keep_good_values_and_reject_the_bad_one(
    need_data: Callable[..., Path],
) -> None:
    examples = need_data("threat_intel", "stix21-oasis-examples")
    result = import_bundle(next(examples.glob("**/poisonivy.json")))
    [rejected] = result.rejected
    assert rejected.reference == "indicator--4e4c4ad7-4909-456a-b6fa-e24a6f682a40"
    assert rejected.text == "domain autuo.xicp.net"
    kept = [i for i in result.indicators if i.reference == rejected.reference]
    assert [(i.type, i.value) for i in kept] == [("ipv4", "60.10.1.115")]
    assert result.source == "stix:poisonivy.json"
    assert {i.source for i in result.indicators} == {"stix:poisonivy.json"}


def test_apt1_indicators_carry_provenance(need_data: Callable[..., Path]) -> None:
    examples = need_data("threat_intel", "stix21-oasis-examples")
    path = next(examples.glob("**/apt1.json"))
    objects = {o["id"]: o for o in _load(path)}
    result = import_bundle(path)
    cidr = next(i for i in result.indicators if i.value == "223.166.0.0/15")
    assert cidr.type == "cidr"
    assert cidr.reference == "indicator--031778a4-057f-48e6-9db9-c8d72b81ccd5"
    assert cidr.first_seen == pytest.approx(1431681136.432678)  # 2015-05-15T09:12:16.432678Z
    assert cidr.tags == ("malicious-activity",)
    assert cidr.description == "HTRAN Hop Point Accessor"
    # Actors: the names of what each indicator `indicates`, read straight from the JSON.
    for indicator in result.indicators:
        named = {
            objects[r["target_ref"]]["name"]
            for r in objects.values()
            if r["type"] == "relationship"
            and r["source_ref"] == indicator.reference
            and r["relationship_type"] == "indicates"
            and objects[r["target_ref"]]["type"] in ("threat-actor", "malware", "intrusion-set")
        }
        assert named <= set(indicator.actors)
    assert any("Ugly Gorilla" in i.actors for i in result.indicators)


def test_unit42_indicators_carry_the_techniques_they_point_at(
    need_data: Callable[..., Path],
) -> None:
    unit42 = need_data("threat_intel", "unit42-playbooks-stix20")
    for name in ("brute-ratel.json.gz", "conti-ransomware.json.gz", "emotet.json.gz"):
        objects = {o["id"]: o for o in _load(unit42 / name)}
        direct: dict[str, set[str]] = {}
        for r in objects.values():
            target = objects.get(r.get("target_ref", ""))
            if r["type"] == "relationship" and target and target["type"] == "attack-pattern":
                ids = {
                    e["external_id"]
                    for e in target["external_references"]
                    if e.get("source_name") == "mitre-attack"
                }
                direct.setdefault(r["source_ref"], set()).update(ids)
        result = import_bundle(unit42 / name)
        with_techniques = 0
        for indicator in result.indicators:
            assert direct.get(indicator.reference, set()) <= set(indicator.techniques)
            with_techniques += bool(indicator.techniques)
        assert with_techniques > len(result.indicators) // 2, name
    conti = import_bundle(unit42 / "conti-ransomware.json.gz")
    assert all("Conti" in i.actors for i in conti.indicators)


# Small bundles, one rule each.


def _indicator(pattern: str, **extra: Any) -> dict[str, Any]:
    number = extra.pop("n", 1)
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--00000000-0000-4000-8000-{number:012d}",
        "created": "2024-01-01T00:00:00.000Z",
        "modified": "2024-01-02T00:00:00.000Z",
        "valid_from": "2024-01-01T00:00:00Z",
        "pattern": pattern,
        "pattern_type": "stix",
        **extra,
    }


def _pairs(result: ImportResult) -> list[tuple[str, str]]:
    return [(i.type, i.value) for i in result.indicators]


def test_or_of_comparisons_gives_one_indicator_per_value() -> None:
    pattern = (
        "[ipv4-addr:value = '198.51.100.7' OR domain-name:value = 'Evil.Example.' "
        "OR url:value = 'HTTP://Evil.Example/a?b=1'] OR [file:hashes.'SHA-256' = '"
        + "AB" * 32
        + "']"
    )
    result = from_objects([_indicator(pattern)], "test")
    assert _pairs(result) == [
        ("ipv4", "198.51.100.7"),
        ("domain", "evil.example"),
        ("url", "evil.example/a?b=1"),
        ("sha256", "ab" * 32),
    ]
    assert not result.unsupported and not result.rejected
    assert {i.reference for i in result.indicators} == {_indicator("")["id"]}


def test_in_list_gives_one_indicator_per_member_and_prefixes_become_cidr() -> None:
    pattern = "[ipv4-addr:value IN ('203.0.113.5', '10.0.0.0/8', '203.0.113.5/32')]"
    result = from_objects([_indicator(pattern)], "test")
    assert _pairs(result) == [("ipv4", "203.0.113.5"), ("cidr", "10.0.0.0/8")]


def test_hash_names_emails_and_destinations_map_to_their_types() -> None:
    patterns = [
        "[file:hashes.MD5 = '" + "A" * 32 + "']",
        "[file:hashes.'SHA-1' = '" + "b" * 40 + "' OR file:hashes.SHA1 = '" + "c" * 40 + "']",
        "[file:hashes.SHA256 = '" + "d" * 64 + "']",
        "[file:hashes.'SHA-512' = '" + "e" * 128 + "']",
        "[file:name = 'invoice.pdf.exe']",
        "[email-addr:value = 'Bad@Example.COM']",
        "[email-message:from_ref.value = 'ceo@phish.example']",
        "[network-traffic:dst_ref.value = '2001:DB8::1' "
        "OR network-traffic:dst_ref.value = 'c2.example']",
        "[ipv6-addr:value = '2001:db8::/32']",
    ]
    objects = [_indicator(p, n=n) for n, p in enumerate(patterns)]
    result = from_objects(objects, "test")
    assert _pairs(result) == [
        ("md5", "a" * 32),
        ("sha1", "b" * 40),
        ("sha1", "c" * 40),
        ("sha256", "d" * 64),
        ("sha512", "e" * 128),
        ("filename", "invoice.pdf.exe"),
        ("email", "bad@example.com"),
        ("email", "ceo@phish.example"),
        ("ipv6", "2001:db8::1"),
        ("domain", "c2.example"),
        ("cidr", "2001:db8::/32"),
    ]


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("[ipv4-addr:value = '192.0.2.1' AND ipv4-addr:value = '192.0.2.2']", "AND"),
        ("[ipv4-addr:value = '192.0.2.1'] AND [domain-name:value = 'a.example']", "AND"),
        ("[file:name = 'a'] FOLLOWEDBY [file:name = 'b']", "FOLLOWEDBY"),
        ("[domain-name:value = 'a.example'] WITHIN 300 SECONDS", "WITHIN"),
        ("[domain-name:value = 'a.example'] REPEATS 3 TIMES", "REPEATS"),
        (
            "[domain-name:value = 'a.example'] START t'2024-01-01T00:00:00Z' "
            "STOP t'2024-02-01T00:00:00Z'",
            "START/STOP",
        ),
        ("[url:value LIKE '%evil%']", "LIKE"),
        ("[email-message:subject MATCHES '^Invoice']", "MATCHES"),
        ("[ipv4-addr:value != '192.0.2.1']", "negated"),
        ("[ipv4-addr:value NOT IN ('192.0.2.1')]", "negated"),
        ("[process:command_line = 'vssadmin delete shadows']", "process:command_line"),
        ("[x509-certificate:serial_number = '01:02']", "x509-certificate:serial_number"),
        ("[windows-registry-key:key = 'HKLM\\\\Run']", "windows-registry-key:key"),
    ],
)
def test_patterns_no_single_value_stands_for_are_listed_as_unsupported(
    pattern: str, reason: str
) -> None:
    result = from_objects([_indicator(pattern)], "test")
    assert not result.indicators and not result.rejected
    [unsupported] = result.unsupported
    assert unsupported.reference == _indicator("")["id"]
    assert reason in unsupported.reason
    assert unsupported.text == pattern


def test_an_or_alternative_that_is_not_simple_leaves_the_others_imported() -> None:
    pattern = "[domain-name:value = 'a.example'] OR [file:name = 'x' AND file:size = 10]"
    result = from_objects([_indicator(pattern)], "test")
    assert _pairs(result) == [("domain", "a.example")]
    [unsupported] = result.unsupported
    assert unsupported.reason.startswith("part of the pattern was not imported: AND")


@pytest.mark.parametrize("pattern_type", ["snort", "yara", "sigma", "suricata", "pcre"])
def test_other_pattern_languages_are_unsupported(pattern_type: str) -> None:
    rule = 'alert tcp any any -> any any (msg:"x"; sid:1;)'
    result = from_objects([_indicator(rule, pattern_type=pattern_type)], "test")
    [unsupported] = result.unsupported
    assert pattern_type in unsupported.reason
    assert unsupported.text == rule
    assert not result.indicators and not result.rejected


@pytest.mark.parametrize(
    "pattern",
    [
        "[ipv4-addr:value = '192.0.2.1'",
        "ipv4-addr:value = '192.0.2.1'",
        "[ipv4-addr:value = '192.0.2.1'] OR",
        "[ipv4-addr:value === '192.0.2.1']",
        "[file:name = 'a'] §",
        pytest.param("(" * 5000 + "[file:name = 'a']" + ")" * 5000, id="nested-too-deep"),
    ],
)
def test_malformed_pattern_is_rejected(pattern: str) -> None:
    result = from_objects([_indicator(pattern)], "test")
    [rejected] = result.rejected
    assert rejected.reference == _indicator("")["id"]
    assert "STIX pattern" in rejected.reason
    assert rejected.text == pattern
    assert not result.indicators and not result.unsupported


def test_malformed_values_are_rejected_one_by_one() -> None:
    pattern = (
        "[ipv4-addr:value = '999.1.1.1' OR domain-name:value = 'not a domain' "
        "OR file:hashes.MD5 = 'abc' OR ipv4-addr:value = 7 OR ipv4-addr:value = '192.0.2.9']"
    )
    result = from_objects([_indicator(pattern)], "test")
    assert _pairs(result) == [("ipv4", "192.0.2.9")]
    assert [r.text for r in result.rejected] == ["999.1.1.1", "not a domain", "abc", pattern]
    assert all(r.reference == _indicator("")["id"] for r in result.rejected)


def test_lifecycle_fields_come_from_the_indicator() -> None:
    objects = [
        _indicator(
            "[domain-name:value = 'old.example']",
            n=1,
            revoked=True,
            confidence=85,
            valid_until="2024-03-01T00:00:00.123456789Z",
            labels=["malicious-activity"],
            indicator_types=["compromised", "malicious-activity"],
            name="Old C2",
            kill_chain_phases=[
                {"kill_chain_name": "mitre-attack", "phase_name": "command-and-control"},
                {"kill_chain_name": "lockheed-martin-cyber-kill-chain", "phase_name": "c2"},
            ],
        ),
        _indicator("[domain-name:value = 'new.example']", n=2, description="only a description"),
    ]
    old, new = from_objects(objects, "feed").indicators
    assert old.revoked is True and new.revoked is False
    assert old.confidence == 85 and new.confidence is None
    assert old.first_seen == 1704067200.0  # 2024-01-01T00:00:00Z
    assert old.last_seen == 1704153600.0  # modified, 2024-01-02
    assert old.valid_until == pytest.approx(1709251200.123456)
    assert new.valid_until is None
    assert old.tags == (
        "malicious-activity",
        "compromised",
        "attack.command_and_control",
    )
    assert old.description == "Old C2" and new.description == "only a description"
    assert old.source == "feed"


def test_a_malformed_timestamp_rejects_the_indicator() -> None:
    result = from_objects(
        [_indicator("[domain-name:value = 'a.example']", valid_until="next tuesday")], "test"
    )
    [rejected] = result.rejected
    assert "next tuesday" in rejected.reason
    assert not result.indicators


def test_relationships_give_techniques_and_actors() -> None:
    def relationship(n: int, source: str, kind: str, target: str) -> dict[str, Any]:
        return {
            "type": "relationship",
            "id": f"relationship--00000000-0000-4000-8000-{n:012d}",
            "relationship_type": kind,
            "source_ref": source,
            "target_ref": target,
        }

    def attack_pattern(key: str, technique: str) -> dict[str, Any]:
        return {
            "type": "attack-pattern",
            "id": f"attack-pattern--{key}",
            "name": technique,
            "external_references": [
                {"source_name": "capec", "external_id": "CAPEC-163"},
                {"source_name": "mitre-attack", "external_id": technique},
            ],
        }

    indicator = _indicator("[domain-name:value = 'c2.example']")
    other = _indicator("[domain-name:value = 'unrelated.example']", n=2)
    me = indicator["id"]
    objects = [
        indicator,
        other,
        attack_pattern("1", "T1059.001"),
        attack_pattern("2", "T1105"),
        attack_pattern("3", "T1566"),  # only the campaign's repertoire
        {"type": "malware", "id": "malware--1", "name": "EvilRAT", "is_family": True},
        {"type": "campaign", "id": "campaign--1", "name": "Operation Night"},
        {"type": "intrusion-set", "id": "intrusion-set--1", "name": "APT-Example"},
        {"type": "threat-actor", "id": "threat-actor--1", "name": "Crew"},
        {"type": "threat-actor", "id": "threat-actor--2", "name": "Too Far"},
        {"type": "identity", "id": "identity--1", "name": "Victim Corp"},
        relationship(1, me, "indicates", "attack-pattern--1"),
        relationship(2, me, "indicates", "malware--1"),
        relationship(3, "malware--1", "uses", "attack-pattern--2"),
        relationship(4, me, "indicates", "campaign--1"),
        relationship(5, "campaign--1", "attributed-to", "intrusion-set--1"),
        relationship(6, "campaign--1", "uses", "attack-pattern--3"),
        relationship(7, "intrusion-set--1", "attributed-to", "threat-actor--2"),  # 3 steps
        relationship(8, me, "indicates", "threat-actor--1"),
        relationship(9, me, "related-to", "identity--1"),
    ]
    result = from_objects(objects, "test")
    mine, theirs = result.indicators
    assert mine.techniques == ("T1059.001", "T1105")
    assert mine.actors == ("APT-Example", "Crew", "EvilRAT", "Operation Night")
    assert theirs.techniques == () and theirs.actors == ()


def test_revoked_relationships_and_old_versions_are_ignored() -> None:
    first = _indicator("[domain-name:value = 'v1.example']")
    second = {**first, "pattern": "[domain-name:value = 'v2.example']"}
    second["modified"] = "2024-02-01T00:00:00.000Z"
    objects = [
        second,
        first,  # an older version of the same indicator, after the newer one
        {"type": "intrusion-set", "id": "intrusion-set--1", "name": "Gone"},
        {
            "type": "relationship",
            "id": "relationship--1",
            "relationship_type": "indicates",
            "source_ref": first["id"],
            "target_ref": "intrusion-set--1",
            "revoked": True,
        },
    ]
    result = from_objects(objects, "test")
    assert _pairs(result) == [("domain", "v2.example")]
    assert result.indicators[0].actors == ()


def test_stix20_bundle_without_pattern_type_is_imported() -> None:
    bundle = {
        "type": "bundle",
        "id": "bundle--1",
        "spec_version": "2.0",
        "objects": [
            {
                "type": "indicator",
                "id": "indicator--2a",
                "created": "2017-01-01T00:00:00.000Z",
                "modified": "2017-01-01T00:00:00.000Z",
                "labels": ["malicious-activity"],
                "pattern": "[url:value = 'http://bad.example/x'] OR [file:hashes.MD5 = '"
                + "0" * 32
                + "']",
                "valid_from": "2017-01-01T00:00:00Z",
                "x_vendor_score": 7,
            },
            {
                "type": "malware",
                "id": "malware--2a",
                "labels": ["trojan"],
                "name": "OldBot",
            },
            {
                "type": "relationship",
                "id": "relationship--2a",
                "relationship_type": "indicates",
                "source_ref": "indicator--2a",
                "target_ref": "malware--2a",
            },
        ],
    }
    assert is_stix(bundle)
    result = from_objects(bundle["objects"], "stix20")
    assert _pairs(result) == [("url", "bad.example/x"), ("md5", "0" * 32)]
    assert all(i.actors == ("OldBot",) and i.confidence is None for i in result.indicators)
    assert result.indicators[0].tags == ("malicious-activity",)


def test_objects_that_are_not_stix_are_rejected_not_raised() -> None:
    result = from_objects(
        [
            "a string",  # type: ignore[list-item]
            {"no": "type"},
            {"type": "indicator", "pattern": "[file:name = 'x']"},
            {"type": "indicator", "id": "indicator--9"},
        ],
        "test",
    )
    assert [r.reference for r in result.rejected] == [
        "object #0",
        "object #1",
        "object #2",
        "indicator--9",
    ]


def test_bundle_files_plain_gzip_list_and_single_object(tmp_path: Path) -> None:
    objects = [_indicator("[domain-name:value = 'file.example']")]
    bundle = {"type": "bundle", "id": "bundle--1", "objects": objects}
    (tmp_path / "plain.json").write_text(json.dumps(bundle))
    (tmp_path / "packed.json.gz").write_bytes(gzip.compress(json.dumps(bundle).encode()))
    (tmp_path / "list.json").write_text(json.dumps(objects))
    (tmp_path / "one.json").write_text(json.dumps(objects[0]))
    for name in ("plain.json", "packed.json.gz", "list.json", "one.json"):
        result = import_bundle(tmp_path / name)
        assert result.source == f"stix:{name}"
        assert _pairs(result) == [("domain", "file.example")], name
        assert result.indicators[0].source == f"stix:{name}"
    assert import_bundle(tmp_path / "plain.json", source="partner").indicators[0].source == (
        "partner"
    )


@pytest.mark.parametrize(
    "content",
    [b'{"type": "bundle", "objects": [', b"\x1f\x8bnot gzip", b"\xff\xfe\x00garbage", b""],
)
def test_invalid_json_gives_one_rejected_for_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.json"
    path.write_bytes(content)
    result = import_bundle(path)
    [rejected] = result.rejected
    assert rejected.reference == str(path)
    assert rejected.reason.startswith(("not JSON", "damaged gzip"))
    assert not result.indicators


def test_json_that_is_not_stix_gives_one_rejected(tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    path.write_text(json.dumps({"Event": {"uuid": "x"}}))
    [rejected] = import_bundle(path).rejected
    assert "not a STIX" in rejected.reason


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"type": "bundle", "id": "bundle--1", "objects": []}, True),
        ({"type": "indicator", "id": "indicator--1", "pattern": "[a:b = 'c']"}, True),
        ([{"type": "malware", "id": "malware--1"}], True),
        ({"Event": {}}, False),
        ({"type": "bundle", "id": "x"}, False),
        ([], False),
        ([{"type": "malware", "id": "malware--1"}, {"value": 1}], False),
        ("[a:b = 'c']", False),
        (None, False),
    ],
)
def test_is_stix_recognises_bundles_and_objects(doc: Any, expected: bool) -> None:
    assert is_stix(doc) is expected
