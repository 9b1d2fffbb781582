"""The notification connectors against real servers on loopback: the webhook posts Slack's
body to an HTTP server (the standard library's, in a thread) and is ok on 2xx only, never
showing the hook's secret URL; the mailer hands a message to a real SMTP server (aiosmtpd)
that receives the From, To, Subject, body and the Message-ID made from the idempotency key;
header injection is refused before anything is sent; dry-run sends nothing."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from servers import in_thread
from vigil.errors import InputError, Unavailable
from vigil.respond.notify import Mailer, Webhook

HOOK_PATH = "/services/T000/B000/hook-secret-XXXXXXXX"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the webhook -------------------------------------------------------------------------------


class Hook(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), HookHandler)
        self.seen: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{HOOK_PATH}"


class HookHandler(BaseHTTPRequestHandler):
    server: Hook

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append(
            {"path": self.path, "headers": dict(self.headers.items()), "json": json.loads(body)}
        )
        # Slack's answers: "ok", or a 4xx with the reason
        status, said = (200, b"ok") if self.path == HOOK_PATH else (404, b"no_service")
        if "break" in json.loads(body)["text"]:
            status, said = 400, b"invalid_payload"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(said)))
        self.end_headers()
        self.wfile.write(said)


@pytest.fixture
def hook() -> Iterator[Hook]:
    with in_thread(Hook()) as running:
        yield running


def test_the_webhook_posts_slacks_body(hook) -> None:
    done = Webhook(hook.url).send(
        "Host h-42 contained <!channel> & more",
        fields={"incident": "INC-7", "tags": ["lab", "prod"], "by": "<@U999>"},
        idempotency_key="INC-7-notify",
    )
    assert done.ok and not done.dry_run and done.output == "200 OK\nok"
    [got] = hook.seen
    assert got["path"] == HOOK_PATH
    assert got["headers"]["Idempotency-Key"] == "INC-7-notify"
    assert got["headers"]["Content-Type"] == "application/json"
    text = "Host h-42 contained &lt;!channel&gt; &amp; more"  # no @channel smuggled in
    assert got["json"] == {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": "*incident*\nINC-7"},
                    {"type": "mrkdwn", "text": "*tags*\nlab, prod"},
                    {"type": "mrkdwn", "text": "*by*\n&lt;@U999&gt;"},
                ],
            },
        ],
    }
    assert "hook-secret" not in str(done) and done.commands[0]["url"].endswith("/***")

    plain = Webhook(hook.url).send("just text")
    assert plain.ok and hook.seen[-1]["json"] == {"text": "just text"}
    assert "Idempotency-Key" not in hook.seen[-1]["headers"]


def test_many_fields_are_split_in_sections_of_ten(hook) -> None:
    Webhook(hook.url).send("many", fields={f"f{i}": i for i in range(23)})
    blocks = hook.seen[-1]["json"]["blocks"]
    assert [len(b.get("fields", [])) for b in blocks] == [0, 10, 10, 3]


def test_a_webhook_refusal_is_not_ok_and_an_outage_is_unavailable(hook) -> None:
    refused = Webhook(hook.url).send("break it")
    assert not refused.ok and refused.output == "400 Bad Request\ninvalid_payload"
    wrong = Webhook(hook.url.replace("hook-secret", "other")).send("hello")
    assert not wrong.ok and wrong.state == {"status": 404}
    with pytest.raises(Unavailable, match="cannot reach the webhook") as caught:
        Webhook(f"http://127.0.0.1:{_free_port()}{HOOK_PATH}", timeout_s=2).send("hello")
    assert "hook-secret" not in str(caught.value)
    assert "hook-secret" not in repr(Webhook(hook.url))
    with pytest.raises(InputError):
        Webhook(hook.url).send("  ")
    with pytest.raises(InputError):
        Webhook("file:///etc/passwd")


def test_a_webhook_dry_run_sends_nothing(hook) -> None:
    planned = Webhook(hook.url, dry_run=True).send("hello", fields={"a": 1})
    assert planned.ok and planned.dry_run and planned.commands[0]["json"]["text"] == "hello"
    assert hook.seen == []


# --- the mail ----------------------------------------------------------------------------------


class Mailbox:
    """aiosmtpd's handler: keeps every message; refuses mail to nobody@corp.example."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address == "nobody@corp.example":
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        self.received.append(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "message": message_from_bytes(envelope.content, policy=policy.default),
            }
        )
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield mailbox, controller.port
    finally:
        controller.stop()


def test_the_mail_arrives_with_its_headers_and_a_message_id_from_the_key(smtp) -> None:
    mailbox, port = smtp
    mailer = Mailer("127.0.0.1", port, sender="Vigil <vigil@corp.example>")
    done = mailer.send(
        ["soc@corp.example", "Bob <bob@corp.example>"],
        "INC-7: hôte h-42 isolé",
        "Host h-42 was contained.\n.\nBy Vigil.\n",
        idempotency_key="INC-7-mail",
    )
    assert done.ok and not done.dry_run and done.output == "sent to 2"
    assert done.state == {"message_id": "<INC-7-mail@vigil>", "refused": []}
    [got] = mailbox.received
    assert got["from"] == "vigil@corp.example"
    assert got["to"] == ["soc@corp.example", "bob@corp.example"]
    message = got["message"]
    assert message["From"] == "Vigil <vigil@corp.example>"
    assert message["To"] == "soc@corp.example, Bob <bob@corp.example>"
    assert message["Subject"] == "INC-7: hôte h-42 isolé"
    assert message["Message-ID"] == "<INC-7-mail@vigil>"
    assert message["Date"]
    body = message.get_content().replace("\r\n", "\n")  # lines end in CRLF on the wire
    assert body == "Host h-42 was contained.\n.\nBy Vigil.\n"  # the lone dot kept

    again = mailer.send(["soc@corp.example"], "again", "x", idempotency_key="run-1:notify")
    assert again.state["message_id"] == "<run-1=3Anotify@vigil>"  # a Message-ID holds no ':'
    assert mailbox.received[-1]["message"]["Message-ID"] == "<run-1=3Anotify@vigil>"
    unkeyed = mailer.send(["soc@corp.example"], "no key", "x")
    assert unkeyed.state["message_id"].endswith("@vigil>")


def test_a_refused_recipient_is_not_ok(smtp) -> None:
    mailbox, port = smtp
    mailer = Mailer("127.0.0.1", port, sender="vigil@corp.example")
    partly = mailer.send(["soc@corp.example", "nobody@corp.example"], "hi", "x")
    assert not partly.ok and partly.state["refused"] == ["nobody@corp.example"]
    assert "550" in partly.output
    assert mailbox.received[-1]["to"] == ["soc@corp.example"]
    wholly = mailer.send(["nobody@corp.example"], "hi", "x")
    assert not wholly.ok and wholly.state["refused"] == ["nobody@corp.example"]
    assert len(mailbox.received) == 1


@pytest.mark.parametrize(
    ("to", "subject"),
    [
        (["soc@corp.example"], "hi\r\nBcc: evil@attacker.example"),
        (["soc@corp.example"], "hi\nBcc: evil@attacker.example"),
        (["soc@corp.example\r\nBcc: evil@attacker.example"], "hi"),
        (["soc@corp.example, evil@attacker.example"], "hi"),
        (["not-an-address"], "hi"),
        ([], "hi"),
        ("soc@corp.example", "hi"),
    ],
)
def test_header_injection_is_refused_before_anything_is_sent(smtp, to, subject) -> None:
    mailbox, port = smtp
    with pytest.raises(InputError):
        Mailer("127.0.0.1", port, sender="vigil@corp.example").send(to, subject, "body")
    assert mailbox.received == []


def test_bad_settings_are_refused(smtp) -> None:
    mailbox, port = smtp
    with pytest.raises(InputError):
        Mailer("127.0.0.1", port, sender="vigil@corp.example\r\nBcc: evil@attacker.example")
    with pytest.raises(InputError, match="STARTTLS"):  # no password in clear
        Mailer(
            "127.0.0.1", port, sender="vigil@corp.example", username="vigil", password="mail-secret"
        )
    with pytest.raises(InputError):
        Mailer("127.0.0.1", port, sender="v@corp.example").send(
            ["soc@corp.example"], "hi", "x", idempotency_key="k\r\nX: 1"
        )
    # this server offers no STARTTLS: nothing is sent, the password never leaves
    mailer = Mailer(
        "127.0.0.1",
        port,
        sender="vigil@corp.example",
        starttls=True,
        username="vigil",
        password="mail-secret",
    )
    with pytest.raises(Unavailable, match="STARTTLS") as caught:
        mailer.send(["soc@corp.example"], "hi", "x")
    assert "mail-secret" not in str(caught.value) and "mail-secret" not in repr(mailer)
    with pytest.raises(Unavailable, match="cannot hand the mail"):
        Mailer("127.0.0.1", _free_port(), sender="v@corp.example", timeout_s=2).send(
            ["soc@corp.example"], "hi", "x"
        )
    assert mailbox.received == []


def test_a_mail_dry_run_sends_nothing(smtp) -> None:
    mailbox, port = smtp
    planned = Mailer("127.0.0.1", port, sender="vigil@corp.example", dry_run=True).send(
        ["soc@corp.example"], "INC-7", "body", idempotency_key="INC-7-mail"
    )
    assert planned.ok and planned.dry_run
    assert planned.commands == [
        {
            "smtp": f"127.0.0.1:{port}",
            "from": "vigil@corp.example",
            "to": ["soc@corp.example"],
            "subject": "INC-7",
            "message_id": "<INC-7-mail@vigil>",
        }
    ]
    assert mailbox.received == []


def test_a_playbook_notifies_by_webhook_and_mail_once_each_with_the_run_key(
    hook, smtp, tmp_path
) -> None:
    from vigil.config import RespondSettings
    from vigil.correlate.store import IncidentStore
    from vigil.respond.actions import ACTIONS
    from vigil.respond.engine import Responder
    from vigil.respond.playbook import parse
    from vigil.store import state_engine

    mailbox, port = smtp
    book = parse(
        {
            "id": "tell",
            "name": "Tell the team",
            "trigger": {"type": "alert"},
            "steps": [
                {
                    "parallel": [
                        {
                            "id": "chat",
                            "action": "notify.webhook",
                            "with": {"text": "{{ entity.host }} isolated <!channel>"},
                        },
                        {
                            "id": "mail",
                            "action": "notify.email",
                            "with": {"subject": "Vigil: {{ entity.host }}", "body": "Isolated."},
                        },
                    ]
                }
            ],
        },
        "tell",
        ACTIONS,
    )
    settings = RespondSettings.model_validate(
        {
            "dry_run": False,
            "notify": {
                "webhook_url": hook.url,
                "smtp_host": "127.0.0.1",
                "smtp_port": port,
                "sender": "vigil@corp.example",
                "to": ["soc@corp.example"],
            },
        }
    )
    engine = state_engine(tmp_path)
    responder = Responder(engine, settings, IncidentStore(engine), playbooks=[book])
    run_id = responder.start_run("tell", "test", context={"entity": {"host": "ws9"}}, dry_run=False)
    assert responder.execute(run_id) == "done"
    [posted] = hook.seen
    assert "ws9 isolated &lt;!channel&gt;" in str(posted["json"])
    assert posted["headers"].get("Idempotency-Key") == f"{run_id}:chat"
    [mail] = mailbox.received
    assert mail["to"] == ["soc@corp.example"] and mail["message"]["Subject"] == "Vigil: ws9"
    assert mail["message"]["Message-ID"] == f"<{run_id}=3Amail@vigil>"
    assert hook.url not in str(responder.run(run_id))  # the hook's URL holds its secret
