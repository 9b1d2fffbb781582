"""Connections as Vigil sees them: a `Flow` (who opened what to which port, when), read from
an event that records one (`flow_of`: a Zeek conn record, a Sysmon network connection, a
Suricata flow record, through the event's ECS view), and a batch of them as one record of
the `flows` stream (`flows_record`, `flows_of_record`), which the segments stage checks
against the segment policy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from vigil.events.model import Event

Protocol = Literal["tcp", "udp", "icmp"]
PROTOCOLS: tuple[Protocol, ...] = ("tcp", "udp", "icmp")


@dataclass(frozen=True)
class Flow:
    """One observed connection: who opened it to what (destination port; None for ICMP or
    unknown), when (epoch s), and the source record's id (Zeek uid, Sysmon record)."""

    src: str
    dst: str
    protocol: str
    port: int | None
    time: float | None = None
    uid: str | None = None
    src_port: int | None = None
    host: str | None = None  # the host that logged it, when it says (Sysmon's Computer)


def port_number(value: Any) -> int | None:
    """A port (0-65535) from a number or its digits; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= 65535 else None
    if isinstance(value, str) and value.isdigit() and len(value) <= 5:
        return port_number(int(value))
    return None


def seconds(value: Any) -> float | None:
    """A finite number of seconds from a number or its text; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value == value and abs(value) < 1e12 else None
    if isinstance(value, str):
        try:
            return seconds(float(value))
        except ValueError:
            return None
    return None


def flow_of(event: Event) -> Flow | None:
    """The connection an event records, from its ECS view: a Zeek conn record, a Sysmon
    network connection (EventID 3, Windows or Linux) or a Suricata flow record; None for any
    other event (Zeek's and Suricata's application logs repeat a connection already logged)."""
    dataset, fields = event.dataset or "", event.fields
    if dataset in ("windows", "linux.sysmon"):
        channel = str(fields.get("Channel") or fields.get("Provider_Name") or "")
        if str(fields.get("EventID")) != "3" or "sysmon" not in channel.lower():
            return None
    elif dataset not in ("zeek.conn", "suricata.flow"):  # netflow: one direction a record
        return None
    view = event.ecs
    src, dst = view.get("source.ip"), view.get("destination.ip")
    protocol = str(view.get("network.transport") or "").lower()
    if not isinstance(src, str) or not isinstance(dst, str) or protocol not in PROTOCOLS:
        return None
    uid = view.get("event.id") or fields.get("flow_id") or event.record
    host = view.get("host.name")
    return Flow(
        src=src[:64],
        dst=dst[:64],
        protocol=protocol,
        port=None if protocol == "icmp" else port_number(view.get("destination.port")),
        time=event.time,
        uid=None if uid is None else str(uid)[:64],
        src_port=port_number(view.get("source.port")),
        host=host[:256] if isinstance(host, str) else None,
    )


def flows_record(flows: Sequence[Flow]) -> bytes:
    """A batch of flows as one record of the `flows` stream."""
    return orjson.dumps(
        [[f.src, f.dst, f.protocol, f.port, f.time, f.uid, f.src_port, f.host] for f in flows]
    )


def flows_of_record(data: bytes) -> list[Flow]:
    """The flows of a `flows` stream record (ValueError when it is not one)."""
    try:
        rows = orjson.loads(data)
        return [
            Flow(
                src=str(r[0]),
                dst=str(r[1]),
                protocol=str(r[2]),
                port=port_number(r[3]),
                time=seconds(r[4]),
                uid=None if r[5] is None else str(r[5]),
                src_port=port_number(r[6]),
                host=None if r[7] is None else str(r[7]),
            )
            for r in rows
        ]
    except (orjson.JSONDecodeError, TypeError, IndexError, KeyError) as exc:
        raise ValueError(f"not a flows record: {exc}") from None


__all__ = [
    "PROTOCOLS",
    "Flow",
    "Protocol",
    "flow_of",
    "flows_of_record",
    "flows_record",
    "port_number",
    "seconds",
]
