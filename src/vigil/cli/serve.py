"""`vigil serve`: Vigil run continuously, and what it does once started (--feed, --demo)."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.exc import SQLAlchemyError

from vigil.cli._output import err, fail
from vigil.cli._state import DataDir, reason_of, settings_with
from vigil.cli.incidents import incident_panel
from vigil.cli.rules import RulesOption, load_rule_set
from vigil.config import ROLES
from vigil.detect import LEVELS
from vigil.detect.sigma import starter_rules
from vigil.errors import VigilError, storage_problem

Role = StrEnum("Role", {name: name for name in ROLES})  # type: ignore[misc]


def _check_listen(host: str, port: int, kind: socket.SocketKind, what: str) -> None:
    """Fail at once, before anything starts, when `host:port` cannot be listened on (in use,
    no such address) instead of starting everything and then stopping."""
    try:
        for family, kind_, proto, _, address in socket.getaddrinfo(
            host, port, type=kind, flags=socket.AI_PASSIVE
        ):
            with socket.socket(family, kind_, proto) as probe:
                if kind == socket.SOCK_STREAM:  # as the server itself does
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                probe.bind(address)
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port} ({what}): {exc.strerror or exc}") from None


def serve(
    rules: RulesOption = [],  # noqa: B006
    data_dir: DataDir = None,
    host: Annotated[str | None, typer.Option(help="API address (default 127.0.0.1).")] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="API port (default 8400).")
    ] = None,
    feed: Annotated[
        list[Path],
        typer.Option("--feed", help="Once started, read these log files or folders into it."),
    ] = [],  # noqa: B006
    demo: Annotated[
        bool,
        typer.Option(
            "--demo", help="Once started, replay the demo intrusion and show its incident."
        ),
    ] = False,
    console_token: Annotated[
        str | None,
        typer.Option(
            "--console-token",
            help="Make a sign-in token of this role (e.g. analyst) for the console and print "
            "it once started (revoke it with `vigil token revoke`).",
        ),
    ] = None,
    role: Annotated[
        Role | None,
        typer.Option(
            help="Distributed (\\[bus] url set): what this process runs. intake takes events "
            "(API ingest, listeners, tails); detect joins the detect workers sharing the "
            "partitions; correlate runs the stages after detection; api answers queries; "
            "all runs every one (the default)."
        ),
    ] = None,
) -> None:
    """Run Vigil continuously: ingest, detection, alerts, event store and the API."""
    from vigil.web.server import serve as run_service

    overrides: dict[str, Any] = {"data_dir": data_dir}
    if rules:
        overrides["rules"] = rules
    if role is not None:
        overrides["role"] = role.value
    settings = settings_with(**overrides)
    if settings.role not in ("all", "intake") and (feed or demo):
        raise fail(
            f"--feed and --demo need a process that takes events, not --role {settings.role}"
        )
    if host is not None or port is not None:
        api = settings.api.model_copy(
            update={k: v for k, v in (("host", host), ("port", port)) if v is not None}
        )
        settings = settings.model_copy(update={"api": api})
    for path in [*settings.rules, *feed]:
        if not path.exists():
            raise fail(f"no such file or directory: {path}")
    _check_listen(settings.api.host, settings.api.port, socket.SOCK_STREAM, "the API")
    listeners = settings.listeners
    takes_events = settings.role in ("all", "intake")
    if takes_events and listeners.syslog_udp is not None:
        _check_listen(listeners.host, listeners.syslog_udp, socket.SOCK_DGRAM, "syslog over UDP")
    if takes_events and listeners.syslog_tcp is not None:
        _check_listen(listeners.host, listeners.syslog_tcp, socket.SOCK_STREAM, "syslog over TCP")
    starter = [starter_rules()] if settings.starter_rules else []
    try:
        loaded = load_rule_set([*starter, *settings.rules], None, False)
    except VigilError as exc:
        raise fail(str(exc)) from None

    def ready(service: Any, url: str) -> None:
        role = "" if settings.role == "all" else f" ({settings.role})"
        err.print(
            f"Vigil{role} is serving on [bold]{url}[/] "
            f"(API docs: {url}/docs, health: {url}/health); "
            f"{len(service.loaded.plan.rules):,} rules, "
            f"{service.indicator_count:,} live indicators, data in "
            f"{escape(str(settings.data_dir))}. Create a token with "
            "`vigil token create --role ingest`.",
            highlight=False,
        )
        if settings.console.enabled and settings.role in ("all", "api"):
            err.print(f"The console: [bold]{url}/console/[/]", highlight=False)
            if sign_in is not None:
                err.print(
                    f"Sign in with this {console_token} token (shown once; revoked when this "
                    f"server stops): {sign_in}",
                    highlight=False,
                    soft_wrap=True,
                )

        def then() -> None:
            if demo:
                _serve_demo(service, url)
            if feed:
                _feed(service, feed, url)

        threading.Thread(target=then, name="vigil-serve-extras", daemon=True).start()

    # made once the ports are known free and the rules loaded, revoked when the server stops
    sign_in, sign_in_id = _console_token(settings, console_token) if console_token else (None, "")
    try:
        run_service(settings, loaded=loaded, on_ready=ready)
    except VigilError as exc:
        raise fail(str(exc)) from None
    except SQLAlchemyError as exc:
        problem = storage_problem(exc)
        raise fail(f"cannot open the state database: {problem or reason_of(exc)}") from None
    except OSError as exc:
        raise fail(f"cannot use the data folder {settings.data_dir}: {exc}") from None
    finally:
        if sign_in_id:
            _revoke(settings, sign_in_id)


def _revoke(settings: Any, token_id: str) -> None:
    """The token `--console-token` made ends with the server (its sessions with it)."""
    from vigil.api.auth import TokenStore
    from vigil.store import state_engine

    try:
        TokenStore(state_engine(settings.database_url or settings.data_dir)).revoke(token_id)
    except (SQLAlchemyError, OSError) as exc:
        err.print(f"could not revoke the console token {token_id}: {reason_of(exc)}")


def _console_token(settings: Any, role: str) -> tuple[str, str]:
    """A new token to sign in to the console with (kept hashed, like any token), and its
    id."""
    from vigil.api.auth import TokenStore
    from vigil.store import state_engine
    from vigil.web.sessions import CONSOLE_ROLES

    if role not in CONSOLE_ROLES:
        raise fail(f"--console-token: the console is for {', '.join(sorted(CONSOLE_ROLES))}")
    try:
        engine = state_engine(settings.database_url or settings.data_dir)
        token, info = TokenStore(engine).create(role, "console (vigil serve)")
        return token, info.id
    except (SQLAlchemyError, OSError) as exc:
        raise fail(f"cannot open the state database: {reason_of(exc)}") from None


def _serve_demo(service: Any, url: str) -> None:
    """Replay the demo intrusion into the running server and show the incident it became."""
    from vigil.demo import DEMO_SECONDS, incident_view, replay

    with err.status(f"Replaying the demo intrusion (its 37 minutes told in {DEMO_SECONDS:.0f} s)…"):
        found = replay(service, DEMO_SECONDS)
    if found is None:
        err.print("The demo intrusion made no incident (are the starter rules turned off?).")
        return
    view = incident_view(service, service.incident_store.get(found))
    err.print(incident_panel(view))
    err.print(
        f"See it in the console: {url}/console/incidents/{found}, in the API: "
        f"{url}/api/v1/incidents/{found} (docs: {url}/docs; a token: "
        "`vigil token create --role analyst`), or `vigil incident show " + found + "`.",
        highlight=False,
    )


def _feed(service: Any, paths: list[Path], url: str) -> None:
    """Read log files into a running service, with a live count of events and alerts."""
    columns = (
        TextColumn("[cyan]feeding[/]"),
        TextColumn(
            "[bold]{task.fields[sent]:,}[/] events sent · [bold]{task.fields[done]:,}[/] "
            "processed · [bold red]{task.fields[alerts]:,}[/] alerts"
        ),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task("feed", total=None, sent=0, done=0, alerts=0)

        def update(sent: int) -> None:
            totals = service.totals()
            bar.update(task, sent=sent, done=totals["events"], alerts=totals["new_alerts"])

        sent = service.feed(paths, on_progress=update)
        while service.events_out.lag():
            update(sent)
            time.sleep(0.5)
        update(sent)
    levels = Counter(a["level"] for a in service.alert_store.list(limit=100_000))
    err.print(
        f"Fed {sent:,} events: {sum(levels.values()):,} alerts ("
        + ", ".join(f"{levels[n]:,} {n}" for n in reversed(LEVELS) if levels.get(n))
        + f"). Still serving on {url} (docs: {url}/docs); Ctrl-C stops.",
        highlight=False,
    )
