"""Alerts: the triage table (filtered by host, user, address, rule, indicator, level or
incident, paged through any number), each row's one-click pivots (the same host, user, rule
or indicator; a hunt over the stored events around it), and one alert's page with its event
and quick-adds of an indicator or an asset from it. Reads are `Backend.alerts` and
`Backend.alert` (as GET /api/v1/alerts); the quick-adds are `Backend.add_indicator` (as POST
/api/v1/indicators) and `Backend.import_assets` (as POST /api/v1/assets/import)."""

# No `from __future__ import annotations`: FastAPI reads the routes' signatures.
import csv
import io
import ipaddress
import re
import time
from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import orjson
from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse

from vigil.api.context import BIGINT
from vigil.errors import InputError, NotFound
from vigil.intel.model import TYPES, IndicatorValueError, canonical_domain, canonical_url
from vigil.web.console import PREFIX, Console
from vigil.web.sessions import Session

LEVELS = ("critical", "high", "medium", "low", "informational")
PAGE = 50  # alerts a page
# the query string other pages link with: name → what it filters (Backend.alerts keyword)
FILTERS = {
    "host": "host",
    "user": "user",
    "ip": "ip",
    "rule": "rule_id",
    "indicator": "indicator",
    "level": "level",
    "incident": "incident",
}
HUNT_SPAN_S = 3600  # a hunt from an alert reads the events this long either side of it
HUNT_COLUMNS = (
    '"offset", time, dataset, host_name, user_name, event_action, process_command_line, '
    "source_ip, destination_ip, dns_question_name, url_original"
)
HASH_TYPES = {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}
CANDIDATES_MOST = 40  # values offered as indicators, per alert
CRITICALITY = ("", "low", "medium", "high", "crown-jewel")


def router(console: Console) -> APIRouter:
    routes = console.routes()
    reader = console.reader("alerts:read")
    indicators = console.writer("indicators:write")
    assets = console.writer("assets:write")

    def back(alert_id: str, **told: str) -> RedirectResponse:
        query = f"?{urlencode(told)}" if told else ""
        return console.back(f"{PREFIX}/alerts/{quote(alert_id, safe='')}{query}")

    def found(alert_id: str) -> dict[str, Any]:
        alert: dict[str, Any] | None = console.backend.alert(alert_id)
        if alert is None:
            raise NotFound(f"no alert {alert_id!r}")
        return alert

    @routes.get(f"{PREFIX}/alerts")
    def alerts(
        request: Request,
        session: Annotated[Session, Depends(reader)],
        host: Annotated[str, Query(max_length=1024)] = "",
        user: Annotated[str, Query(max_length=1024)] = "",
        ip: Annotated[str, Query(max_length=64)] = "",
        rule: Annotated[str, Query(max_length=128)] = "",
        indicator: Annotated[str, Query(max_length=8192)] = "",
        level: Annotated[str, Query(max_length=16)] = "",
        incident: Annotated[str, Query(max_length=64)] = "",
        offset: Annotated[int, Query(ge=0, le=BIGINT)] = 0,
    ) -> HTMLResponse:
        given = {"host": host, "user": user, "ip": ip, "rule": rule, "indicator": indicator,
                 "level": level, "incident": incident}  # fmt: skip
        filters = {name: value.strip() for name, value in given.items() if value.strip()}
        rows = console.backend.alerts(
            limit=PAGE, offset=offset, **{FILTERS[name]: value for name, value in filters.items()}
        )
        return console.render(
            request,
            session,
            "alerts.html",
            rows=[triaged(alert) for alert in rows],
            filters=filters,
            unfilter={name: without(filters, name) for name in filters},
            levels=LEVELS,
            offset=offset,
            limit=PAGE,
        )

    @routes.get(f"{PREFIX}/alerts/{{alert_id}}")
    def alert(
        request: Request,
        alert_id: Annotated[str, Path(max_length=64)],
        session: Annotated[Session, Depends(reader)],
        added: Annotated[str, Query(max_length=8300)] = "",
        asset: Annotated[str, Query(max_length=1100)] = "",
    ) -> HTMLResponse:
        item = found(alert_id)
        row = triaged(item)
        return console.render(
            request,
            session,
            "alert.html",
            alert=item,
            row=row,
            event=flat(item.get("event")),
            matched=flat(item.get("matched_fields")),
            details=pretty(item.get("details")) if item.get("details") else "",
            assets=[
                (node, pretty(said)) for node, said in sorted((item.get("assets") or {}).items())
            ],
            candidates=list(candidates(item))[:CANDIDATES_MOST],
            types=TYPES,
            criticality=CRITICALITY,
            added=added,
            asset=asset,
        )

    @routes.post(f"{PREFIX}/alerts/{{alert_id}}/indicator")
    async def add_indicator(
        alert_id: Annotated[str, Path(max_length=64)],
        session: Annotated[Session, Depends(indicators)],
        type: Annotated[str, Form(max_length=16)],
        value: Annotated[str, Form(min_length=1, max_length=8192)],
        description: Annotated[str, Form(max_length=4096)] = "",
    ) -> RedirectResponse:
        """An indicator from the alert's event, as POST /api/v1/indicators adds one."""
        await run_in_threadpool(found, alert_id)
        made = await run_in_threadpool(
            lambda: console.backend.add_indicator(
                type,
                value,
                author=session.principal.name,
                description=description.strip() or f"added from alert {alert_id}",
            )
        )
        return back(alert_id, added=f"{made['type']}:{made['value']}")

    @routes.post(f"{PREFIX}/alerts/{{alert_id}}/asset")
    async def add_asset(
        alert_id: Annotated[str, Path(max_length=64)],
        session: Annotated[Session, Depends(assets)],
        hostname: Annotated[str, Form(min_length=1, max_length=1024)],
        ip: Annotated[str, Form(max_length=1024)] = "",
        criticality: Annotated[str, Form(max_length=32)] = "",
        owner: Annotated[str, Form(max_length=256)] = "",
    ) -> RedirectResponse:
        """The alert's host into the inventory: a one-row CMDB export, imported as POST
        /api/v1/assets/import does. The source is named after the host, so adding it again
        (corrected) replaces that one row and retires nothing else."""
        await run_in_threadpool(found, alert_id)
        if criticality not in CRITICALITY:
            raise InputError(f"criticality is one of {', '.join(c for c in CRITICALITY if c)}")
        out = io.StringIO()
        sheet = csv.writer(out)
        sheet.writerow(["hostname", "ip", "criticality", "owner", "description"])
        sheet.writerow([hostname.strip(), ip.strip(), criticality, owner.strip(),
                        f"added by {session.principal.name} from alert {alert_id}"])  # fmt: skip
        source = "console-" + re.sub(r"[^a-z0-9._-]", "_", hostname.strip().lower())[:200]
        report = await run_in_threadpool(
            console.backend.import_assets, out.getvalue().encode(), f"{source}.csv", "csv"
        )
        if not report["nodes"]:
            reasons = "; ".join(r["reason"] for r in report.get("reasons", [])) or "no asset"
            raise InputError(f"the asset was not added: {reasons}")
        return back(alert_id, asset=f"host:{hostname.strip().lower()}")

    return routes


# --- one row of the table ---------------------------------------------------------------------


def triaged(alert: dict[str, Any]) -> dict[str, Any]:
    """What the table shows of an alert: its entities by kind and its pivots."""
    named: dict[str, list[str]] = {}
    for kind, value in alert.get("entities") or ():
        named.setdefault(kind, []).append(value)
    host = (named.get("host") or [str(alert.get("host") or "").strip().lower()])[0]
    user = (named.get("user") or [""])[0]
    pivots = []
    if host:
        pivots.append(("host", f"{PREFIX}/alerts?host={quote(host, safe='')}"))
    if user:
        pivots.append(("user", f"{PREFIX}/alerts?user={quote(user, safe='')}"))
    pivots.append(("rule", f"{PREFIX}/alerts?rule={quote(alert['rule_id'], safe='')}"))
    for value in named.get("indicator", [])[:1]:
        pivots.append(("indicator", f"{PREFIX}/alerts?indicator={quote(value, safe='')}"))
    sql = hunt_sql(alert, host, user)
    if sql:
        pivots.append(("hunt", f"{PREFIX}/hunt?sql={quote(sql, safe='')}"))
    return {
        **alert,
        "when": alert.get("time") or alert.get("created"),
        "host_entity": host,
        "users": named.get("user", []),
        "ips": named.get("ip", []),
        "indicators": named.get("indicator", []),
        "pivots": pivots,
        "hunt": sql,
    }


def hunt_sql(alert: dict[str, Any], host: str, user: str) -> str:
    """A SQL hunt over the stored events (the view `events`) of the alert's host, else its
    user, HUNT_SPAN_S either side of its time (empty without either)."""
    if host:
        where = f"lower(host_name) = {literal(host)}"
    elif user:
        where = f"lower(user_name) = {literal(user)}"
    else:
        return ""
    at = alert.get("time") or alert.get("created")
    if at is not None:
        start, end = stamp(float(at) - HUNT_SPAN_S), stamp(float(at) + HUNT_SPAN_S)
        where += f"\n  AND time BETWEEN TIMESTAMPTZ '{start}' AND TIMESTAMPTZ '{end}'"
    # a query the analyst sees and may change before it runs; its values are quoted
    return f"SELECT {HUNT_COLUMNS}\nFROM events\nWHERE {where}\nORDER BY time\nLIMIT 500"


def literal(text: str) -> str:
    """A SQL string literal (DuckDB: a quote is doubled, nothing else is special)."""
    return "'" + text.replace("'", "''") + "'"


def stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(epoch))


def without(filters: dict[str, str], name: str) -> str:
    """The alerts page with every filter but `name`."""
    rest = {k: v for k, v in filters.items() if k != name}
    return f"{PREFIX}/alerts" + (f"?{urlencode(rest)}" if rest else "")


def pretty(value: Any) -> str:
    """A record's part as indented JSON text (shown escaped, never as markup)."""
    return orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
                        | orjson.OPT_SORT_KEYS).decode()  # fmt: skip


def flat(value: Any) -> list[tuple[str, str]]:
    """A record's fields as (dotted name, text) rows, in their order; a list's scalars are
    joined, anything deeper kept as JSON (shown escaped, never as markup)."""
    rows: list[tuple[str, str]] = []

    def walk(item: Any, at: str) -> None:
        if isinstance(item, dict) and item:
            for key, inner in item.items():
                walk(inner, f"{at}.{key}" if at else str(key))
        elif isinstance(item, list) and all(not isinstance(i, dict | list) for i in item):
            rows.append((at, ", ".join("" if i is None else str(i) for i in item)))
        elif isinstance(item, dict | list):
            rows.append((at, orjson.dumps(item, default=str).decode()))
        else:
            rows.append((at, "" if item is None else str(item)))

    walk(value, "")
    return rows


# --- values of the event worth adding as indicators ------------------------------------------


def candidates(alert: dict[str, Any]) -> Iterator[dict[str, str]]:
    """(type, value, field) for each address, domain, URL and hash the alert's event (and
    its entities) holds, once each."""
    seen: set[tuple[str, str]] = set()
    pairs = [("entity " + kind, value) for kind, value in alert.get("entities") or ()]
    pairs += list(_scalars(alert.get("event"), ""))
    for field, value in pairs:
        for kind, text in _typed(field, value):
            if (kind, text) not in seen:
                seen.add((kind, text))
                yield {"type": kind, "value": text, "field": field}


def _scalars(value: Any, at: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _scalars(item, f"{at}.{key}" if at else str(key))
    elif isinstance(value, list):
        for item in value[:50]:
            yield from _scalars(item, at)
    elif isinstance(value, str | int) and not isinstance(value, bool):
        text = str(value).strip()
        if 0 < len(text) <= 2048:
            yield at, text


def _typed(field: str, text: str) -> list[tuple[str, str]]:
    """The indicator types a value reads as (none for most values)."""
    name = field.lower()
    try:
        address = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        pass
    else:
        if address.is_loopback or address.is_unspecified:
            return []
        return [("ipv4" if address.version == 4 else "ipv6", str(address))]
    lowered = text.lower()
    if lowered.startswith(("http://", "https://")):
        try:
            return [("url", canonical_url(text))]
        except IndicatorValueError:
            return []
    digests = []  # Sysmon's `SHA1=..,MD5=..`: each digest; not the import-table hash
    for part in lowered.split(","):
        label, _, digest = part.rpartition("=")
        digest = digest.strip()
        if label.strip() != "imphash" and len(digest) in HASH_TYPES and digest.isalnum():
            try:
                int(digest, 16)
            except ValueError:
                continue
            digests.append((HASH_TYPES[len(digest)], digest))
    if digests:
        return digests
    if "." in text and any(word in name for word in ("domain", "query", "hostname", "dns")):
        try:
            return [("domain", canonical_domain(text))]
        except IndicatorValueError:
            return []
    return []


__all__ = ["router"]
