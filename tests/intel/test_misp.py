"""MISP events and feeds: the ESET feed against counts taken straight from its JSON files,
incremental pulls by manifest timestamp, the same feed over HTTP, and damaged files."""

from __future__ import annotations

import functools
import gzip
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from vigil.errors import InputError
from vigil.intel.misp import (
    from_event,
    import_event,
    import_feed,
    is_misp_event,
    is_misp_feed,
)

# The Mozi event: 74 attributes for detection, 12 mitre-attack-pattern galaxy tags.
MOZI = "15ebb496-c51c-4f88-b60b-aba5f806db5f"
MOZI_TECHNIQUES = (
    "T1587.001",
    "T1078.001",
    "T1190",
    "T1059.004",
    "T1037.004",
    "T1027.002",
    "T1110.003",
    "T1210",
    "T1071.002",
    "T1001.003",
    "T1489",
    "T1496",
)
BACKDOOR_DIPLOMACY = "a3bc1af1-e021-4685-9dd1-68013abef4d9"

# The independent count: MISP attribute type -> the indicator types it gives. Every address
# in this feed is IPv4; every other type used for detection is one the importer cannot use.
EXPECTED_TYPES = {
    "ip-dst": ["ipv4"],
    "ip-src": ["ipv4"],
    "domain": ["domain"],
    "hostname": ["domain"],
    "domain|ip": ["domain", "ipv4"],
    "url": ["url"],
    "md5": ["md5"],
    "sha1": ["sha1"],
    "sha256": ["sha256"],
    "filename": ["filename"],
    "filename|md5": ["filename", "md5"],
    "filename|sha1": ["filename", "sha1"],
    "filename|sha256": ["filename", "sha256"],
    "email-src": ["email"],
    "email-dst": ["email"],
}


@pytest.fixture(scope="module")
def feed(need_data: Callable[..., Path]) -> Path:
    return need_data("threat_intel", "misp-feed-eset")


def _event_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.json") if p.name != "manifest.json")


def _independent_count(folder: Path) -> tuple[Counter[str], int, int]:
    """(indicators per type, unsupported, skipped) counted from the JSON files directly."""
    types: Counter[str] = Counter()
    unsupported = skipped = 0
    for path in _event_files(folder):
        event = json.loads(path.read_text("utf-8"))["Event"]
        attributes = list(event.get("Attribute", []))
        for obj in event.get("Object", []):
            attributes.extend(obj.get("Attribute", []))
        for attribute in attributes:
            if not attribute["to_ids"] or attribute["deleted"]:
                skipped += 1
            elif attribute["type"] in EXPECTED_TYPES:
                types.update(EXPECTED_TYPES[attribute["type"]])
            else:
                unsupported += 1
    return types, unsupported, skipped


def test_eset_feed_gives_the_attributes_marked_for_detection(feed: Path) -> None:
    result = import_feed(feed)
    types, unsupported, skipped = _independent_count(feed)

    assert Counter(i.type for i in result.indicators) == types
    assert len(result.indicators) == sum(types.values())
    assert len(result.unsupported) == unsupported
    assert result.stats["skipped"] == skipped
    assert result.stats["skipped_not_ids"] == skipped
    assert result.stats["events"] == len(_event_files(feed)) == 24
    assert result.rejected == []
    # the count is not trivially small: most of the feed is context, not detection
    assert len(result.indicators) > 1000 and skipped > 1000
    assert {u.reason for u in result.unsupported} == {"text", "regkey"}
    assert result.source == "misp:misp-feed-eset"


def test_indicators_carry_attribute_uuid_times_and_event_info(feed: Path) -> None:
    path = feed / f"{BACKDOOR_DIPLOMACY}.json"
    event = json.loads(path.read_text("utf-8"))["Event"]
    first = next(a for a in event["Attribute"] if a["to_ids"] and a["type"] == "md5")

    result = import_event(path)

    indicator = next(i for i in result.indicators if i.reference == first["uuid"])
    assert indicator.type == "md5"
    assert indicator.value == first["value"].lower()
    assert indicator.first_seen == indicator.last_seen == float(first["timestamp"])
    assert indicator.description == event["info"]
    assert indicator.confidence == 90  # threat_level_id 1 (high)
    assert indicator.tags == ("ESET", 'osint:source-type="blog-post"')
    assert result.source == f"misp:{BACKDOOR_DIPLOMACY}"


def test_techniques_come_from_the_events_attack_pattern_galaxy_tags(feed: Path) -> None:
    path = feed / f"{MOZI}.json"
    names = [t["name"] for t in json.loads(path.read_text("utf-8"))["Event"]["Tag"]]
    assert sum(n.startswith("misp-galaxy:mitre-attack-pattern=") for n in names) == 12

    result = import_event(path)

    assert len(result.indicators) == 74
    assert {i.techniques for i in result.indicators} == {MOZI_TECHNIQUES}
    assert {i.tags for i in result.indicators} == {("ESET",)}  # galaxy tags are not tags


def test_object_first_seen_is_taken_before_the_timestamp(feed: Path) -> None:
    result = import_event(feed / "13cb1207-0674-4a54-a999-df5ff8e35c1a.json")
    # Ebury: the file objects carry first_seen "2019-06-20T18:38:05+00:00" and the like
    dated = [i for i in result.indicators if i.first_seen and i.first_seen < 1600000000]
    assert dated
    assert all(i.last_seen is not None and i.last_seen >= i.first_seen for i in dated)


def test_cursor_leaves_out_events_already_read(feed: Path) -> None:
    first = import_feed(feed)
    assert first.cursor is not None
    stamps = json.loads(first.cursor)
    manifest = json.loads((feed / "manifest.json").read_text("utf-8"))
    assert stamps == {key: entry["timestamp"] for key, entry in manifest.items()}

    again = import_feed(feed, cursor=first.cursor)
    assert again.indicators == [] and again.unsupported == [] and again.rejected == []
    assert again.stats["events"] == 0 and again.stats["events_unchanged"] == 24
    assert json.loads(again.cursor or "") == stamps

    older = dict(stamps, **{BACKDOOR_DIPLOMACY: stamps[BACKDOOR_DIPLOMACY] - 1})
    third = import_feed(feed, cursor=json.dumps(older))
    alone = import_event(feed / f"{BACKDOOR_DIPLOMACY}.json")
    assert third.stats["events"] == 1
    assert [i.reference for i in third.indicators] == [i.reference for i in alone.indicators]
    assert len(third.indicators) == 66
    assert json.loads(third.cursor or "") == stamps


def test_event_missing_from_the_cursor_is_read(feed: Path) -> None:
    stamps = json.loads(import_feed(feed).cursor or "")
    del stamps[MOZI]
    result = import_feed(feed, cursor=json.dumps(stamps))
    assert result.stats["events"] == 1
    assert len(result.indicators) == 74


def test_malformed_cursor_is_an_input_error(feed: Path) -> None:
    with pytest.raises(InputError, match="cursor"):
        import_feed(feed, cursor="[1, 2]")


@pytest.fixture
def served(feed: Path) -> Iterator[str]:
    """The feed folder served over HTTP on 127.0.0.1, as its base URL."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(feed))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_feed_over_http_gives_what_the_folder_gives(feed: Path, served: str) -> None:
    local = import_feed(feed)
    remote = import_feed(served, source="misp:eset")

    assert Counter(i.type for i in remote.indicators) == Counter(i.type for i in local.indicators)
    assert [i.reference for i in remote.indicators] == [i.reference for i in local.indicators]
    assert len(remote.unsupported) == len(local.unsupported)
    assert remote.stats == local.stats
    assert remote.rejected == []
    assert remote.cursor == local.cursor

    again = import_feed(served + "manifest.json", cursor=remote.cursor)
    assert again.indicators == [] and again.stats["events_unchanged"] == 24


def _small_feed(feed: Path, folder: Path, events: list[str]) -> None:
    """A feed of some of the ESET events, written to a temporary folder."""
    folder.mkdir()
    manifest = json.loads((feed / "manifest.json").read_text("utf-8"))
    subset = {key: manifest[key] for key in events}
    (folder / "manifest.json").write_text(json.dumps(subset), "utf-8")
    for key in events:
        (folder / f"{key}.json").write_bytes((feed / f"{key}.json").read_bytes())


def test_damaged_event_file_is_one_rejected_and_the_rest_is_read(
    feed: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "feed"
    damaged = "5aa2e21b-79d8-4fd7-b15d-34670a016219"
    _small_feed(feed, folder, [MOZI, BACKDOOR_DIPLOMACY, damaged])
    text = (folder / f"{damaged}.json").read_bytes()
    (folder / f"{damaged}.json").write_bytes(text[: len(text) // 2])

    result = import_feed(folder)

    assert [r.reference for r in result.rejected] == [f"{damaged}.json"]
    assert "not JSON" in result.rejected[0].reason
    assert len(result.indicators) == 74 + 66
    assert result.stats["events"] == 2
    # the damaged event stays out of the cursor: the next import tries it again
    assert damaged not in json.loads(result.cursor or "")
    (folder / f"{damaged}.json").write_bytes(text)
    retried = import_feed(folder, cursor=result.cursor)
    assert retried.stats["events"] == 1 and len(retried.indicators) == 330


def test_missing_event_file_is_one_rejected(feed: Path, tmp_path: Path) -> None:
    folder = tmp_path / "feed"
    _small_feed(feed, folder, [MOZI, BACKDOOR_DIPLOMACY])
    (folder / f"{MOZI}.json").unlink()

    result = import_feed(folder)

    assert [r.reference for r in result.rejected] == [f"{MOZI}.json"]
    assert len(result.indicators) == 66


def test_manifest_key_that_is_not_a_uuid_is_rejected_not_followed(tmp_path: Path) -> None:
    folder = tmp_path / "feed"
    folder.mkdir()
    (folder / "manifest.json").write_text('{"../secret": {"timestamp": 1}}', "utf-8")
    result = import_feed(folder)
    assert len(result.rejected) == 1 and "uuid" in result.rejected[0].reason
    assert result.indicators == []


def test_missing_manifest_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="manifest"):
        import_feed(tmp_path)


def test_event_file_forms_give_the_same_indicators(feed: Path, tmp_path: Path) -> None:
    doc = json.loads((feed / f"{MOZI}.json").read_text("utf-8"))
    forms = {
        "wrapped.json": doc,
        "bare.json": doc["Event"],
        "response.json": {"response": [doc]},
        "list.json": [doc],
    }
    for name, form in forms.items():
        (tmp_path / name).write_text(json.dumps(form), "utf-8")
    (tmp_path / "event.json.gz").write_bytes(gzip.compress(json.dumps(doc).encode()))

    for name in [*forms, "event.json.gz"]:
        result = import_event(tmp_path / name)
        assert len(result.indicators) == 74, name
        assert result.rejected == [], name
    assert import_event(tmp_path / "event.json.gz").source == "misp:event"


def test_file_that_is_not_a_misp_event_is_one_rejected(tmp_path: Path) -> None:
    (tmp_path / "other.json").write_text('{"type": "bundle"}', "utf-8")
    (tmp_path / "broken.json").write_text('{"Event": ', "utf-8")
    for name in ("other.json", "broken.json"):
        result = import_event(tmp_path / name)
        assert result.indicators == []
        assert [r.reference for r in result.rejected] == [str(tmp_path / name)]


def test_sniffing_tells_events_and_feeds_from_other_json(feed: Path, tmp_path: Path) -> None:
    doc = json.loads((feed / f"{MOZI}.json").read_text("utf-8"))
    assert is_misp_event(doc) and is_misp_event(doc["Event"])
    assert is_misp_event({"response": [doc]}) and is_misp_event([doc])
    assert not is_misp_event({"type": "bundle", "objects": []})
    assert not is_misp_event([]) and not is_misp_event("text")
    assert is_misp_feed(feed)
    assert not is_misp_feed(tmp_path)
    (tmp_path / "manifest.json").write_text('{"name": "not a feed"}', "utf-8")
    assert not is_misp_feed(tmp_path)


def _attribute(kind: str, value: str, **extra: Any) -> dict[str, Any]:
    number = len(kind) + len(value)
    return {
        "type": kind,
        "value": value,
        "to_ids": True,
        "deleted": False,
        "uuid": f"uuid-{kind}-{number}",
        "timestamp": "1700000000",
        **extra,
    }


def test_attribute_types_map_to_indicator_types() -> None:
    event = {
        "info": "made up",
        "threat_level_id": "2",
        "Attribute": [
            _attribute("ip-dst", "10.0.0.0/8"),
            _attribute("ip-src", "2001:DB8::1"),
            _attribute("ip-dst|port", "192.0.2.1|8443"),
            _attribute("ip-src|port", "2001:db8::2|53"),
            _attribute("hostname", "Mail.Example.ORG."),
            _attribute("domain|ip", "evil.example|192.0.2.7"),
            _attribute("uri", "/gate.php"),
            _attribute("uri", "https://evil.example/gate.php"),
            _attribute("link", "http://evil.example/x"),
            _attribute("filename|sha256", "a.exe|" + "AB" * 32),
            _attribute("email-src", "Bad@Evil.Example"),
            _attribute("ja3-fingerprint-md5", "e7d705a3286e19ea42f587b344ee6865"),
            _attribute("mutex", "Global\\x"),
            _attribute("domain", "not a domain"),
            _attribute("domain", "off.example", to_ids="0"),
            _attribute("domain", "gone.example", deleted=True),
        ],
    }
    result = from_event({"Event": event}, "test")

    assert [(i.type, i.value) for i in result.indicators] == [
        ("cidr", "10.0.0.0/8"),
        ("ipv6", "2001:db8::1"),
        ("ip-port", "192.0.2.1:8443"),
        ("ip-port", "[2001:db8::2]:53"),
        ("domain", "mail.example.org"),
        ("domain", "evil.example"),
        ("ipv4", "192.0.2.7"),
        ("url", "evil.example/gate.php"),
        ("url", "evil.example/x"),
        ("filename", "a.exe"),
        ("sha256", "ab" * 32),
        ("email", "bad@evil.example"),
        ("ja3", "e7d705a3286e19ea42f587b344ee6865"),
        ("domain", "gone.example"),  # deleted in MISP: revoked, so a stored row stops matching
    ]
    assert [i.value for i in result.indicators if i.revoked] == ["gone.example"]
    assert [(u.reason, u.text) for u in result.unsupported] == [
        ("uri without a host", "/gate.php"),
        ("mutex", "Global\\x"),
    ]
    assert [(r.reason, r.text) for r in result.rejected] == [
        ("domain: not a domain name", "not a domain")
    ]
    assert result.stats == {
        "attributes": 16,
        "skipped_not_ids": 1,
        "skipped_deleted": 1,
        "skipped": 2,
    }
    assert {i.confidence for i in result.indicators} == {60}  # threat level 2 (medium)


def test_tags_galaxies_and_judgment_give_provenance() -> None:
    event = {
        "info": "made up",
        "threat_level_id": 4,
        "Tag": [
            {"name": "tlp:white"},
            {"name": 'misp-galaxy:threat-actor="Sofacy"'},
            {"name": 'misp-galaxy:mitre-intrusion-set="APT28 - G0007"'},
            {"name": 'misp-galaxy:mitre-enterprise-attack-attack-pattern="PowerShell - T1086"'},
        ],
        "Galaxy": [
            {
                "type": "mitre-attack-pattern",
                "GalaxyCluster": [
                    {
                        "value": "Phishing - T1566",
                        "tag_name": 'misp-galaxy:mitre-attack-pattern="Phishing - T1566"',
                    }
                ],
            }
        ],
        "Attribute": [
            _attribute(
                "domain",
                "a.example",
                first_seen="2023-01-02T03:04:05+00:00",
                Tag=[
                    {"name": "kill-chain:Delivery"},
                    {"name": 'misp-galaxy:malpedia="X-Agent"'},
                    {"name": 'misp-galaxy:mitre-attack-pattern="Spearphishing Link - T1566.002"'},
                    {"name": 'estimative-language:confidence-in-analytic-judgment="moderate"'},
                ],
            ),
            _attribute("domain", "b.example", last_seen="2023-06-01T00:00:00Z"),
        ],
    }
    result = from_event(event, "test")
    a, b = result.indicators

    assert a.tags == (
        "tlp:white",
        "kill-chain:Delivery",
        'estimative-language:confidence-in-analytic-judgment="moderate"',
    )
    assert a.actors == ("Sofacy", "APT28", "X-Agent")
    assert a.techniques == ("T1086", "T1566", "T1566.002")
    assert a.confidence == 60
    assert a.first_seen == 1672628645.0 and a.last_seen == 1700000000.0
    assert b.tags == ("tlp:white",) and b.actors == ("Sofacy", "APT28")
    assert b.confidence is None  # threat level 4: undefined
    assert b.first_seen == 1700000000.0 and b.last_seen == 1700000000.0  # last_seen < first
