"""`vigil zt`: Zero Trust: decide a request against the policies, run the enforcement point
(an identity-aware reverse proxy) in front of an application."""

from __future__ import annotations

import time
from typing import Annotated

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from vigil.cli._output import emit, fail, out
from vigil.cli._state import DataDir, migrated_engine, settings_with
from vigil.errors import VigilError

zt_app = typer.Typer(no_args_is_help=True, help="Zero Trust: decisions and enforcement.")


@zt_app.command("decide")
def decide(
    subject: Annotated[str, typer.Option(help="Who asks.")],
    action: Annotated[str, typer.Option(help="What they want to do.")],
    resource: Annotated[str, typer.Option(help="On what.")],
    group: Annotated[list[str] | None, typer.Option(help="A group they are in.")] = None,
    mfa: Annotated[bool, typer.Option(help="Their session passed MFA.")] = False,
    device: Annotated[str | None, typer.Option(help="The host they come from.")] = None,
    source_ip: Annotated[str | None, typer.Option(help="Their address.")] = None,
) -> None:
    """Decide one request against the policies in [zerotrust] policies (no live risk: what
    the policies alone say)."""
    from vigil.zerotrust.pdp import DecisionPoint
    from vigil.zerotrust.policy import AccessRequest, PolicySet
    from vigil.zerotrust.policy import load as load_policies

    settings = settings_with()
    try:
        policies = (
            load_policies(list(settings.zerotrust.policies))
            if settings.zerotrust.policies
            else PolicySet()
        )
    except VigilError as exc:
        raise fail(str(exc)) from None
    decision = DecisionPoint(policies).decide(
        AccessRequest(
            subject,
            action,
            resource,
            groups=tuple(group or ()),
            mfa=mfa,
            device=device,
            source_ip=source_ip,
        )
    )
    emit(orjson.dumps(decision.as_dict(), option=orjson.OPT_INDENT_2) + b"\n", None)
    if decision.outcome != "allow":
        raise typer.Exit(1)


@zt_app.command("proxy")
def proxy(
    upstream: Annotated[str, typer.Option(help="The application behind it (http://host:port).")],
    resource: Annotated[str, typer.Option(help="The application's name in the policies.")],
    vigil: Annotated[str, typer.Option(help="Vigil's API.", envvar="VIGIL_URL")] = (
        "http://127.0.0.1:8400"
    ),
    token: Annotated[str, typer.Option(help="A token of role pep.", envvar="VIGIL_TOKEN")] = "",
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8480,
    audience: Annotated[str, typer.Option(help="Its audience in the signals it receives.")] = "",
    cache_s: Annotated[float, typer.Option(help="Seconds a decision is reused at most.")] = 1.0,
) -> None:
    """Run the enforcement point: every request decided by Vigil before it reaches the
    application; sessions revoked by Vigil end at once (it receives Vigil's signals at
    /_vigil/ssf)."""
    import uvicorn

    from vigil.zerotrust.proxy import EnforcementPoint

    if not token:
        raise fail(
            "give a token of role pep: --token or VIGIL_TOKEN (vigil token create --role pep)"
        )
    point = EnforcementPoint(
        upstream=upstream,
        vigil=vigil,
        token=token,
        resource=resource,
        audience=audience,
        cache_s=cache_s,
    )
    uvicorn.run(point.app(), host=host, port=port, log_level="warning")


@zt_app.command("sessions")
def sessions(
    state: Annotated[str, typer.Option(help="active, revoked or expired.")] = "active",
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 100,
    data_dir: DataDir = None,
) -> None:
    """Zero Trust sessions, newest first: who, from which device, to what, until when, and
    why a revoked one ended."""
    from sqlalchemy import select

    from vigil.store.tables import zt_session_table

    engine = migrated_engine(settings_with(data_dir=data_dir))
    s = zt_session_table.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(zt_session_table).where(s.state == state).order_by(s.created.desc()).limit(limit)
        ).all()
    table = Table(title=f"Sessions ({state})", title_justify="left")
    for column in ("session", "subject", "device", "resource", "until (UTC)", "why it ended"):
        table.add_column(column, overflow="fold")
    for row in rows:
        resource = orjson.loads(row.request).get("resource", "")
        until = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row.ended or row.expires))
        table.add_row(
            row.id,
            escape(row.subject),
            escape(row.device),
            escape(resource),
            until,
            escape(row.reason or ""),
        )
    out.print(table)


@zt_app.command("grants")
def grants(
    state: Annotated[str | None, typer.Option(help="waiting, active, denied, expired.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 100,
    data_dir: DataDir = None,
) -> None:
    """Just-in-time grants, newest first."""
    from sqlalchemy import select

    from vigil.store.tables import zt_grant_table

    engine = migrated_engine(settings_with(data_dir=data_dir))
    g = zt_grant_table.c
    query = select(zt_grant_table).order_by(g.created.desc()).limit(limit)
    if state:
        query = query.where(g.state == state)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    table = Table(title="Just-in-time grants", title_justify="left")
    for column in ("grant", "subject", "resource", "actions", "state", "until (UTC)", "reason"):
        table.add_column(column, overflow="fold")
    for row in rows:
        until = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row.ends))
        table.add_row(
            row.id,
            escape(row.subject),
            escape(row.resource),
            ", ".join(orjson.loads(row.actions)),
            row.state,
            until,
            escape(row.reason or ""),
        )
    out.print(table)
