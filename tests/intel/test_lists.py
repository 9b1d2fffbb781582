"""Plain and CSV indicator lists: every maltrail list against counts taken from its lines,
type guesses on known lines, CSV headers, forced types and bad lines."""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from vigil.errors import InputError
from vigil.intel.lists import guess, import_list, is_list
from vigil.intel.model import ImportResult, Indicator

LISTS = [
    "malware/agenttesla.txt",
    "malware/cobaltstrike.txt",
    "malware/emotet.txt",
    "malware/icedid.txt",
    "malware/njrat.txt",
    "malware/qakbot.txt",
    "malware/redline.txt",
    "malware/simda.txt",
    "malware/trickbot.txt",
    "mass_scanner.txt",
]
# The malformed lines of the reference lists, read by eye: `ip:port:port`, port 0, and a
# stray letter before an address.
REJECTED = {
    "malware/cobaltstrike.txt": {
        12159: "139.9.234.13:33:1099",
        12308: "54.246.146.207:22:50050",
        14214: "45.86.163.188:443:444",
    },
    "malware/qakbot.txt": {3783: "122.125.236.31:0"},
    "mass_scanner.txt": {
        17474: "C91.196.152.28 # probe.onyphe.net",
        17484: "C91.196.152.38 # probe.onyphe.net",
        18235: "C91.230.168.27 # probe.onyphe.net",
    },
}


@pytest.fixture(scope="module")
def maltrail(need_data: Callable[..., Path]) -> Path:
    return need_data("threat_intel", "maltrail-subset")


def _entries(path: Path) -> list[str]:
    """The lines that are neither blank nor comments, counted without the importer."""
    lines = path.read_text("utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def _at(result: ImportResult, path: Path, text: str) -> Indicator:
    """The indicator of the line of `path` that is exactly `text`."""
    number = path.read_text("utf-8").splitlines().index(text) + 1
    reference = f"{path.name}:{number}"
    return next(i for i in result.indicators if i.reference == reference)


@pytest.mark.parametrize("name", LISTS)
def test_every_entry_of_a_maltrail_list_is_accounted_for(maltrail: Path, name: str) -> None:
    path = maltrail / name
    entries = _entries(path)
    paths = [e for e in entries if e.startswith("/")]  # URL paths with no host

    result = import_list(path)

    assert {int(r.reference.rpartition(":")[2]): r.text for r in result.rejected} == (
        REJECTED.get(name, {})
    )
    assert len(result.indicators) == len(entries) - len(result.rejected) - len(paths)
    assert len(result.unsupported) == len(paths)
    assert {u.reason for u in result.unsupported} <= {"URL path without a host"}
    assert result.stats["entries"] == len(entries)
    assert result.source == f"list:{path.name}"


def test_types_are_guessed_as_the_lines_say(maltrail: Path) -> None:
    emotet = maltrail / "malware/emotet.txt"
    result = import_list(emotet)
    ip_port = _at(result, emotet, "66.210.228.178:443")
    assert (ip_port.type, ip_port.value) == ("ip-port", "66.210.228.178:443")
    url = _at(result, emotet, "crmweb.info:443/bitrix/rc9XjtwF/")
    assert (url.type, url.value) == ("url", "crmweb.info:443/bitrix/rc9XjtwF/")
    domain = _at(result, emotet, "dvr.petcp.com")
    assert (domain.type, domain.value) == ("domain", "dvr.petcp.com")

    agenttesla = maltrail / "malware/agenttesla.txt"
    result = import_list(agenttesla)
    url = _at(result, agenttesla, "http://37.59.117.243")
    assert (url.type, url.value) == ("url", "37.59.117.243/")
    ftp = _at(result, agenttesla, "ftp://ftp.fasttradeco.com")
    assert (ftp.type, ftp.value) == ("url", "ftp.fasttradeco.com/")

    scanners = maltrail / "mass_scanner.txt"
    result = import_list(scanners)
    v4 = _at(result, scanners, "129.82.138.12 # pinger1a.netsec.colostate.edu")
    assert (v4.type, v4.value) == ("ipv4", "129.82.138.12")
    v6 = _at(result, scanners, "2400:6180:0:d0::1008:2001 # binaryedge.ninja")
    assert (v6.type, v6.value) == ("ipv6", "2400:6180:0:d0::1008:2001")
    tabbed = _at(result, scanners, "185.216.140.249\t# scanner.openportstats.com")
    assert tabbed.value == "185.216.140.249"


def test_trailing_comment_or_latest_reference_is_the_description(maltrail: Path) -> None:
    scanners = maltrail / "mass_scanner.txt"
    v4 = _at(import_list(scanners), scanners, "129.82.138.12 # pinger1a.netsec.colostate.edu")
    assert v4.description == "pinger1a.netsec.colostate.edu"

    agenttesla = maltrail / "malware/agenttesla.txt"
    url = _at(import_list(agenttesla), agenttesla, "http://37.59.117.243")
    # two `# Reference:` lines above it: the nearer one is kept
    assert url.description == "https://www.virustotal.com/#/ip-address/37.59.117.243"


def test_url_path_without_host_is_unsupported(maltrail: Path) -> None:
    trickbot = maltrail / "malware/trickbot.txt"
    result = import_list(trickbot)
    number = trickbot.read_text("utf-8").splitlines().index("/neam.meow") + 1
    unsupported = next(u for u in result.unsupported if u.reference == f"trickbot.txt:{number}")
    assert unsupported.text == "/neam.meow"


def test_simda_is_domains_but_for_one_url(maltrail: Path) -> None:
    simda = maltrail / "malware/simda.txt"
    entries = _entries(simda)
    # the file: every entry a host name, but one `http://` address
    assert [e for e in entries if "/" in e or e.replace(".", "").isdigit()] == [
        "http://176.65.157.89"
    ]

    result = import_list(simda)

    types = Counter(i.type for i in result.indicators)
    assert types == {"domain": len(entries) - 1, "url": 1}
    assert _at(result, simda, "http://176.65.157.89").value == "176.65.157.89/"
    assert result.rejected == [] and result.unsupported == []


def test_family_goes_to_actors_and_tags(maltrail: Path) -> None:
    simda = import_list(maltrail / "malware/simda.txt")
    assert {i.actors for i in simda.indicators} == {("simda",)}
    assert {i.tags for i in simda.indicators} == {("maltrail", "malware", "simda")}

    scanners = import_list(maltrail / "mass_scanner.txt", source="maltrail:scanners")
    assert {i.actors for i in scanners.indicators} == {()}  # scanners are no malware family
    assert {i.tags for i in scanners.indicators} == {("maltrail", "mass_scanner")}
    assert {i.source for i in scanners.indicators} == {"maltrail:scanners"}


def test_csv_header_names_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "partner.csv"
    path.write_text(
        "# exported 2024-01-03\n"
        "indicator,type,confidence,tags,first_seen,last_seen,valid_until,description,extra\n"
        '1.2.3.4,ipv4,80,"c2,apt",2024-01-01T00:00:00Z,1704153600,2025-01-01,first,x\n'
        "Evil.Example,,high,,,,,,\n"
        "http://evil.example/a.exe,url,,,,,,,\n"
        "10.0.0.0/8,,,,,,,,\n",
        "utf-8",
    )

    result = import_list(path)

    assert [(i.type, i.value) for i in result.indicators] == [
        ("ipv4", "1.2.3.4"),
        ("domain", "evil.example"),
        ("url", "evil.example/a.exe"),
        ("cidr", "10.0.0.0/8"),
    ]
    first = result.indicators[0]
    assert first.confidence == 80
    assert first.tags == ("partner", "c2", "apt")
    assert first.first_seen == 1704067200.0
    assert first.last_seen == 1704153600.0
    assert first.valid_until == 1735689600.0
    assert first.description == "first"
    assert first.reference == "partner.csv:3"
    assert result.indicators[1].confidence == 90
    assert result.rejected == []


def test_csv_typed_columns_give_one_indicator_per_cell(tmp_path: Path) -> None:
    path = tmp_path / "hashes.csv"
    path.write_text(
        "sha256_hash;md5_hash;file_name;malware\n"
        f"{'AB' * 32};{'cd' * 16};invoice.exe;Emotet\n"
        f"{'ef' * 32};;;\n",
        "utf-8",
    )
    result = import_list(path)
    assert [(i.type, i.value) for i in result.indicators] == [
        ("sha256", "ab" * 32),
        ("md5", "cd" * 16),
        ("filename", "invoice.exe"),
        ("sha256", "ef" * 32),
    ]
    assert result.indicators[0].actors == ("Emotet",)


def test_commented_csv_header_is_read(tmp_path: Path) -> None:
    path = tmp_path / "urlhaus.csv"
    path.write_text(
        "################\n"
        "# id,dateadded,url,url_status\n"
        '"1","2024-01-01 00:00:00","http://evil.example/a.exe","online"\n',
        "utf-8",
    )
    result = import_list(path)
    assert [(i.type, i.value, i.reference) for i in result.indicators] == [
        ("url", "evil.example/a.exe", "urlhaus.csv:3")
    ]


def test_bad_csv_rows_are_rejected_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "value,type,confidence,first_seen\n"
        "good.example,,,\n"
        "bad..name,domain,,\n"
        "5.6.7.8,,150,\n"
        "9.9.9.9,,,yesterday\n"
        "x.example,mutex,,\n"
        ",ipv4,,\n",
        "utf-8",
    )
    result = import_list(path)
    assert [i.value for i in result.indicators] == ["good.example"]
    assert [(r.reference, r.reason) for r in result.rejected] == [
        ("bad.csv:3", "not a domain name"),
        ("bad.csv:4", "confidence '150' is not 0-100 or high/medium/low"),
        ("bad.csv:5", "first_seen 'yesterday' is not epoch seconds or an ISO 8601 time"),
        ("bad.csv:6", "unknown indicator type 'mutex'"),
        ("bad.csv:7", "no value"),
    ]


def test_bad_plain_lines_are_rejected_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "blocklist.txt"
    path.write_text(
        "# my list\n\nevil.example\nnot an entry\n1.2.3\n999.1.1.1:80\nok.example # why\n",
        "utf-8",
    )
    result = import_list(path)
    assert [(i.value, i.reference) for i in result.indicators] == [
        ("evil.example", "blocklist.txt:3"),
        ("ok.example", "blocklist.txt:7"),
    ]
    assert [(r.reference, r.text) for r in result.rejected] == [
        ("blocklist.txt:4", "not an entry"),
        ("blocklist.txt:5", "1.2.3"),
        ("blocklist.txt:6", "999.1.1.1:80"),
    ]
    assert result.indicators[1].description == "why"
    assert result.indicators[0].tags == ("blocklist",) and result.indicators[0].actors == ()


def test_forced_kind_replaces_the_guess(tmp_path: Path) -> None:
    path = tmp_path / "names.txt"
    path.write_text("d41d8cd98f00b204e9800998ecf8427e\nsetup.exe\n", "utf-8")

    guessed = import_list(path)
    assert [i.type for i in guessed.indicators] == ["md5", "domain"]

    forced = import_list(path, kind="filename")
    assert [(i.type, i.value) for i in forced.indicators] == [
        ("filename", "d41d8cd98f00b204e9800998ecf8427e"),
        ("filename", "setup.exe"),
    ]
    ja3 = import_list(path, kind="ja3")
    assert [i.type for i in ja3.indicators] == ["ja3"]
    assert [r.reference for r in ja3.rejected] == ["names.txt:2"]

    with pytest.raises(InputError, match="unknown indicator type"):
        import_list(path, kind="mutex")


def test_gzip_list_is_read(tmp_path: Path) -> None:
    path = tmp_path / "list.txt.gz"
    path.write_bytes(gzip.compress(b"evil.example\n1.2.3.4\n"))
    result = import_list(path)
    assert [i.type for i in result.indicators] == ["domain", "ipv4"]
    assert result.source == "list:list.txt.gz"


def test_guess_tells_each_form_apart() -> None:
    assert guess("10.1.2.0/24") == ("cidr", "10.1.2.0/24")
    assert guess("[2001:db8::1]:443") == ("ip-port", "[2001:db8::1]:443")
    assert guess("Bad@Evil.Example") == ("email", "bad@evil.example")
    assert guess("A" * 40) == ("sha1", "a" * 40)
    assert guess("b" * 64) == ("sha256", "b" * 64)
    assert guess("EVIL.example.") == ("domain", "evil.example")
    with pytest.raises(ValueError, match="domain name with a port"):
        guess("evil.example:8080")


def test_list_sniffing(maltrail: Path) -> None:
    assert is_list((maltrail / "malware/simda.txt").read_bytes()[:4096])
    assert is_list((maltrail / "mass_scanner.txt").read_bytes()[:4096])
    assert is_list(b"value,type\n1.2.3.4,ipv4\n")
    assert not is_list(b"Hello world, this is prose.\n")
    assert not is_list(b"\x00\x01binary")
