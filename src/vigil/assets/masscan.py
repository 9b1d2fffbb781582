"""masscan JSON (`-oJ`, and its one-record-a-line `-oD`): hosts by IP and their open ports
as services, with the banner masscan grabbed. masscan's JSON is often not quite JSON (a comma
after the last record, no closing bracket when stopped, a `{finished: 1}` trailer): a file
that does not parse whole is read a record a line, and a line that does not parse is set
aside."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from vigil.assets import scanners
from vigil.assets.model import Inventory, Node
from vigil.errors import InputError

FORMAT = "masscan"

_RECORD_START = re.compile(rb'^\s*\[?\s*\{\s*"ip"\s*:')
_FINISHED = r"\{\s*\"?finished\"?\s*:\s*\d+\s*\}?"  # the trailer older versions write
_TRAILER = re.compile(_FINISHED + r"\s*\Z")
_NOT_RECORDS = re.compile(rf"^(\[|\]|{_FINISHED})?$")  # a line that holds no record
# masscan's port entry → the service node's attribute.
PORT_ATTRS = {"status": "state", "reason": "reason", "ttl": "ttl"}
SERVICE_ATTRS = {"name": "service", "banner": "banner"}
NOT_SERVICES = frozenset({"icmp", "arp"})  # a host answering a ping, not a listening port


def sniff(name: str, head: bytes) -> bool:
    return bool(_RECORD_START.match(head.removeprefix(b"\xef\xbb\xbf")))


def read(data: bytes, name: str) -> Inventory:
    text = data.decode("utf-8", "replace").removeprefix("\ufeff")
    if not text.strip():
        return Inventory(f"{FORMAT}:{name}")
    if text.lstrip()[0] not in "[{":
        raise InputError(f"{name}: not masscan JSON (it does not start with '[' or '{{')")
    inventory = Inventory(f"{FORMAT}:{name}")
    for where, record in _records(text, inventory):
        inventory.report.records_read += 1
        _record(inventory, record, where)
    return inventory


def _records(text: str, inventory: Inventory) -> Iterator[tuple[str, Any]]:
    """Each record with where it is: the whole file when it parses (once its ending is
    mended), else a line at a time (as masscan writes), a line that does not parse set
    aside."""
    try:
        whole = json.loads(_mended(text))
    except ValueError:
        pass
    else:
        records = whole if isinstance(whole, list) else [whole]
        yield from ((f"record {n}", r) for n, r in enumerate(records, 1))
        return
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip().rstrip(",").strip()
        if _NOT_RECORDS.match(stripped):
            continue
        try:
            yield f"line {number}", json.loads(stripped)
        except ValueError as exc:
            inventory.report.records_read += 1
            inventory.report.reject(f"line {number}", f"not a JSON record: {exc}")


def _mended(text: str) -> str:
    """The file with its ending as JSON has it: no trailer, no comma after the last record,
    its closing bracket."""
    body = _TRAILER.sub("", text.strip()).rstrip()
    if not body.startswith("["):
        return body
    return body.rstrip("]").rstrip().rstrip(",") + "]"


def _record(inventory: Inventory, record: Any, where: str) -> None:
    if not isinstance(record, dict):
        inventory.report.reject(where, "not a JSON object")
        return
    address = scanners.ip(record.get("ip"))
    if address is None:
        inventory.report.reject(where, f"not an IP address: {record.get('ip')!r}")
        return
    ports = record.get("ports") or []
    if not isinstance(ports, list):
        inventory.report.reject(where, "its ports are not a list")
        return
    host = scanners.host(inventory, None, [address], state="up")
    if host is None:  # cannot be: an IP address keys a host
        return
    scanners.seen(host, record.get("timestamp"))
    for index, port in enumerate(ports):
        _port(inventory, host, port, f"{where}, port {index + 1}")


def _port(inventory: Inventory, host: Node, port: Any, where: str) -> None:
    if not isinstance(port, dict):
        inventory.report.warn(where, "not a JSON object")
        return
    proto = str(port.get("proto") or "").strip().lower()
    if proto in NOT_SERVICES:
        return
    number = scanners.port_number(port.get("port"))
    if number is None or not proto:
        inventory.report.warn(where, "a port with no number or protocol")
        return
    found = port.get("service")
    if not isinstance(found, dict):
        found = {}
    # A banner record has no status: a banner came back, so the port is open.
    state = port.get("status") or ("open" if found else None)
    if state != "open":
        return
    attrs = {ours: port.get(theirs) for theirs, ours in PORT_ATTRS.items()}
    attrs.update({ours: found.get(theirs) for theirs, ours in SERVICE_ATTRS.items()})
    attrs["state"] = "open"
    scanners.service(inventory, host, proto, number, **attrs)
