"""TAXII 2.1 pulls against a real medallion server run as a subprocess: paging, cursors,
discovery, and errors that name the URL and never the password."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from vigil.errors import InputError, VigilError
from vigil.intel import stix, taxii
from vigil.intel.taxii import TaxiiError, pull

MEDALLION = Path(sys.executable).parent / "medallion"
MEDIA = "application/stix+json;version=2.1"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def _serving(command: list[str], probe_url: str, log: Path) -> Iterator[None]:
    """Run a server until the block ends; wait until `probe_url` answers (any status)."""
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited early: {log.read_text(errors='replace')}")
            try:
                requests.get(probe_url, timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    pytest.fail(f"server did not answer: {log.read_text(errors='replace')}")
                time.sleep(0.1)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def _medallion(folder: Path, config: dict[str, Any], port: int) -> Iterator[str]:
    """A medallion server on `port` with `config`; yields its base URL."""
    if not MEDALLION.exists():
        pytest.skip(f"medallion not installed at {MEDALLION}")
    path = folder / "medallion-config.json"
    path.write_text(json.dumps(config))
    base = f"http://127.0.0.1:{port}/"
    command = [str(MEDALLION), "--host", "127.0.0.1", "--port", str(port), str(path)]
    with _serving(command, base + "taxii2/", folder / "medallion.log"):
        yield base


@pytest.fixture(scope="module")
def shipped(need_data: Callable[..., Path]) -> tuple[Path, dict[str, Any]]:
    """The real-data file and the medallion config that comes with it (read in place)."""
    folder = need_data("threat_intel", "taxii-medallion")
    config = json.loads((folder / "medallion-3.0.0-config.json").read_text("utf-8"))
    return folder / "taxii_realdata.json", config


@pytest.fixture(scope="module")
def login(shipped: tuple[Path, dict[str, Any]]) -> tuple[str, str]:
    user, password = next(iter(shipped[1]["users"].items()))
    return user, password


@pytest.fixture(scope="module")
def realdata(shipped: tuple[Path, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The collections of the data file by title, read with plain json."""
    data = json.loads(shipped[0].read_text("utf-8"))
    return {c["title"]: c for c in data["intel"]["collections"]}


@pytest.fixture(scope="module")
def api_root(
    shipped: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The URL of the /intel/ API root of a medallion server holding taxii_realdata.json."""
    data, config = shipped
    config = json.loads(json.dumps(config))
    config["backend"]["filename"] = str(data.resolve())  # the shipped config says it relatively
    folder = tmp_path_factory.mktemp("medallion")
    with _medallion(folder, config, _free_port()) as base:
        yield base + "intel/"


def _newest(collection: dict[str, Any]) -> str:
    return max(collection["manifest"], key=lambda m: m["date_added"])["date_added"]


@pytest.mark.parametrize("page_size", [100, 30])
def test_pull_pages_through_every_collection_and_gets_all_their_objects(
    api_root: str,
    login: tuple[str, str],
    realdata: dict[str, dict[str, Any]],
    shipped: tuple[Path, dict[str, Any]],
    page_size: int,
) -> None:
    assert page_size <= shipped[1]["taxii"]["max_page_size"]
    user, password = login
    result = pull(api_root, user=user, password=password, page_size=page_size)

    assert set(realdata) == {"apt1", "poisonivy"}
    assert result.stats["collections"] == 2
    for title, collection in realdata.items():
        count = len(collection["objects"])
        assert result.stats[f"objects:{title}"] == count
        assert result.stats[f"pages:{title}"] == math.ceil(count / page_size)
    assert len(realdata["poisonivy"]["objects"]) == 155
    assert result.stats["pages:poisonivy"] > 1
    assert result.stats["objects"] == 76 + 155

    # What came over the wire imports as the data file's objects do.
    for title, collection in realdata.items():
        source = f"taxii:intel/{title}"
        local = stix.from_objects(collection["objects"], source)
        pulled = [i for i in result.indicators if i.source == source]
        assert sorted((i.reference, i.type, i.value) for i in pulled) == sorted(
            (i.reference, i.type, i.value) for i in local.indicators
        )
    assert len([i for i in result.indicators if i.source == "taxii:intel/apt1"]) == 10
    assert len([i for i in result.indicators if i.source == "taxii:intel/poisonivy"]) == 66
    assert len(result.unsupported) == 2 and len(result.rejected) == 1
    assert result.source == "taxii:intel"


def test_pulling_again_from_the_cursor_gives_nothing_new(
    api_root: str, login: tuple[str, str], realdata: dict[str, dict[str, Any]]
) -> None:
    user, password = login
    first = pull(api_root, user=user, password=password)
    assert first.cursor is not None
    assert json.loads(first.cursor) == {c["id"]: _newest(c) for c in realdata.values()}

    again = pull(api_root, user=user, password=password, added_after=first.cursor)
    assert again.stats["objects"] == 0
    assert again.indicators == [] and again.unsupported == [] and again.rejected == []
    assert again.cursor == first.cursor

    # A plain date applies to every collection.
    newest = max(_newest(c) for c in realdata.values())
    assert pull(api_root, user=user, password=password, added_after=newest).stats["objects"] == 0
    everything = pull(api_root, user=user, password=password, added_after="2000-01-01T00:00:00Z")
    assert everything.stats["objects"] == 231


def test_one_collection_by_title_or_id_keeps_the_other_cursors(
    api_root: str, login: tuple[str, str], realdata: dict[str, dict[str, Any]]
) -> None:
    user, password = login
    poisonivy, apt1 = realdata["poisonivy"], realdata["apt1"]
    only = pull(api_root, collection="poisonivy", user=user, password=password, page_size=40)
    assert only.source == "taxii:intel/poisonivy"
    assert only.stats["collections"] == 1 and only.stats["pages"] == 4  # 155 = 40+40+40+35
    assert json.loads(only.cursor or "") == {poisonivy["id"]: _newest(poisonivy)}

    by_id = pull(
        api_root, collection=apt1["id"], user=user, password=password, added_after=only.cursor
    )
    assert by_id.stats["objects"] == len(apt1["objects"])  # no date for apt1 yet: all of it
    assert json.loads(by_id.cursor or "") == {
        poisonivy["id"]: _newest(poisonivy),
        apt1["id"]: _newest(apt1),
    }


def test_manifest_gives_the_same_newest_date_as_the_headers(
    api_root: str, login: tuple[str, str], realdata: dict[str, dict[str, Any]]
) -> None:
    # The fallback for servers that send no X-TAXII-Date-Added-Last header.
    connection = taxii._Connection(*login, verify=True)
    try:
        [(_, collection)] = taxii._collections(api_root, connection, "poisonivy")
        newest = taxii._newest_in_manifest(collection, connection, None, 50)
    finally:
        connection.close()
    assert newest == _newest(realdata["poisonivy"])


def test_wrong_password_is_a_taxii_error_naming_401_and_not_the_password(
    api_root: str, login: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    secret = "Not-The-Password-7341"
    with pytest.raises(TaxiiError) as raised:
        pull(api_root, user=login[0], password=secret)
    message = str(raised.value)
    assert "401" in message and api_root in message
    shown = "".join(traceback.format_exception(raised.value))
    assert secret not in shown and secret not in caplog.text
    assert isinstance(raised.value, VigilError)


def test_credentials_in_the_url_are_not_shown(api_root: str) -> None:
    url = api_root.replace("http://", "http://admin:Url-Secret-99@")
    with pytest.raises(TaxiiError) as raised:
        pull(url, collection="nothing-of-that-name")
    assert "Url-Secret-99" not in "".join(traceback.format_exception(raised.value))


def test_unknown_collection_is_a_taxii_error(api_root: str, login: tuple[str, str]) -> None:
    with pytest.raises(TaxiiError, match="no collection with the id or title 'nope'"):
        pull(api_root, collection="nope", user=login[0], password=login[1])


def test_unknown_api_root_is_a_taxii_error_naming_404(
    api_root: str, login: tuple[str, str]
) -> None:
    url = api_root.replace("/intel/", "/nowhere/")
    with pytest.raises(TaxiiError, match="404") as raised:
        pull(url, user=login[0], password=login[1])
    assert url in str(raised.value)


def test_unreachable_server_is_a_taxii_error() -> None:
    url = f"http://127.0.0.1:{_free_port()}/intel/"
    with pytest.raises(TaxiiError, match="cannot connect") as raised:
        pull(url, user="admin", password="Sup3r-Secret")
    assert url in str(raised.value) and "Sup3r-Secret" not in str(raised.value)


def test_answers_that_are_not_taxii_are_taxii_errors(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "list").mkdir(parents=True)
    (site / "list" / "index.html").write_text("[1, 2, 3]")
    (site / "page").mkdir()
    (site / "page" / "index.html").write_text("<html><body>login</body></html>")
    port = _free_port()
    base = f"http://127.0.0.1:{port}/"
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    command += ["--directory", str(site)]
    with _serving(command, base, tmp_path / "http.log"):
        with pytest.raises(TaxiiError, match="not JSON"):
            pull(base + "page/")
        with pytest.raises(TaxiiError, match="not a valid TAXII"):
            pull(base + "list/")


@pytest.mark.parametrize(
    ("added_after", "page_size"),
    [("yesterday", 100), ('{"x": "soon"}', 100), ("[1]", 100), (None, 0)],
)
def test_unusable_options_are_input_errors(added_after: str | None, page_size: int) -> None:
    # Refused before any connection is made: the URL leads nowhere.
    with pytest.raises(InputError):
        pull("http://127.0.0.1:9/", added_after=added_after, page_size=page_size)


def _indicator(number: int, domain: str) -> dict[str, Any]:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--00000000-0000-4000-8000-{number:012d}",
        "created": "2024-01-01T00:00:00.000Z",
        "modified": "2024-01-01T00:00:00.000Z",
        "valid_from": "2024-01-01T00:00:00Z",
        "pattern": f"[domain-name:value = '{domain}']",
        "pattern_type": "stix",
    }


def _collection(key: str, title: str, objects: list[dict[str, Any]], **extra: Any) -> Any:
    return {
        "id": key,
        "title": title,
        "can_read": True,
        "can_write": False,
        "media_types": [MEDIA],
        "objects": objects,
        "manifest": [
            {
                "id": o["id"],
                "date_added": f"2024-02-0{n + 1}T00:00:00.000000Z",
                "version": o["modified"],
                "media_type": MEDIA,
            }
            for n, o in enumerate(objects)
        ],
        **extra,
    }


def test_discovery_url_leads_to_every_api_root(tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}/"
    data = {
        "/discovery": {
            "title": "two roots",
            "api_roots": [base + "east/", base + "west/"],
            "default": base + "east/",
        },
        "east": {
            "information": {"title": "East", "versions": [MEDIA], "max_content_length": 1000},
            "status": [],
            "collections": [
                _collection(
                    "11111111-1111-4111-8111-111111111111",
                    "feeds",
                    [_indicator(1, "one.example"), _indicator(2, "two.example")],
                ),
                _collection(
                    "22222222-2222-4222-8222-222222222222",
                    "sealed",
                    [_indicator(3, "hidden.example")],
                    can_read=False,
                    can_write=True,
                ),
            ],
        },
        "west": {
            "information": {"title": "West", "versions": [MEDIA], "max_content_length": 1000},
            "status": [],
            "collections": [
                _collection(
                    "33333333-3333-4333-8333-333333333333",
                    "more",
                    [_indicator(4, "three.example")],
                )
            ],
        },
    }
    (tmp_path / "data.json").write_text(json.dumps(data))
    config = {
        "backend": {
            "module": "medallion.backends.memory_backend",
            "module_class": "MemoryBackend",
            "filename": str(tmp_path / "data.json"),
        },
        "users": {"reader": "Reader-Pass-1"},
        "taxii": {"max_page_size": 100},
    }
    with _medallion(tmp_path, config, port):
        result = pull(base + "taxii2/", user="reader", password="Reader-Pass-1", page_size=1)
        with pytest.raises(TaxiiError, match="not readable"):
            pull(base + "taxii2/", collection="sealed", user="reader", password="Reader-Pass-1")

    assert sorted((i.source, i.value) for i in result.indicators) == [
        ("taxii:East/feeds", "one.example"),
        ("taxii:East/feeds", "two.example"),
        ("taxii:West/more", "three.example"),
    ]
    assert result.stats["collections"] == 2  # `sealed` cannot be read: left out
    assert result.stats["pages:feeds"] == 2
    assert json.loads(result.cursor or "") == {
        "11111111-1111-4111-8111-111111111111": "2024-02-02T00:00:00.000000Z",
        "33333333-3333-4333-8333-333333333333": "2024-02-01T00:00:00.000000Z",
    }
    assert result.source == f"taxii:{base}taxii2/"
