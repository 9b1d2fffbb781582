"""The ECS view of an event: Elastic Common Schema names from per-dataset tables (data/ecs.yml).

Each dataset (`zeek.dns`, `aws.cloudtrail`, ...) has a table: ECS field -> where its value
comes from. A table may name a `base` table whose entries it inherits (its own win). An entry
is one of:

- a native field name, or a list of them (the first that has a value);
- `{const: value}`;
- `{field: name or [names], map: {native: ecs}, default: value}` (values looked up in `map`,
  compared as lower-case text);
- `{field: name or [names], parse: how}` with `how` one of the PARSERS below; a parser may
  give several ECS fields at once (a Sysmon `Hashes` value gives `file.hash.md5`, ...).

The view is flat (`source.ip`, not `{"source": {"ip": ...}}`) and holds only fields that
have a value.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Mapping
from functools import cache
from importlib import resources
from typing import Any, Protocol

import yaml


class Event(Protocol):
    """What the view reads of an event (`vigil.events.Event`, which builds its view from
    here: this module does not import it back)."""

    @property
    def fields(self) -> dict[str, Any]: ...

    @property
    def dataset(self) -> str | None: ...

    @property
    def product(self) -> str | None: ...

    @property
    def timestamp(self) -> str | None: ...

    @property
    def host(self) -> str | None: ...


_ABSENT: tuple[Any, ...] = (None, "", "-", [])  # values that do not count as a value


def _hashes(value: Any) -> dict[str, str]:
    """`SHA1=..,MD5=..,SHA256=..,IMPHASH=..` (Sysmon) as {'sha1': .., 'md5': .., ...}."""
    out: dict[str, str] = {}
    for part in str(value).split(","):
        name, _, digest = part.partition("=")
        if digest:
            out[name.strip().lower()] = digest.strip().lower()
    return out


def _user(value: Any) -> dict[str, str]:
    """`DOMAIN\\user` or `user@domain` as name and domain."""
    text = str(value)
    if "\\" in text:
        domain, _, name = text.partition("\\")
        return {"name": name, "domain": domain}
    return {"name": text}


def _ip(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else ""
    text = str(value).strip().strip("[]")
    if "." in text and ":" not in text:
        # IPv4, most addresses: the C parser, and its text when it is the canonical one
        # (ipaddress, below, takes a few microseconds)
        try:
            if socket.inet_ntoa(socket.inet_aton(text)) == text and text.count(".") == 3:
                return text
        except (OSError, ValueError):  # ValueError: a NUL in the text
            return None
    try:
        return str(ipaddress.ip_address(text.split("%")[0]))
    except ValueError:
        return None


def _host(value: Any) -> str | None:
    """A host name (not an address: those go to `.ip`)."""
    text = str(value).strip()
    return None if _ip(text) is not None or not text else text


def _port(value: Any) -> int | None:
    try:
        port = int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: float infinity
        return None
    return port if 0 <= port <= 65535 else None


def _int(value: Any) -> int | None:
    text = str(value)
    digits = text[1:] if text.startswith("-") else text
    # ASCII only: str.isdigit() is true for '²', which int() refuses
    return int(text) if digits.isascii() and digits.isdigit() else None


def _basename(value: Any) -> str:
    text = str(value)
    return text.replace("\\", "/").rsplit("/", 1)[-1]


# sshd's messages about logins (the outcome, user and peer of each attempt), matched from the
# message's start; the peer is the one sshd writes last, at the end: a user name sent by the
# client (`a from 10.0.0.1 port 22`) cannot name another. Bounded: no nested quantifiers.
_SSHD_END = r" from (\S{1,64}) port (\d{1,5})(?: ssh2)?(?: \[preauth\])?$"
_SSHD = (
    (re.compile(r"Accepted \S{1,64} for (\S{1,256}) from (\S{1,64}) port (\d{1,5})"), "success"),
    (re.compile(r"Failed \S{1,64} for (?:invalid user )?(.{0,256})" + _SSHD_END), "failure"),
    # the attempt's own `Failed ... for invalid user` line counts it: this one says who
    (
        re.compile(
            r"Invalid user (.{0,256}) from (\S{1,64})(?: port (\d{1,5}))?(?: \[preauth\])?$"
        ),
        "invalid-user",
    ),
)


def sshd_login(text: str) -> tuple[str, str, str, int | None] | None:
    """An sshd message about a login attempt as (outcome, user, peer, port), else None:
    `Failed password for invalid user admin from 1.2.3.4 port 2222 ssh2` and its kin. The
    outcome is success, failure (an attempt refused) or invalid-user (sshd naming an unknown
    user, before that attempt's failure)."""
    text = text[:2048]
    for pattern, outcome in _SSHD:
        found = pattern.match(text)
        if found:
            port = int(found.group(3)) if found.group(3) else None
            return outcome, found.group(1), found.group(2), port
    return None


def _sshd(value: Any) -> dict[str, Any]:
    login = sshd_login(str(value))
    if login is None:
        return {}
    outcome, user, peer, port = login
    out: dict[str, Any] = {
        "event.category": "authentication",
        "event.outcome": "success" if outcome == "success" else "failure",
        "user.name": user,
        "source.ip": _ip(peer),
    }
    if port is not None:
        out["source.port"] = port
    return out


# name -> function of the native value: a scalar, or a dict of suffixes (`file.hash` + `.md5`)
PARSERS: dict[str, Callable[[Any], Any]] = {
    "hashes": _hashes,
    "user": _user,
    "ip": _ip,
    "port": _port,
    "host": _host,
    "basename": _basename,
    "int": _int,
    "lower": lambda v: str(v).lower(),
    "text": str,
    "sshd": _sshd,
}


# One entry of a compiled table: the ECS name, the native names to try in order (none for a
# constant), the constant, and the conversion of the value found (None: as it is).
Entry = tuple[str, tuple[str, ...], Any, Callable[[Any], Any] | None]


def _compile(target: str, spec: Any) -> Entry:
    if isinstance(spec, str):
        return target, (spec,), None, None
    if isinstance(spec, list):
        return target, tuple(str(s) for s in spec), None, None
    if isinstance(spec, Mapping):
        if "const" in spec:
            return target, (), spec["const"], None
        names = spec["field"]
        fields = (names,) if isinstance(names, str) else tuple(str(n) for n in names)
        if "map" in spec:
            table = {str(k).lower(): v for k, v in spec["map"].items()}
            default = spec.get("default")

            def mapped(value: Any) -> Any:
                return table.get(str(value).lower(), default)

            return target, fields, None, mapped
        if "parse" in spec:
            return target, fields, None, PARSERS[spec["parse"]]
        return target, fields, None, None
    raise ValueError(f"ECS table entry for {target} not understood: {spec!r}")


Table = list[Entry]


@cache
def tables() -> dict[str, Table]:
    """Every dataset's compiled table (its base tables' entries included)."""
    text = resources.files("vigil.data").joinpath("ecs.yml").read_text("utf-8")
    raw: dict[str, dict[str, Any]] = yaml.safe_load(text)

    def merged(name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
        spec = dict(raw.get(name) or {})
        base = spec.pop("base", None)
        if base is None or base in seen:
            return spec
        return {**merged(base, (*seen, name)), **spec}

    return {
        name: [_compile(target, entry) for target, entry in merged(name).items()]
        for name in raw
        if not name.startswith("_")
    }


_SHAPES: dict[tuple[int, tuple[str, ...]], Table] = {}


def _present_entries(table: Table, fields: dict[str, Any]) -> Table:
    """The entries of `table` that can give a value for events with these field names (each
    with only the names the event has): events of one kind share their names, so this is
    worked out once per kind."""
    key = (id(table), tuple(fields))
    found = _SHAPES.get(key)
    if found is None:
        if len(_SHAPES) >= 4096:
            _SHAPES.clear()
        found = []
        for target, names, const, convert in table:
            if names:
                names = tuple(name for name in names if name in fields)
                if not names:
                    continue
            found.append((target, names, const, convert))
        _SHAPES[key] = found
    return found


def ecs_view(event: Event) -> dict[str, Any]:
    """The ECS fields of one event (see the module docstring)."""
    fields = event.fields
    get = fields.get
    out: dict[str, Any] = {}
    known = tables()
    table = known.get(event.dataset or "")
    if table is None and event.dataset:  # zeek.rfb uses zeek's table
        table = known.get(event.dataset.split(".", 1)[0])
    absent = _ABSENT
    for target, names, const, convert in _present_entries(
        table or known.get("default", []), fields
    ):
        if names:
            for name in names:
                value = get(name)
                if value not in absent:
                    break
            else:
                continue
        else:
            value = const
        if convert is not None:
            value = convert(value)
            if isinstance(value, dict):
                for suffix, part in value.items():
                    if part not in absent:
                        # a target starting with "_" takes the parser's names as they are
                        name = suffix if target[:1] == "_" else f"{target}.{suffix}"
                        out.setdefault(name, part)
                continue
        if value not in absent and target not in out:
            out[target] = value
    if event.dataset:
        out.setdefault("event.dataset", event.dataset)
    module = event.product or (event.dataset.split(".", 1)[0] if event.dataset else None)
    if module:
        out.setdefault("event.module", module)
    stamp = event.timestamp
    if stamp:
        out["@timestamp"] = stamp
    host = event.host
    if host and "host.name" not in out:
        out["host.name"] = host
    return out
