"""`vigil zt`: Zero Trust: decide a request against the policies, run the enforcement point
(an identity-aware reverse proxy) in front of an application."""

from __future__ import annotations

from typing import Annotated

import orjson
import typer

from vigil.cli._output import emit, fail
from vigil.cli._state import settings_with
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
        raise fail("give a token of role pep: --token or VIGIL_TOKEN (vigil token create pep)")
    point = EnforcementPoint(
        upstream=upstream,
        vigil=vigil,
        token=token,
        resource=resource,
        audience=audience,
        cache_s=cache_s,
    )
    uvicorn.run(point.app(), host=host, port=port, log_level="warning")
