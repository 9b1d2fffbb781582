"""What well-known programs' logs hold, read into fields rules can count by: sshd's login
attempts (a real internet-facing server's auth.log), dnsmasq's query log, netfilter packet
logs (kernel and ulogd), and web access logs (common and combined formats); and the pack's
rules over them."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import pytest

from vigil.detect.sigma import load_rules, starter_rules
from vigil.ingest import FileReport, discover, read_events
from vigil.ingest.live import line_events
from vigil.scan import scan_inputs

NMAP_SYN = (
    "Dec  3 16:13:01 vm vigil-lab-drop  IN=lfa0 OUT= MAC=82:c0:fa:4f:a7:b2:d2:9f:14:c9:50:47:08:00"
    " SRC=10.232.0.1 DST=10.232.0.2 LEN=44 TOS=00 PREC=0x00 TTL=53 ID=9070 PROTO=TCP SPT=56773"
    " DPT={port} SEQ=934877283 ACK=0 WINDOW=1024 SYN URGP=0 MARK=0x0 "
)


def events_of(*lines: str, path: str = "tailed.log") -> list:
    return line_events([(line.encode(), n) for n, line in enumerate(lines)], FileReport(path))


@pytest.fixture(scope="module")
def pack():
    return load_rules([starter_rules()], use_cache=False)


def test_sshd_login_attempts_name_outcome_user_and_source(need_data) -> None:
    auth = need_data("linux", "elastic-examples", "auth.log")
    [source] = discover([auth])
    events = [e for batch in read_events(source, FileReport(str(auth))) for e in batch]
    first = next(
        e for e in events if e.fields["message"] == "Invalid user support from 95.152.57.58"
    )
    assert (first.fields["outcome"], first.fields["user"], first.fields["src_ip"]) == (
        "invalid-user",
        "support",
        "95.152.57.58",
    )
    assert "src_port" not in first.fields and first.ecs["source.ip"] == "95.152.57.58"
    failed = Counter(e.fields["src_ip"] for e in events if e.fields.get("outcome") == "failure")
    # `grep -cE 'sshd\[[0-9]+\]: (Failed [a-z-]+ for .* from 24\.151\.103\.17 port|Invalid
    # user .* from 24\.151\.103\.17)' auth.log`
    assert failed["24.151.103.17"] == 157
    accepted = Counter(
        e.fields["user"].rstrip("0123456789")
        for e in events
        if e.fields.get("outcome") == "success"
    )
    # `grep -oE "Accepted [a-z]+ for [a-z_0-9]+" auth.log`: 190 passwords, 36 keys
    assert accepted == {"elastic_user_": 190, "ubuntu": 36}


def test_ssh_password_guessing_is_counted_by_source(pack, need_data) -> None:
    auth = need_data("linux", "elastic-examples", "auth.log")
    found = scan_inputs([auth], pack).detections
    guessers = Counter(
        d.details["group"]["src_ip"] for d in found if d.rule_title == "SSH Password Guessing"
    )
    # the two heaviest guessers of the log; one that failed twice in all is no guesser
    assert guessers["24.151.103.17"] and guessers["34.204.227.175"]
    assert "95.152.57.58" not in guessers
    assert {d.rule_title for d in found} >= {"SSH Password Guessing"}
    assert "SSH Login Failed" not in {d.rule_title for d in found}  # counted, not alerted


def test_netfilter_packet_logs_from_ulogd_and_the_kernel() -> None:
    ulogd, kernel = events_of(
        NMAP_SYN.format(port=25),
        "Dec  3 16:13:02 fw kernel: [ 1234.567890] DROP IN=eth0 OUT= SRC=203.0.113.7 "
        "DST=192.0.2.1 LEN=60 TTL=49 PROTO=UDP SPT=53 DPT=31337 LEN=40",
    )
    assert ulogd.dataset == kernel.dataset == "linux.netfilter"
    assert {k: ulogd.fields[k] for k in ("src_ip", "dst_ip", "protocol", "dst_port")} == {
        "src_ip": "10.232.0.1",
        "dst_ip": "10.232.0.2",
        "protocol": "tcp",
        "dst_port": 25,
    }
    assert ulogd.fields["prefix"] == "vigil-lab-drop" and ulogd.fields["tcp_flags"] == "SYN"
    assert "out_interface" not in ulogd.fields  # empty: not there
    assert kernel.fields["prefix"] == "DROP" and kernel.fields["length"] == 60  # the first LEN
    assert (kernel.ecs["source.ip"], kernel.ecs["destination.port"]) == ("203.0.113.7", 31337)


def test_a_port_scan_in_the_firewall_log_alerts_once_it_reaches_twenty_ports(pack) -> None:
    lines = [NMAP_SYN.format(port=port) for port in range(1, 40)]
    few = _scan_lines(pack, lines[:19])
    many = _scan_lines(pack, lines)
    assert "Port Scan Seen by a Host Firewall" not in few
    assert many["Port Scan Seen by a Host Firewall"] >= 1


def _scan_lines(pack, lines: list[str]) -> Counter[str]:
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "firewall.log"
        log.write_text("\n".join(lines) + "\n")
        return Counter(d.rule_title for d in scan_inputs([log], pack).detections)


def test_dnsmasq_queries_are_dns_events() -> None:
    long, binary, reply = events_of(
        "Dec  3 16:13:29 dnsmasq[26886]: 3 10.232.0.1/36624 query[NULL] "
        "laa54hyzswtv3kju4pqy3efowa51c4xa.t.vigil.test from 10.232.0.1",
        "Dec  3 16:13:29 dnsmasq[26886]: 5 10.232.0.1/36624 query[NULL] <name unprintable> "
        "from 10.232.0.1",
        "Dec  3 16:13:29 dnsmasq[26886]: 3 10.232.0.1/36624 reply example.org is 192.0.2.7",
    )
    assert long.dataset == binary.dataset == "linux.dnsmasq"
    assert (long.fields["query"], long.fields["record_type"], long.fields["src_ip"]) == (
        "laa54hyzswtv3kju4pqy3efowa51c4xa.t.vigil.test",
        "NULL",
        "10.232.0.1",
    )
    assert binary.fields["query"] == "<name unprintable>"
    assert reply.dataset == "syslog" and "query" not in reply.fields


def test_web_access_logs_in_the_combined_and_common_formats(tmp_path) -> None:
    combined, common, garbage = events_of(
        '10.232.0.1 - - [03/Dec/2026:16:13:01 +0000] "GET /uploads/s.php?cmd=whoami HTTP/1.1" '
        '404 153 "-" "gobuster/3.5"',
        '192.0.2.9 - alice [03/Dec/2026:16:13:02 +0100] "POST /login HTTP/1.0" 302 -',
        '10.232.0.1 - - [03/Dec/2026:16:13:03 +0000] "\\x16\\x03\\x01" 400 150 "-" "-"',
    )
    assert combined.dataset == "webserver.access" and combined.category == "webserver"
    assert combined.fields == {
        "c-ip": "10.232.0.1",
        "cs-method": "GET",
        "cs-uri-stem": "/uploads/s.php",
        "cs-uri-query": "cmd=whoami",
        "cs-version": "HTTP/1.1",
        "sc-status": 404,
        "sc-bytes": 153,
        "cs-user-agent": "gobuster/3.5",
    }
    assert combined.time == 1796314381.0
    assert common.fields["cs-username"] == "alice" and common.time == 1796314382.0 - 3600
    assert "sc-bytes" not in common.fields and "cs-user-agent" not in common.fields
    assert garbage.fields["cs-request"] == "\\x16\\x03\\x01" and "cs-method" not in garbage.fields
    # a file of them is read as such, a line that is none set aside with the reason
    log = tmp_path / "access.log"
    log.write_text(
        '10.0.0.5 - - [03/Dec/2026:16:13:01 +0000] "GET / HTTP/1.1" 200 612 "-" "curl/8"\n'
        "not a request\n"
    )
    [source] = discover([log])
    report = FileReport(str(log))
    [events] = list(read_events(source, report))
    assert [e.fields["cs-uri-stem"] for e in events] == ["/"]
    assert [p.reason for p in report.rejects] == [
        "not an access log line (common or combined format)"
    ]


def test_web_attacks_in_an_access_log(pack) -> None:
    wordlist = [
        f'10.232.0.3 - - [03/Dec/2026:16:13:01 +0000] "GET /{word} HTTP/1.1" 404 153 "-" '
        '"gobuster/3.5"'
        for word in [f"admin{n}" for n in range(35)]
    ]
    shell = (
        '10.232.0.3 - - [03/Dec/2026:16:13:05 +0000] "GET /uploads/up.php?cmd=id HTTP/1.1" '
        '200 20 "-" "curl/7.88.1"'
    )
    search = (
        '10.232.0.4 - - [03/Dec/2026:16:13:05 +0000] "GET /search?q=whoami+means HTTP/1.1" '
        '200 20 "-" "Mozilla/5.0"'
    )
    found = _scan_lines(pack, [*wordlist, shell, search])
    assert found["Web Content Discovery"] >= 1
    assert found["Shell Command in a Web Request"] == 1  # the shell, not the search
    assert _scan_lines(pack, wordlist[:29])["Web Content Discovery"] == 0


def test_a_client_cannot_name_another_address_through_what_it_sends() -> None:
    """What a client chooses (a user name, a query name, a request an application logs) never
    decides the source address rules count by and playbooks block."""
    user, query, extra, request, udp = events_of(
        "Dec  3 16:13:01 h sshd[7]: Failed password for invalid user a from 10.0.0.1 port 22 "
        "from 203.0.113.66 port 5555 ssh2",
        "Dec  3 16:13:02 dnsmasq[8]: query[A] evil from 10.0.0.1 from 203.0.113.67",
        "Dec  3 16:13:02 dnsmasq[8]: 7 203.0.113.68/3333 query[A] evil from 10.0.0.1 from 10.0.0.2",
        "Dec  3 16:13:03 web nginx: GET /IN=x SRC=10.0.0.1 DST=10.0.0.2 PROTO=TCP DPT=22",
        "Dec  3 16:13:04 fw kernel: [1.5] DROP IN=e OUT= SRC=198.51.100.1 DST=192.0.2.1 "
        "PROTO=UDP SPT=1 DPT=2 DF",
    )
    assert (user.fields["src_ip"], user.fields["user"]) == (
        "203.0.113.66",
        "a from 10.0.0.1 port 22",
    )
    assert user.ecs["source.ip"] == "203.0.113.66"
    assert query.fields["src_ip"] == "203.0.113.67"
    assert extra.fields["src_ip"] == "203.0.113.68"  # log-queries=extra: dnsmasq's own word
    assert request.dataset == "syslog" and "src_ip" not in request.fields
    assert udp.fields["src_ip"] == "198.51.100.1" and "tcp_flags" not in udp.fields  # DF: IP's


def test_an_unknown_user_is_one_attempt_not_two() -> None:
    invalid, failed = events_of(
        "Dec  3 16:13:01 h sshd[7]: Invalid user admin from 203.0.113.5 port 4242",
        "Dec  3 16:13:01 h sshd[7]: Failed password for invalid user admin from 203.0.113.5 "
        "port 4242 ssh2",
    )
    assert invalid.fields["outcome"] == "invalid-user" and failed.fields["outcome"] == "failure"
    assert invalid.ecs["event.outcome"] == failed.ecs["event.outcome"] == "failure"
