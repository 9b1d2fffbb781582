"""The notification connectors: a message to a chat channel through an incoming webhook
(Slack's body shape, which Mattermost, Rocket.Chat and Teams' Slack-compatible hooks also
take) and an e-mail through an SMTP server. Neither has an undo: what was said stays said.

    Webhook(url).send("Host h-42 contained", fields={"incident": "INC-7", "by": "vigil"})
    mailer = Mailer("smtp.corp", 587, sender="vigil@corp", starttls=True,
                    username="vigil", password=secret)
    mailer.send(["soc@corp"], "INC-7: host h-42 contained", "…", idempotency_key="INC-7-mail")

A webhook send is ok when the hook answers 2xx (anything else is `ok=False` with the answer);
`<`, `>` and `&` in the text are escaped, so a message cannot mention `@channel` or carry a
link it was not given. A webhook's URL is its secret: only its host is ever shown. A mail's
Message-ID is made from the idempotency key (`<key@vigil>`), so a mail sent twice is one
thread to the reader; a CR or LF in a subject or an address is refused (InputError): no header
can be smuggled in. A password is only sent after STARTTLS, and never shown. In dry-run
nothing is sent.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any
from urllib.parse import urlsplit

import httpx

from vigil.errors import InputError, Unavailable
from vigil.respond.result import ActionResult

OUTPUT_CHARS = 1000  # of the hook's answer, in the result
FIELDS_PER_SECTION = 10  # Slack's limit for a section block
FIELD_CHARS = 2000  # Slack's limit for one field's text
TEXT_CHARS = 3000  # Slack's limit for a section's text
MSGID_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_+")


class NotifyError(Unavailable):
    """The webhook or the mail server could not be reached or refused Vigil."""


class Webhook:
    def __init__(self, url: str, *, dry_run: bool = False, timeout_s: float = 10.0) -> None:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError("the webhook URL is not an http(s) URL")
        self._url = url.strip()
        self.host = parts.hostname
        self.shown = f"{parts.scheme}://{parts.netloc}/***"  # the path holds the hook's secret
        self.dry_run = dry_run
        self.timeout_s = timeout_s

    def __repr__(self) -> str:  # never the whole URL
        return f"Webhook({self.shown!r}, dry_run={self.dry_run})"

    def send(
        self,
        text: str,
        *,
        fields: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> ActionResult:
        """Post `text` (and `fields`, shown as a two-column list under it) to the channel."""
        body = _slack_body(text, fields)
        headers = {"Content-Type": "application/json"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = _one_line("idempotency key", idempotency_key)
        command = {"method": "POST", "url": self.shown, "headers": headers, "json": body}
        if self.dry_run:
            return ActionResult(True, True, [command], "dry run: nothing sent")
        try:
            with httpx.Client(timeout=self.timeout_s, follow_redirects=False) as client:
                response = client.post(self._url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise NotifyError(f"cannot reach the webhook at {self.host}: "
                              f"{type(exc).__name__}") from None  # fmt: skip
        answer = f"{response.status_code} {response.reason_phrase}"
        said = response.text[:OUTPUT_CHARS].replace(self._url, self.shown)
        state = {"status": response.status_code}
        return ActionResult(response.is_success, False, [command],
                            f"{answer}\n{said}" if said else answer, state)  # fmt: skip


class Mailer:
    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        sender: str,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        dry_run: bool = False,
        timeout_s: float = 10.0,
    ) -> None:
        if not host or any(c in host for c in "\r\n/ ") or not 0 < int(port) < 65536:
            raise InputError(f"not an SMTP server: {host!r} port {port!r}")
        if (username is None) != (password is None):
            raise InputError("an SMTP login needs both a user name and a password")
        if username is not None and not starttls:
            raise InputError("an SMTP password is only sent over STARTTLS (set starttls)")
        self.host = host
        self.port = int(port)
        self.sender = _address(sender)
        self.starttls = starttls
        self.username = username
        self._password = password
        self.dry_run = dry_run
        self.timeout_s = timeout_s

    def __repr__(self) -> str:  # never the password
        return f"Mailer({self.host!r}, {self.port}, sender={self.sender!r})"

    def send(
        self,
        to: Sequence[str],
        subject: str,
        body: str,
        *,
        idempotency_key: str | None = None,
    ) -> ActionResult:
        """Mail `body` (plain text) to every address of `to`."""
        if isinstance(to, str) or not to:
            raise InputError("`to` is a list of one address or more")
        recipients = [_address(a) for a in to]
        subject = _one_line("subject", subject)
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(recipients)
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = (
            f"<{_msgid_left(idempotency_key)}@vigil>"
            if idempotency_key is not None
            else make_msgid(domain="vigil")
        )
        message.set_content(body)
        command = {"smtp": f"{self.host}:{self.port}", "from": self.sender, "to": recipients,
                   "subject": subject, "message_id": message["Message-ID"]}  # fmt: skip
        if self.dry_run:
            return ActionResult(True, True, [command], "dry run: nothing sent")
        refused = self._deliver(message, recipients)
        state = {"message_id": message["Message-ID"], "refused": sorted(refused)}
        if refused:
            said = "; ".join(f"{a}: {code} {text!r}"[:200] for a, (code, text) in refused.items())
            return ActionResult(False, False, [command], f"some recipients refused: {said}", state)
        return ActionResult(True, False, [command], f"sent to {len(recipients)}", state)

    def _deliver(self, message: EmailMessage, recipients: list[str]) -> dict[str, Any]:
        """Hands the message to the server; the recipients it refused (and why)."""
        where = f"{self.host}:{self.port}"
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                smtp.ehlo()
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                if self.username is not None and self._password is not None:
                    smtp.login(self.username, self._password)
                refused = smtp.send_message(message, _bare(self.sender),
                                            [_bare(a) for a in recipients])  # fmt: skip
        except smtplib.SMTPAuthenticationError as exc:
            raise NotifyError(f"the mail server {where} refused the login of {self.username!r} "
                              f"({exc.smtp_code})") from None  # fmt: skip
        except smtplib.SMTPRecipientsRefused as exc:
            return {a: (code, _text(said)) for a, (code, said) in exc.recipients.items()}
        except smtplib.SMTPSenderRefused as exc:
            said = f"{exc.smtp_code} {_text(exc.smtp_error)}"[:200]
            raise NotifyError(f"the mail server {where} refused the sender {self.sender!r}: "
                              f"{said}") from None  # fmt: skip
        except smtplib.SMTPNotSupportedError:
            raise NotifyError(f"the mail server {where} does not offer STARTTLS") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise NotifyError(f"cannot hand the mail to {where}: {type(exc).__name__}") from None
        return {a: (code, _text(said)) for a, (code, said) in refused.items()}


# --- the bodies ----------------------------------------------------------------------------


def _slack_body(text: str, fields: Mapping[str, Any] | None) -> dict[str, Any]:
    """`text` as the message (and its notification), and the fields as sections of at most
    ten under it (Slack's block limit)."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("a webhook message needs some text")
    if fields is not None and not isinstance(fields, Mapping):
        raise InputError("the webhook's fields are a mapping of name to value")
    body: dict[str, Any] = {"text": _escaped(text)}
    if fields:
        shown = [{"type": "mrkdwn", "text": f"*{_escaped(str(k))}*\n{_escaped(_value(v))}"
                  [:FIELD_CHARS]} for k, v in fields.items()]  # fmt: skip
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": _escaped(text)[:TEXT_CHARS]}}
        ]
        for start in range(0, len(shown), FIELDS_PER_SECTION):
            blocks.append({"type": "section", "fields": shown[start : start + FIELDS_PER_SECTION]})
        body["blocks"] = blocks
    return body


def _escaped(text: str) -> str:
    """Slack's control characters escaped: no `<!channel>`, `<@U123>` or `<url|label>` gets in."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def _address(text: str) -> str:
    """One e-mail address, as given; refused when it could carry another header or address."""
    if not isinstance(text, str) or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise InputError(f"not one e-mail address: {text!r}")
    address = _bare(text)
    local, _, domain = address.rpartition("@")
    if not local or not domain or "," in text or " " in address or "@" in local:
        raise InputError(f"not one e-mail address: {text!r}")
    return text.strip()


def _bare(text: str) -> str:
    """`alice@corp` of `Alice <alice@corp>` (what the SMTP envelope holds)."""
    return parseaddr(text)[1]


def _one_line(what: str, value: str) -> str:
    if not isinstance(value, str) or any((ord(c) < 32 and c != "\t") or ord(c) == 127
                                         for c in value):  # fmt: skip
        raise InputError(f"the {what} is not one line of text: {value!r}"[:300])
    return value


def _msgid_left(key: str) -> str:
    """The idempotency key as the left part of a Message-ID: the same key gives the same id;
    characters a Message-ID cannot hold are written =XX (their UTF-8 bytes)."""
    _one_line("idempotency key", key)
    if not key:
        raise InputError("the idempotency key is empty")
    return "".join(c if c in MSGID_SAFE else "".join(f"={b:02X}" for b in c.encode())
                   for c in key)  # fmt: skip


def _text(said: bytes | str) -> str:
    return said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)


__all__ = ["Mailer", "NotifyError", "Webhook"]
