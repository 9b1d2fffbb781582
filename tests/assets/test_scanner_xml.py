"""The network scanners' importers (nmap XML, masscan JSON, OpenVAS XML and CSV) on the real
sample files, each file's counts checked against a parse done here with the standard library,
a few values read by hand from the files, and the hostile XML refused."""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as StdET
from collections.abc import Callable
from pathlib import Path

import pytest
from defusedxml.common import DefusedXmlException

from vigil.assets import masscan, nmap, openvas
from vigil.assets.model import Inventory
from vigil.errors import InputError

DEFUSED = ("defused_et_included.xml", "defused_et_local_includer.xml")
CVE = re.compile(r"CVE-\d{4}-\d+", re.IGNORECASE)
NOT_FINDINGS = {"log", "debug", "false positive", "error"}


def _kinds(inventory: Inventory, kind: str) -> set[str]:
    return {node.key for node in inventory.nodes.values() if node.kind == kind}


def _nmap_files(need_data: Callable[..., Path]) -> list[Path]:
    libnmap = need_data("asset_vuln", "nmap-xml-libnmap")
    dojo = need_data("asset_vuln", "defectdojo-scanner-samples", "nmap")
    files = sorted(libnmap.glob("*.xml")) + sorted(dojo.glob("*.xml"))
    return [f for f in files if f.name not in DEFUSED]


# --- counts from an independent parse ----------------------------------------------------------


def _nmap_expected(path: Path) -> dict[str, set[str]]:
    """Hosts up (first host name, lower case, else address), open ports, software named with
    product and version, CVEs the vulners script listed."""
    root = StdET.parse(path).getroot()  # the sample files are known not to be hostile
    out: dict[str, set[str]] = {k: set() for k in ("host", "service", "software", "cve")}
    for host in root.findall("host"):
        if host.find("status").get("state") != "up":
            continue
        names = [h.get("name") for h in host.iter("hostname")]
        addrs = [a.get("addr") for a in host.findall("address") if a.get("addrtype") != "mac"]
        key = names[0].lower() if names else addrs[0]
        out["host"].add(key)
        for port in host.iter("port"):
            if port.find("state").get("state") != "open":
                continue
            out["service"].add(f"{key}:{port.get('protocol')}/{port.get('portid')}")
            service = port.find("service")
            if service is not None and service.get("product") and service.get("version"):
                out["software"].add(f"{service.get('product')}@{service.get('version')}".lower())
            for script in port.findall("script[@id='vulners']"):
                for elem in script.iter("elem"):
                    if elem.get("key") == "id" and CVE.fullmatch(elem.text or ""):
                        out["cve"].add(elem.text.lower())
    return out


def test_every_nmap_sample_imports_with_the_counts_of_an_independent_parse(need_data):
    totals = {"host": 0, "service": 0, "software": 0, "cve": 0}
    for path in _nmap_files(need_data):
        inventory = nmap.read(path.read_bytes(), path.name)
        expected = _nmap_expected(path)
        assert _kinds(inventory, "host") == expected["host"], path.name
        assert _kinds(inventory, "service") == expected["service"], path.name
        assert _kinds(inventory, "software") == expected["software"], path.name
        assert _kinds(inventory, "vulnerability") == expected["cve"], path.name
        assert inventory.report.records_read == len(StdET.parse(path).getroot().findall("host"))
        assert inventory.report.records_rejected == 0, path.name
        assert inventory.edge_count("exposes") == len(expected["service"]), path.name
        for kind in totals:
            totals[kind] += len(expected[kind])
    # Files that are not empty of what matters: ports were found and a CVE was named.
    assert totals["service"] > 50 and totals["software"] >= 4 and totals["cve"] == 2


def test_every_masscan_sample_imports_with_the_counts_of_an_independent_parse(need_data):
    folder = need_data("asset_vuln", "defectdojo-scanner-samples", "masscan")
    files = sorted(folder.glob("*.json"))
    assert files
    for path in files:
        records = json.loads(path.read_text("utf-8"))
        hosts = {r["ip"] for r in records}
        services = {
            f"{r['ip']}:{p['proto']}/{p['port']}"
            for r in records
            for p in r["ports"]
            if p.get("status") == "open"
        }
        inventory = masscan.read(path.read_bytes(), path.name)
        assert _kinds(inventory, "host") == hosts
        assert _kinds(inventory, "service") == services
        assert inventory.report.records_read == len(records)
        assert inventory.report.records_rejected == 0


def _openvas_expected_csv(path: Path) -> tuple[set[str], set[str], set[str], int]:
    hosts, services, vulnerabilities = set(), set(), set()
    with path.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    names = {row["IP"]: row["Hostname"].lower() for row in rows if row["Hostname"]}
    for row in rows:
        key = names.get(row["IP"], row["IP"])
        hosts.add(key)
        if row["Port"]:
            services.add(f"{key}:{row['Port Protocol']}/{row['Port']}")
        if row["Severity"].lower() in NOT_FINDINGS:
            continue
        cves = CVE.findall(row["CVEs"]) or CVE.findall(row["NVT OID"])
        vulnerabilities |= {c.lower() for c in cves} or {f"openvas:{row['NVT OID']}"}
    return hosts, services, vulnerabilities, len(rows)


def _openvas_expected_xml(path: Path) -> tuple[set[str], set[str], set[str], int]:
    hosts, services, vulnerabilities = set(), set(), set()
    results = [r for rs in StdET.parse(path).getroot().iter("results") for r in rs]
    for result in results:
        host = result.find("host")
        key = (host.findtext("hostname") or host.text).strip().lower()
        hosts.add(key)
        port = re.match(r"(\d+)/(\w+)", result.findtext("port"))
        if port:
            services.add(f"{key}:{port.group(2)}/{port.group(1)}")
        if result.findtext("threat").lower() in NOT_FINDINGS:
            continue
        nvt = result.find("nvt")
        cves = {r.get("id").lower() for r in nvt.iter("ref") if r.get("type") == "cve"}
        vulnerabilities |= cves or {f"openvas:{nvt.get('oid')}"}
    return hosts, services, vulnerabilities, len(results)


def test_every_openvas_sample_imports_with_the_counts_of_an_independent_parse(need_data):
    folder = need_data("asset_vuln", "defectdojo-scanner-samples", "openvas")
    files = sorted(folder.glob("*.csv")) + sorted(folder.glob("*.xml"))
    assert len(files) == 7
    found = 0
    for path in files:
        expected = (_openvas_expected_csv if path.suffix == ".csv" else _openvas_expected_xml)(path)
        hosts, services, vulnerabilities, records = expected
        inventory = openvas.read(path.read_bytes(), path.name)
        assert _kinds(inventory, "host") == hosts, path.name
        assert _kinds(inventory, "service") == services, path.name
        assert _kinds(inventory, "vulnerability") == vulnerabilities, path.name
        assert inventory.report.records_read == records, path.name
        assert inventory.report.records_rejected == 0, path.name
        found += len(vulnerabilities)
    assert found == 5 + 1 + 93 + 93 + 43 + 1  # no_vuln.xml has none


# --- values read by hand from the files --------------------------------------------------------


def _read(read: Callable[[bytes, str], Inventory], path: Path) -> Inventory:
    return read(path.read_bytes(), path.name)


def test_nmap_host_os_addresses_and_times_are_read(need_data):
    libnmap = need_data("asset_vuln", "nmap-xml-libnmap")
    version = _read(nmap.read, libnmap / "2_hosts_version.xml")
    scanme = version.nodes["host:scanme.nmap.org"]
    assert scanme.attrs["os"] == "Netgear DG834G WAP"  # the most accurate osmatch, 92
    assert scanme.attrs["os_accuracy"] == 92
    assert scanme.attrs["ip"] == "74.207.244.221"
    assert scanme.attrs["port_states"] == {"closed": 996, "filtered": 1}
    assert scanme.attrs["first_seen"] == 1361737689.0
    assert scanme.attrs["last_seen"] == 1361737830.0
    assert "service:scanme.nmap.org:tcp/25" not in version.nodes  # filtered, not a service

    osclass = _read(nmap.read, libnmap / "test_osclass.xml")
    assert osclass.nodes["host:localhost"].attrs["os"] == "Linux 3.7 - 3.15"
    assert osclass.count("address") == 0  # its address is the text "IP": left out, said so
    assert "'IP'" in osclass.report.warnings[0].reason

    ping = _read(nmap.read, libnmap / "1_host_ping.xml")
    dionaea = ping.nodes["host:dionaea"]
    assert (dionaea.attrs["mac"], dionaea.attrs["hostnames"]) == (
        "02:42:ac:1c:01:03",
        ["dionaea", "dionaea.honeynet_testing_net"],
    )
    assert ping.nodes["address:02:42:ac:1c:01:03"].attrs["type"] == "mac"
    changed = _read(nmap.read, libnmap / "diff_1_host_ping_mac_changed.xml")
    assert changed.nodes["host:dionaea"].attrs["mac"] == "02:42:ac:1c:01:04"

    nameless = _read(nmap.read, libnmap / "1_hosts_nohostname.xml")
    assert set(nameless.nodes) == {"host:1.1.1.1", "address:1.1.1.1"}  # 22, 80 filtered


def test_nmap_service_product_version_and_software_are_read(need_data):
    path = need_data("asset_vuln", "nmap-xml-libnmap", "1_os_banner_scripts.xml")
    inventory = _read(nmap.read, path)
    http = inventory.nodes["service:localhost:tcp/80"]
    assert http.name == "http"
    assert (http.attrs["product"], http.attrs["version"], http.attrs["extrainfo"]) == (
        "Apache httpd",
        "2.2.15",
        "(CentOS) PHP/5.3.3",
    )
    assert inventory.nodes["software:apache httpd@2.2.15"].name == "Apache httpd 2.2.15"
    assert ("runs", "service:localhost:tcp/80", "software:apache httpd@2.2.15") in {
        (e.kind, e.src, e.dst) for e in inventory.edges
    }
    # Postfix names no version: a service, not a software node.
    assert inventory.nodes["service:localhost:tcp/25"].attrs["product"] == "Postfix smtpd"
    assert not any(key.startswith("postfix") for key in _kinds(inventory, "software"))


def test_nmap_vulners_cves_with_their_cvss_hang_off_the_software(need_data):
    path = need_data("asset_vuln", "defectdojo-scanner-samples", "nmap", "nmap_script_vulners.xml")
    inventory = _read(nmap.read, path)
    cve = inventory.nodes["vulnerability:cve-2018-15919"]
    assert (cve.name, cve.attrs["cvss"]) == ("CVE-2018-15919", 5.0)
    software = inventory.nodes["software:openssh@7.4"]
    assert software.attrs["cpe"] == "cpe:/a:openbsd:openssh:7.4"
    edges = {(e.kind, e.src, e.dst) for e in inventory.edges}
    assert ("vulnerable_to", "software:openssh@7.4", "vulnerability:cve-2018-15919") in edges
    assert ("exposes", "host:192.168.0.1", "service:192.168.0.1:tcp/5022") in edges


def test_openvas_csv_and_xml_of_one_report_give_the_same_inventory(need_data):
    folder = need_data("asset_vuln", "defectdojo-scanner-samples", "openvas")
    from_csv = _read(openvas.read, folder / "report_detail_v2.csv")
    from_xml = _read(openvas.read, folder / "report_detail_v2.xml")
    assert set(from_csv.nodes) == set(from_xml.nodes)
    assert set(from_csv.edges) == set(from_xml.edges)
    host = from_xml.nodes["host:server99"]
    assert host.attrs["ip"] == "10.99.99.99"
    # 95 CVEs on one NVT: each gets the NVT's score as the NVT's, not as its own CVSS.
    cve = from_xml.nodes["vulnerability:cve-2025-47981"]
    assert cve.attrs["nvt_cvss"] == 9.8 and "cvss" not in cve.attrs
    assert cve.attrs["nvt_oid"] == "1.3.6.1.4.1.25623.1.0.836484"
    assert ("vulnerable_to", "service:server99:tcp/42", "vulnerability:cve-2025-47981") in {
        (e.kind, e.src, e.dst) for e in from_xml.edges
    }


def test_openvas_findings_keyed_by_cve_else_nvt_and_log_results_are_not_findings(need_data):
    folder = need_data("asset_vuln", "defectdojo-scanner-samples", "openvas")
    by_cve = _read(openvas.read, folder / "report_using_CVE.csv")
    cve = by_cve.nodes["vulnerability:cve-2021-26691"]
    assert (cve.attrs["cvss"], cve.attrs["severity"]) == (9.8, "High")
    assert "nvt_oid" not in cve.attrs  # the CVE scanner's "OID" is the CVE itself

    many = _read(openvas.read, folder / "many_vuln.csv")
    brute = many.nodes["vulnerability:openvas:1.3.6.1.4.1.25623.1.0.103240"]
    assert brute.name == "HTTP Brute Force Logins With Default Credentials Reporting"
    assert (brute.attrs["cvss"], brute.attrs["severity"]) == (9.0, "High")
    edges = {(e.kind, e.src, e.dst) for e in many.edges}
    timestamps = "vulnerability:openvas:1.3.6.1.4.1.25623.1.0.80091"
    assert ("vulnerable_to", "host:logsrv", timestamps) in edges  # a general result
    assert ("vulnerable_to", "service:logsrv:tcp/9200", brute.id) in edges
    assert many.nodes["host:logsrv"].attrs["ip"] == "192.168.118.212"

    logs = _read(openvas.read, folder / "report_using_openVAS.csv")
    assert _kinds(logs, "vulnerability") == {"openvas:1.3.6.1.4.1.25623.1.0.80091"}
    assert _kinds(logs, "service") == {"45.33.32.156:tcp/80", "45.33.32.156:tcp/443"}


def test_masscan_sample_service_is_read(need_data):
    path = need_data("asset_vuln", "defectdojo-scanner-samples", "masscan", "masscan_one_vuln.json")
    inventory = _read(masscan.read, path)
    service = inventory.nodes["service:172.29.0.3:tcp/80"]
    assert (service.attrs["state"], service.attrs["reason"], service.attrs["ttl"]) == (
        "open",
        "syn-ack",
        64,
    )
    assert inventory.nodes["host:172.29.0.3"].attrs["first_seen"] == 1785521920.0


def test_each_sample_is_sniffed_by_its_own_importer_only(need_data):
    samples = need_data("asset_vuln", "defectdojo-scanner-samples")
    cases = [(p, "nmap") for p in _nmap_files(need_data)]
    cases += [(p, "masscan") for p in sorted((samples / "masscan").iterdir())]
    cases += [(p, "openvas") for p in sorted((samples / "openvas").iterdir())]
    for path, expected in cases:
        head = path.read_bytes()[: 64 << 10]
        said = [m.FORMAT for m in (nmap, openvas, masscan) if m.sniff(path.name, head)]
        assert said == [expected], path.name


# --- hostile and odd input ---------------------------------------------------------------------


def test_the_defused_samples_are_refused_naming_the_file(need_data):
    folder = need_data("asset_vuln", "nmap-xml-libnmap")
    for name in DEFUSED:
        with pytest.raises(InputError) as raised:
            nmap.read((folder / name).read_bytes(), name)
        assert name in str(raised.value)
    with pytest.raises(InputError) as raised:
        nmap.read((folder / DEFUSED[1]).read_bytes(), DEFUSED[1])
    # Refused at the declaration, by the guard: not a parse that went on and failed later.
    assert "entity/DTD tricks are refused" in str(raised.value)
    assert isinstance(raised.value.__cause__, DefusedXmlException)
    # The other is a plain document with no DTD, refused for not being nmap's.
    with pytest.raises(InputError, match="not nmap XML"):
        nmap.read((folder / DEFUSED[0]).read_bytes(), DEFUSED[0])


HOSTILE = {
    "external entity": (
        '<?xml version="1.0"?><!DOCTYPE nmaprun [<!ENTITY x SYSTEM "file://{secret}">]>'
        '<nmaprun><host><status state="up"/><address addr="10.0.0.1" addrtype="ipv4"/>'
        '<hostnames><hostname name="&x;"/></hostnames></host></nmaprun>'
    ),
    "billion laughs": (
        '<?xml version="1.0"?><!DOCTYPE report [<!ENTITY a "{marker}">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>'
        "<report><nvt>&c;</nvt></report>"
    ),
    "external DTD": ('<?xml version="1.0"?><!DOCTYPE nmaprun SYSTEM "file://{secret}"><nmaprun/>'),
}


@pytest.mark.parametrize("trick", sorted(HOSTILE))
@pytest.mark.parametrize("module", [nmap, openvas], ids=["nmap", "openvas"])
def test_entity_and_dtd_tricks_are_refused_and_nothing_is_expanded(tmp_path, trick, module):
    marker = "SECRET-MARKER-7f3a"
    secret = tmp_path / "secret.txt"
    secret.write_text(marker)
    text = HOSTILE[trick].replace("{secret}", str(secret)).replace("{marker}", marker)
    with pytest.raises(InputError) as raised:
        module.read(text.encode(), "evil.xml")
    message = str(raised.value)
    assert message.startswith("evil.xml: refused") and "entity/DTD" in message
    assert marker not in message
    assert isinstance(raised.value.__cause__, DefusedXmlException)


def test_a_bare_doctype_as_nmap_writes_it_is_read():
    text = (
        b'<?xml version="1.0"?><!DOCTYPE nmaprun><nmaprun><host><status state="up"/>'
        b'<address addr="10.0.0.1" addrtype="ipv4"/></host></nmaprun>'
    )
    assert set(nmap.read(text, "ok.xml").nodes) == {"host:10.0.0.1", "address:10.0.0.1"}


def test_nmap_hosts_down_are_counted_not_imported_and_a_host_with_no_address_is_set_aside():
    text = b"""<nmaprun>
    <host><status state="down"/><address addr="10.0.0.2" addrtype="ipv4"/></host>
    <host><status state="up"/><address addr="fe80::0:1" addrtype="ipv6"/>
      <ports><port protocol="udp" portid="53"><state state="open"/>
        <service name="domain"/></port></ports></host>
    <host><status state="up"/><address addr="not-an-ip" addrtype="ipv4"/></host>
    </nmaprun>"""
    inventory = nmap.read(text, "scan.xml")
    assert _kinds(inventory, "host") == {"fe80::1"}
    assert _kinds(inventory, "service") == {"fe80::1:udp/53"}
    report = inventory.report
    assert (report.records_read, report.records_rejected) == (3, 1)
    assert report.rejects[0].record == "host 3"
    assert any("1 down" in w.reason for w in report.warnings)


def test_not_nmap_xml_is_an_input_error_naming_the_file():
    for text in (b"", b"<nmaprun><host>", b"{}"):
        with pytest.raises(InputError, match=r"^scan\.xml: "):
            nmap.read(text, "scan.xml")


def test_masscan_malformed_json_is_read_a_line_at_a_time_and_bad_lines_set_aside():
    # A comma after the last record, no closing bracket, a cut line, a bad IP, the trailer.
    lines = [
        "[",
        '{   "ip": "10.0.0.1",   "timestamp": "1700000000", "ports": [ {"port": 22, '
        '"proto": "tcp", "status": "open", "reason": "syn-ack", "ttl": 64} ] },',
        '{   "ip": "10.0.0.1",   "timestamp": "1700000100", "ports": [ {"port": 80, '
        '"proto": "tcp", "service": {"name": "http", "banner": "nginx"} } ] },',
        '{   "ip": "10.0.0.2",   "timestamp": "1700000000", "ports": [ {"port": 443, '
        '"proto": "tcp", "status": "closed"} ] },',
        '{   "ip": "10.0.0.3",   "timestamp": "17000',
        '{   "ip": "999.0.0.1",   "timestamp": "1700000000", "ports": [] },',
        '{   "ip": "10.0.0.4",   "timestamp": "1700000000", "ports": [ {"port": 0, '
        '"proto": "icmp", "status": "open"} ] },',
        "{finished: 1}",
    ]
    text = "\n".join(lines).encode()
    inventory = masscan.read(text, "scan.json")
    assert _kinds(inventory, "host") == {"10.0.0.1", "10.0.0.2", "10.0.0.4"}
    assert _kinds(inventory, "service") == {"10.0.0.1:tcp/22", "10.0.0.1:tcp/80"}
    http = inventory.nodes["service:10.0.0.1:tcp/80"]
    assert (http.name, http.attrs["banner"], http.attrs["state"]) == ("http", "nginx", "open")
    host = inventory.nodes["host:10.0.0.1"]
    assert (host.attrs["first_seen"], host.attrs["last_seen"]) == (1700000000.0, 1700000100.0)
    report = inventory.report
    assert (report.records_read, report.records_rejected) == (6, 2)
    assert [p.record for p in report.rejects] == ["line 5", "line 6"]


def test_masscan_not_json_is_an_input_error():
    with pytest.raises(InputError, match=r"^scan\.json: not masscan JSON"):
        masscan.read(b"Discovered open port 80/tcp on 10.0.0.1", "scan.json")


def test_openvas_csv_row_without_ip_is_set_aside_with_its_reason():
    text = (
        b"IP,Hostname,Port,Port Protocol,CVSS,Severity,NVT Name,NVT OID,CVEs\n"
        b",web,443,tcp,5.0,Medium,Weak TLS,1.3.6.1.4.1.25623.1.0.1,\n"
        b"10.0.0.9,web,443,tcp,5.0,Medium,Weak TLS,1.3.6.1.4.1.25623.1.0.1,\n"
        b"10.0.0.300,,,,5.0,Medium,Weak TLS,1.3.6.1.4.1.25623.1.0.1,\n"
    )
    inventory = openvas.read(text, "report.csv")
    assert _kinds(inventory, "host") == {"web"}
    assert _kinds(inventory, "vulnerability") == {"openvas:1.3.6.1.4.1.25623.1.0.1"}
    report = inventory.report
    assert (report.records_read, report.records_rejected) == (3, 2)
    assert [(p.record, p.reason) for p in report.rejects] == [
        ("row 1", "no IP"),
        ("row 3", "not an IP address: '10.0.0.300'"),
    ]


def test_openvas_not_a_report_is_an_input_error():
    with pytest.raises(InputError, match=r"^r\.csv: not an OpenVAS CSV"):
        openvas.read(b"name,value\nx,1\n", "r.csv")
    with pytest.raises(InputError, match=r"^r\.xml: not an OpenVAS report"):
        openvas.read(b"<nmaprun/>", "r.xml")


def test_masscan_file_with_a_trailing_comma_or_no_closing_bracket_is_read_whole():
    record = '{"ip": "10.0.0.1", "ports": [{"port": 22, "proto": "tcp", "status": "open"}]}'
    for text in (f"[{record},]", f"[\n{record},\n", f"[\n{record},\n{{finished: 1}}\n"):
        inventory = masscan.read(text.encode(), "scan.json")
        assert _kinds(inventory, "service") == {"10.0.0.1:tcp/22"}, text
        report = inventory.report
        assert (report.records_read, report.records_rejected) == (1, 0), text


def test_openvas_xml_host_list_names_the_host_and_older_cve_text_is_read():
    text = b"""<report format_id="a994b278-1f62-11e1-96ac-406186ea4fc5"><report>
    <host><ip>10.0.0.7</ip><start>2024-03-18T12:00:00Z</start><end>2024-03-18T13:00:00Z</end>
      <detail><name>hostname</name><value>DB01</value></detail>
      <detail><name>best_os_txt</name><value>Debian GNU/Linux 12</value></detail></host>
    <ports><port>5432/tcp<host>10.0.0.7</host></port></ports>
    <results>
      <result><host>10.0.0.7</host><port>general/tcp</port><threat>Medium</threat>
        <nvt oid="1.3.6.1.4.1.25623.1.0.9"><name>Old OpenSSL</name><cvss_base>5.0</cvss_base>
        <cve>CVE-2014-0160</cve></nvt></result>
      <result><host>10.0.0.7</host><port>5432/tcp</port><threat>Log</threat>
        <nvt oid="1.3.6.1.4.1.25623.1.0.8"><name>PostgreSQL Detection</name><cve>NOCVE</cve>
        </nvt></result>
    </results></report></report>"""
    inventory = openvas.read(text, "old.xml")
    host = inventory.nodes["host:db01"]
    assert (host.attrs["ip"], host.attrs["os"]) == ("10.0.0.7", "Debian GNU/Linux 12")
    assert (host.attrs["first_seen"], host.attrs["last_seen"]) == (1710763200.0, 1710766800.0)
    assert _kinds(inventory, "service") == {"db01:tcp/5432"}
    heartbleed = inventory.nodes["vulnerability:cve-2014-0160"]
    assert (heartbleed.attrs["cvss"], heartbleed.attrs["severity"]) == (5.0, "Medium")
    assert _kinds(inventory, "vulnerability") == {"cve-2014-0160"}  # the Log result is none
    edges = {(e.kind, e.src, e.dst) for e in inventory.edges}
    assert ("vulnerable_to", "host:db01", "vulnerability:cve-2014-0160") in edges
    assert inventory.report.records_read == 2
