"""Micro-segmentation: segments, the flows allowed between them, their nftables ruleset, and
observed flows checked against them (conformance) or learned from (a least-privilege policy).

    segments = Segments([Segment("servers", ("10.0.0.0/24",)), Segment("users", ("10.0.1.0/24",))])
    policy = FlowPolicy.from_yaml(Path("segments.yaml").read_text())  # or learn(flows, segments)
    ruleset = compile_nftables(policy, segments)  # `nft -f -` takes it; staged=True only logs
    for violation in check(read_flows(Path("conn.log")), policy, segments):
        print(violation.reason, to_alert(violation))

Between segments everything is denied unless a rule allows it; inside a segment everything is
allowed unless the policy says `intra: deny` for it. An address belongs to the segment with the
longest prefix holding it (a tag's addresses count as host prefixes); one in no segment is
denied everything. Source ports never matter: rules name destination ports only.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vigil.errors import Invalid
from vigil.events import parse_time
from vigil.events.entities import entities_in
from vigil.events.flows import (
    PROTOCOLS,
    Flow,
    Protocol,
    port_number,
    seconds,
)
from vigil.events.records import Alert, Detection, alert_id, detected_now
from vigil.ingest import zeek
from vigil.ingest.base import FileReport, file_input

PortRange = tuple[int, int]  # inclusive; (445, 445) is one port
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# tag → the addresses (or CIDRs) of the assets carrying it; the asset inventory plugs in here
TagResolver = Callable[[str], Iterable[str]]

TABLE = "vigil_segments"
DROP_PREFIX = "vigil-seg drop: "
STAGED_PREFIX = "vigil-seg staged: "
EPHEMERAL = 49152  # IANA's dynamic port range starts here
ATTACK_TAGS = ("attack.lateral-movement", "attack.t1021")
RULE_ID = "vigil-segment-policy"

# bounds on untrusted input: policy files, tag lookups, flow logs
MAX_POLICY_BYTES = 4 << 20
MAX_NETWORKS = 100_000
MAX_FLOWS = 50_000_000
MAX_LINE = 1 << 20
MAX_EXAMPLES = 100

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")  # also a valid nft set name once prefixed


# --- model ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """A named part of the network: its CIDRs and the asset tags whose addresses it holds."""

    name: str
    cidrs: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise Invalid(
                f"segment {self.name!r}: a name is a letter then up to 31 letters, digits or _"
            )
        for cidr in self.cidrs:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise Invalid(f"segment {self.name}: {cidr!r} is no CIDR ({exc})") from None


@dataclass(frozen=True)
class Rule:
    """One allowed flow: from a segment to a segment, a protocol, destination ports (none: all
    ports; ICMP has none)."""

    src: str
    dst: str
    protocol: Protocol
    ports: tuple[PortRange, ...] = ()

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise Invalid(f"rule {self.src} → {self.dst}: unknown protocol {self.protocol!r}")
        if self.protocol == "icmp" and self.ports:
            raise Invalid(f"rule {self.src} → {self.dst}: icmp has no ports")
        for low, high in self.ports:
            if not 0 <= low <= high <= 65535:
                raise Invalid(f"rule {self.src} → {self.dst}: bad port range {low}-{high}")

    def allows_port(self, port: int | None) -> bool:
        if not self.ports:
            return True
        return port is not None and any(low <= port <= high for low, high in self.ports)


@dataclass(frozen=True)
class FlowPolicy:
    """The segments, the flows allowed between them, and the segments whose inside traffic is
    denied too (`intra: deny`). Everything else between segments is denied."""

    segments: tuple[Segment, ...]
    rules: tuple[Rule, ...]
    deny_intra: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        names = [s.name for s in self.segments]
        twice = sorted(n for n, c in Counter(names).items() if c > 1)
        if twice:
            raise Invalid(f"segment defined twice: {', '.join(twice)}")
        known = set(names)
        for rule in self.rules:
            for name in (rule.src, rule.dst):
                if name not in known:
                    raise Invalid(f"rule {rule.src} → {rule.dst}: no segment named {name!r}")
        unknown = sorted(self.deny_intra - known)
        if unknown:
            raise Invalid(f"intra: deny names unknown segments: {', '.join(unknown)}")

    @cached_property
    def _index(self) -> dict[tuple[str, str, str], list[Rule]]:
        index: dict[tuple[str, str, str], list[Rule]] = defaultdict(list)
        for rule in self.rules:
            index[(rule.src, rule.dst, rule.protocol)].append(rule)
        return dict(index)

    def denies(self, src: str | None, dst: str | None, protocol: str, port: int | None) -> str:
        """Why a flow between these segments is denied; "" when it is allowed."""
        if src is None or dst is None:
            return "no segment holds the " + ("source" if src is None else "destination")
        for rule in self._index.get((src, dst, protocol), ()):
            if rule.allows_port(port):
                return ""
        what = protocol if protocol == "icmp" or port is None else f"{protocol}/{port}"
        if src == dst:
            if src not in self.deny_intra:
                return ""
            return f"traffic inside {src} is denied (intra: deny) and no rule allows {what}"
        return f"no rule allows {src} → {dst} {what}"

    @classmethod
    def from_yaml(cls, text: str, source: str = "<policy>") -> FlowPolicy:
        """A policy from its YAML (see `to_yaml`); `Invalid` names the source and the fault."""
        if len(text) > MAX_POLICY_BYTES:
            raise Invalid(f"{source}: larger than {MAX_POLICY_BYTES >> 20} MiB")
        try:
            doc = yaml.safe_load(text)
            model = _PolicyFile.model_validate(doc if doc is not None else {})
        except yaml.YAMLError as exc:
            raise Invalid(f"{source}: not YAML ({exc})") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise Invalid(f"{source}: {where}: {first['msg']}") from None
        try:
            return model.to_policy()
        except Invalid as exc:
            raise Invalid(f"{source}: {exc}") from None

    def to_yaml(self) -> str:
        doc = {
            "segments": [
                {
                    "name": s.name,
                    **({"cidrs": list(s.cidrs)} if s.cidrs else {}),
                    **({"tags": list(s.tags)} if s.tags else {}),
                    **({"intra": "deny"} if s.name in self.deny_intra else {}),
                }
                for s in self.segments
            ],
            "flows": [
                {
                    "src": r.src,
                    "dst": r.dst,
                    "protocol": r.protocol,
                    **({"ports": [_port_text(p) for p in r.ports]} if r.ports else {}),
                }
                for r in self.rules
            ],
        }
        return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)


def _port_text(ports: PortRange) -> int | str:
    low, high = ports
    return low if low == high else f"{low}-{high}"


def _parse_port(value: int | str) -> PortRange:
    if isinstance(value, int):
        return (value, value)
    low, sep, high = value.strip().partition("-")
    if not low.isdigit() or (sep and not high.isdigit()):
        raise ValueError(f"{value!r} is no port or range (443, '8000-8080')")
    return (int(low), int(high) if sep else int(low))


def collapse_ports(ports: Iterable[int | PortRange]) -> tuple[PortRange, ...]:
    """Ports and ranges merged into the fewest sorted ranges: 80, 81, 82, 443 → 80-82, 443."""
    spans = sorted((p, p) if isinstance(p, int) else p for p in ports)
    merged: list[list[int]] = []
    for low, high in spans:
        if merged and low <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    return tuple((low, high) for low, high in merged)


class _SegmentModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    cidrs: list[str] = Field(default_factory=list, max_length=MAX_NETWORKS)
    tags: list[str] = Field(default_factory=list, max_length=10_000)
    intra: Literal["allow", "deny"] = "allow"


class _RuleModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    src: str
    dst: str
    protocol: Protocol
    ports: list[int | str] = Field(default_factory=list, max_length=10_000)

    @field_validator("ports")
    @classmethod
    def _ports(cls, value: list[int | str]) -> list[int | str]:
        for port in value:
            low, high = _parse_port(port)
            if not 0 <= low <= high <= 65535:
                raise ValueError(f"port {port!r} is out of 0-65535 or reversed")
        return value


class _PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    segments: list[_SegmentModel] = Field(default_factory=list, max_length=10_000)
    flows: list[_RuleModel] = Field(default_factory=list, max_length=100_000)

    def to_policy(self) -> FlowPolicy:
        segments = tuple(Segment(s.name, tuple(s.cidrs), tuple(s.tags)) for s in self.segments)
        rules = tuple(
            Rule(r.src, r.dst, r.protocol, collapse_ports(_parse_port(p) for p in r.ports))
            for r in self.flows
        )
        deny = frozenset(s.name for s in self.segments if s.intra == "deny")
        return FlowPolicy(segments, rules, deny)


# --- resolving addresses to segments ----------------------------------------------------------


class Segments:
    """Segments compiled for lookup: an address resolves to the segment of the longest prefix
    holding it. Per address family, one dict per prefix length, tried longest first: a lookup
    costs one dict probe per distinct prefix length, however many networks there are."""

    def __init__(
        self,
        segments: Iterable[Segment],
        tags: TagResolver | Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.segments: tuple[Segment, ...] = tuple(segments)
        if isinstance(tags, Mapping):
            table = tags
            resolve: TagResolver = lambda tag: table.get(tag, ())  # noqa: E731
        else:
            resolve = tags if tags is not None else (lambda tag: ())
        owner: dict[Network, str] = {}
        self._networks: dict[str, list[Network]] = {}
        for segment in self.segments:
            if segment.name in self._networks:
                raise Invalid(f"segment defined twice: {segment.name}")
            found: list[Network] = [ipaddress.ip_network(c, strict=False) for c in segment.cidrs]
            for tag in segment.tags:
                for address in resolve(tag):
                    try:
                        found.append(ipaddress.ip_network(address, strict=False))
                    except ValueError:
                        raise Invalid(
                            f"segment {segment.name}: tag {tag!r} gave {address!r}, no address"
                        ) from None
                    if len(owner) + len(found) > MAX_NETWORKS:
                        raise Invalid(f"more than {MAX_NETWORKS} networks in the segments")
            for network in found:
                other = owner.setdefault(network, segment.name)
                if other != segment.name:
                    raise Invalid(f"{network} is in two segments: {other} and {segment.name}")
            self._networks[segment.name] = found
        # family → [(prefix length, {network int >> host bits: segment})], longest first
        self._plan: dict[int, list[tuple[int, int, dict[int, str]]]] = {4: [], 6: []}
        by_length: dict[tuple[int, int], dict[int, str]] = defaultdict(dict)
        for network, name in owner.items():
            shift = network.max_prefixlen - network.prefixlen
            by_length[(network.version, network.prefixlen)][
                int(network.network_address) >> shift
            ] = name
        for (version, length), table_ in sorted(by_length.items(), key=lambda kv: -kv[0][1]):
            bits = 32 if version == 4 else 128
            self._plan[version].append((length, bits - length, table_))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.segments)

    def networks(self, name: str) -> list[Network]:
        """The networks of a segment as given (CIDRs and tag addresses), unmerged."""
        return list(self._networks[name])

    def resolve(self, address: str) -> str | None:
        """The segment holding an address (longest prefix wins); None for none or no address."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return None
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        value = int(ip)
        for _length, shift, table in self._plan[ip.version]:
            name = table.get(value >> shift)
            if name is not None:
                return name
        return None

    def disjoint(self, name: str) -> list[Network]:
        """The addresses that resolve to a segment, as non-overlapping networks: its own
        networks merged, less the more specific networks of other segments (which win). This
        is what an nftables set may hold, since a set cannot say which prefix is longer."""
        own = self._networks[name]
        others = [n for other, nets in self._networks.items() if other != name for n in nets]
        result: list[Network] = []
        for version in (4, 6):
            mine = [n for n in own if n.version == version]
            theirs = [n for n in others if n.version == version]
            for network in ipaddress.collapse_addresses(mine):  # type: ignore[type-var]
                pieces: list[Network] = [network]
                for cut in theirs:
                    if cut.prefixlen <= network.prefixlen:
                        continue  # the same or wider: ours is more specific and wins
                    next_pieces: list[Network] = []
                    for piece in pieces:
                        if cut.subnet_of(piece):  # type: ignore[arg-type]
                            next_pieces.extend(piece.address_exclude(cut))  # type: ignore[arg-type]
                        else:
                            next_pieces.append(piece)
                    pieces = next_pieces
                    if len(pieces) > MAX_NETWORKS:
                        raise Invalid(f"segment {name}: too many networks once carved")
                result.extend(sorted(pieces))
        return result


# --- nftables ---------------------------------------------------------------------------------


def _set_name(segment: str, version: int) -> str:
    return f"seg_{segment}_v{version}"


def _ports_expr(ports: tuple[PortRange, ...]) -> str:
    items = [str(low) if low == high else f"{low}-{high}" for low, high in ports]
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _match(rule: Rule, version: int) -> str:
    family = "ip" if version == 4 else "ip6"
    src, dst = _set_name(rule.src, version), _set_name(rule.dst, version)
    where = f"{family} saddr @{src} {family} daddr @{dst}"
    if rule.protocol == "icmp":
        return f"{where} meta l4proto {'icmp' if version == 4 else 'ipv6-icmp'}"
    if rule.ports:
        return f"{where} {rule.protocol} dport {_ports_expr(rule.ports)}"
    return f"{where} meta l4proto {rule.protocol}"


def compile_nftables(
    policy: FlowPolicy, segments: Segments, *, staged: bool = False, table: str = TABLE
) -> str:
    """The policy as one nftables table (`inet vigil_segments`) for `nft -f -`: a set per
    segment and family, the same allowed flows in a forward and an input chain, then a final
    drop that counts and logs. `staged`: the final rule counts and logs what it would drop
    (prefix "vigil-seg staged: ") and lets it through. Loading it replaces the table whole."""
    if not _NAME.match(table):
        raise Invalid(f"table name {table!r}: a letter then up to 31 letters, digits or _")
    names = [s.name for s in policy.segments]
    unknown = sorted(set(names) - set(segments.names))
    if unknown:
        raise Invalid(f"the policy names segments the segment set lacks: {', '.join(unknown)}")
    present: set[tuple[str, int]] = set()
    lines = [f"table inet {table}", f"delete table inet {table}", f"table inet {table} {{"]
    for name in names:
        nets = segments.disjoint(name)
        for version, kind in ((4, "ipv4_addr"), (6, "ipv6_addr")):
            elements = [str(n) for n in nets if n.version == version]
            lines.append(f"\tset {_set_name(name, version)} {{")
            lines.append(f"\t\ttype {kind}")
            lines.append("\t\tflags interval")
            if elements:
                present.add((name, version))
                lines.append(f"\t\telements = {{ {', '.join(elements)} }}")
            lines.append("\t}")
    allowed: list[str] = []
    for rule in policy.rules:
        for version in (4, 6):
            if (rule.src, version) in present and (rule.dst, version) in present:
                allowed.append(f"{_match(rule, version)} counter accept")
    for name in names:
        if name in policy.deny_intra:
            continue
        for version in (4, 6):
            if (name, version) in present:
                family = "ip" if version == 4 else "ip6"
                allowed.append(
                    f"{family} saddr @{_set_name(name, version)} "
                    f"{family} daddr @{_set_name(name, version)} counter accept"
                )
    final = (
        f'counter log prefix "{STAGED_PREFIX}" accept'
        if staged
        else f'counter log prefix "{DROP_PREFIX}" drop'
    )
    # IPv6 cannot work without neighbour discovery, which no segment rule would name
    discovery = (
        "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, "
        "nd-router-advert } accept"
    )
    for chain, hook, extra in (
        ("forward", "forward", []),
        ("input", "input", ['iifname "lo" accept']),
    ):
        lines.append(f"\tchain {chain} {{")
        lines.append(f"\t\ttype filter hook {hook} priority filter; policy accept;")
        lines.extend(f"\t\t{line}" for line in extra)
        lines.append("\t\tct state established,related accept")
        lines.append(f"\t\t{discovery}")
        lines.extend(f"\t\t{line}" for line in allowed)
        lines.append(f"\t\t{final}")
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


# --- flows ------------------------------------------------------------------------------------


# field names of each source → Flow's fields
ZEEK_FIELDS = {
    "src": "id.orig_h",
    "dst": "id.resp_h",
    "protocol": "proto",
    "port": "id.resp_p",
    "time": "ts",
    "uid": "uid",
    "src_port": "id.orig_p",
}
SYSMON_FIELDS = {
    "src": "SourceIp",
    "dst": "DestinationIp",
    "protocol": "Protocol",
    "port": "DestinationPort",
    "time": "UtcTime",
    "uid": "EventRecordID",
    "src_port": "SourcePort",
}


def flow_from(fields: Mapping[str, Any], names: Mapping[str, str] = ZEEK_FIELDS) -> Flow | None:
    """A flow from one record's fields (Zeek conn or Sysmon EventID 3 names); None when it
    lacks the addresses or a known protocol."""
    src, dst = fields.get(names["src"]), fields.get(names["dst"])
    protocol = str(fields.get(names["protocol"], "")).lower()
    if not isinstance(src, str) or not isinstance(dst, str) or protocol not in PROTOCOLS:
        return None
    uid = fields.get(names["uid"])
    raw_time = fields.get(names["time"])
    if names is SYSMON_FIELDS and isinstance(raw_time, str):
        time = parse_time(raw_time)
    else:
        time = seconds(raw_time)
    return Flow(
        src=src[:64],
        dst=dst[:64],
        protocol=protocol,
        port=None if protocol == "icmp" else port_number(fields.get(names["port"])),
        time=time,
        uid=None if uid is None else str(uid)[:64],
        src_port=port_number(fields.get(names["src_port"])),
    )


def _sysmon_fields(doc: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The EventData of a Sysmon network connection (EventID 3) in JSON, flat or nested."""
    event_id = doc.get("EventID", doc.get("event_id"))
    if isinstance(event_id, dict):
        event_id = event_id.get("#text", event_id.get("value"))
    if str(event_id) != "3":
        return None
    data = doc.get("EventData")
    if isinstance(data, dict):
        return {**doc, **data}
    return doc


def read_flows(path: Path, *, limit: int = MAX_FLOWS) -> Iterator[Flow]:
    """The flows of a Zeek conn log (TSV with its header, or JSON lines, gzip'd or not) or of
    Sysmon network connection events (EventID 3, JSON lines); other records are skipped. At
    most `limit` flows are read."""
    source = file_input(path)
    report = FileReport(str(path), format="zeek")
    count = 0
    if zeek.sniff(source.head(64)):
        for batch in zeek.read(source, report):
            for _number, fields, log_type in batch:
                if log_type not in (None, "conn"):
                    continue
                flow = flow_from(fields)
                if flow is not None:
                    yield flow
                    count += 1
                    if count >= limit:
                        return
        return
    with source.open() as stream:
        for line in stream:
            if len(line) > MAX_LINE or not line.strip():
                continue
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if not isinstance(doc, dict):
                continue
            sysmon = _sysmon_fields(doc)
            if sysmon is not None:
                flow = flow_from(sysmon, SYSMON_FIELDS)
            elif zeek.json_log_type(doc) in (None, "conn"):
                flow = flow_from(zeek.normalise_json(doc))
            else:
                flow = None
            if flow is not None:
                yield flow
                count += 1
                if count >= limit:
                    return


def distinct(flows: Iterable[Flow], within: float = 1.0) -> list[Flow]:
    """Flows sorted by time, less the copies other sensors logged: the same addresses, ports
    and protocol seen again within `within` seconds."""
    ordered = sorted(flows, key=lambda f: (f.time is None, f.time or 0.0))
    last: dict[tuple[Any, ...], float] = {}
    kept: list[Flow] = []
    for flow in ordered:
        key = (flow.src, flow.src_port, flow.dst, flow.port, flow.protocol)
        seen = last.get(key)
        if flow.time is not None and seen is not None and flow.time - seen <= within:
            continue
        if flow.time is not None:
            last[key] = flow.time
        kept.append(flow)
    return kept


# --- conformance ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    """An observed flow the policy denies: the flow, the segments of both ends, and why."""

    flow: Flow
    src_segment: str | None
    dst_segment: str | None
    reason: str


def check(flows: Iterable[Flow], policy: FlowPolicy, segments: Segments) -> Iterator[Violation]:
    """The flows the policy denies, in the order given."""
    for flow in flows:
        src, dst = segments.resolve(flow.src), segments.resolve(flow.dst)
        reason = policy.denies(src, dst, flow.protocol, flow.port)
        if reason:
            yield Violation(flow, src, dst, reason)


def to_alert(violation: Violation, *, level: str = "medium") -> Alert:
    """A violation as a Vigil alert, tagged as lateral movement over remote services (ATT&CK
    T1021). The same flow always gives the same alert id, so a flow seen again (a replay, two
    sensors) is one alert."""
    flow = violation.flow
    what = flow.protocol if flow.port is None else f"{flow.protocol}/{flow.port}"
    pair = f"{violation.src_segment or '(none)'} → {violation.dst_segment or '(none)'}"
    stamp = (
        datetime.fromtimestamp(flow.time, UTC).isoformat().replace("+00:00", "Z")
        if flow.time is not None
        else None
    )
    event = {
        "source.ip": flow.src,
        "source.port": flow.src_port,
        "destination.ip": flow.dst,
        "destination.port": flow.port,
        "network.transport": flow.protocol,
        "uid": flow.uid,
        **({"host.name": flow.host} if flow.host else {}),
    }
    detection = Detection(
        kind="segmentation",
        rule_id=RULE_ID,
        rule_title=f"Flow outside the segment policy: {pair} {what}",
        level=level,
        status="stable",
        tags=ATTACK_TAGS,
        time=flow.time,
        timestamp=stamp,
        host=flow.host or flow.src,
        source_file="",
        record_id=flow.uid,
        matched_fields={"source.ip": flow.src, "destination.ip": flow.dst},
        event=event,
        detected_at=detected_now(),
        details={
            "src_segment": violation.src_segment,
            "dst_segment": violation.dst_segment,
            "reason": violation.reason,
        },
    )
    identity = f"{flow.src}|{flow.dst}|{what}|{flow.time}|{flow.uid}"
    view = {k: v for k, v in event.items() if k != "uid" and v is not None}
    return Alert(alert_id(detection, identity), detection, entities_in(view))


# --- learning and staging ---------------------------------------------------------------------


def learn(
    flows: Iterable[Flow],
    segments: Segments,
    *,
    min_flows: int = 3,
    min_sources: int = 2,
    intra: Literal["allow", "deny"] = "deny",
) -> FlowPolicy:
    """A least-privilege policy from a window of observed flows: one rule per (source segment,
    destination segment, protocol) holding the destination ports seen at least `min_flows`
    times or from at least `min_sources` distinct addresses, merged into ranges. Flows with an
    end in no segment are left out, and so are replies logged backwards (a destination port in
    the dynamic range answering from a port below 1024). `intra="deny"` (the default) denies
    traffic inside every segment except the flows learned there, so one workstation reaching
    another is a violation unless it was seen often enough."""
    counts: Counter[tuple[str, str, str, int | None]] = Counter()
    sources: dict[tuple[str, str, str, int | None], set[str]] = defaultdict(set)
    for flow in flows:
        if (
            flow.port is not None
            and flow.port >= EPHEMERAL
            and flow.src_port is not None
            and flow.src_port < 1024
        ):
            continue
        src, dst = segments.resolve(flow.src), segments.resolve(flow.dst)
        if src is None or dst is None:
            continue
        key = (src, dst, flow.protocol, None if flow.protocol == "icmp" else flow.port)
        counts[key] += 1
        if len(sources[key]) < min_sources:
            sources[key].add(flow.src)
    kept: dict[tuple[str, str, Protocol], list[int]] = defaultdict(list)
    for key, count in counts.items():
        if count >= min_flows or len(sources[key]) >= min_sources:
            src, dst, protocol, port = key
            proto: Protocol = "tcp" if protocol == "tcp" else "udp" if protocol == "udp" else "icmp"
            ports = kept[(src, dst, proto)]
            if port is not None:
                ports.append(port)
    rules = tuple(
        Rule(src, dst, protocol, () if protocol == "icmp" else collapse_ports(ports))
        for (src, dst, protocol), ports in sorted(kept.items())
        if protocol == "icmp" or ports
    )
    deny = frozenset(segments.names) if intra == "deny" else frozenset()
    return FlowPolicy(segments.segments, rules, deny)


@dataclass
class StageReport:
    """What a policy would block among some flows: counts per (source segment, destination
    segment, protocol, port) and a few example flows of each."""

    flows: int = 0
    blocked: int = 0
    counts: Counter[tuple[str, str, str, int | None]] = field(default_factory=Counter)
    examples: dict[tuple[str, str, str, int | None], list[Violation]] = field(default_factory=dict)

    def add(self, other: StageReport, *, examples: int = 3) -> None:
        """Take in another report (of later flows): counts added, examples up to `examples`
        a pair."""
        self.flows += other.flows
        self.blocked += other.blocked
        self.counts.update(other.counts)
        for key, found in other.examples.items():
            kept = self.examples.setdefault(key, [])
            kept.extend(found[: max(0, examples - len(kept))])

    def as_dict(self) -> dict[str, Any]:
        return {
            "flows": self.flows,
            "blocked": self.blocked,
            "would_block": [
                {
                    "src_segment": src,
                    "dst_segment": dst,
                    "protocol": protocol,
                    "port": port,
                    "count": count,
                    "reason": self.examples[key][0].reason,
                    "examples": [
                        {
                            "src": v.flow.src,
                            "dst": v.flow.dst,
                            "time": v.flow.time,
                            "uid": v.flow.uid,
                        }
                        for v in self.examples[key]
                    ],
                }
                for key, count in self.counts.most_common()
                for src, dst, protocol, port in [key]
            ],
        }


def stage(
    policy: FlowPolicy, segments: Segments, flows: Iterable[Flow], *, examples: int = 3
) -> StageReport:
    """Run a (proposed) policy over flows without enforcing it: what it would block."""
    examples = max(0, min(examples, MAX_EXAMPLES))
    report = StageReport()
    for flow in flows:
        report.flows += 1
        src, dst = segments.resolve(flow.src), segments.resolve(flow.dst)
        reason = policy.denies(src, dst, flow.protocol, flow.port)
        if not reason:
            continue
        report.blocked += 1
        key = (src or "(none)", dst or "(none)", flow.protocol, flow.port)
        report.counts[key] += 1
        kept = report.examples.setdefault(key, [])
        if len(kept) < examples:
            kept.append(Violation(flow, src, dst, reason))
    return report


def split_by_time(flows: Sequence[Flow]) -> tuple[list[Flow], list[Flow]]:
    """Flows before and from the midpoint of their time span (flows with no time go first)."""
    times = [f.time for f in flows if f.time is not None]
    if not times:
        return list(flows), []
    middle = (min(times) + max(times)) / 2
    first = [f for f in flows if f.time is None or f.time < middle]
    second = [f for f in flows if f.time is not None and f.time >= middle]
    return first, second


__all__ = [
    "ATTACK_TAGS",
    "FlowPolicy",
    "Rule",
    "Segment",
    "Segments",
    "StageReport",
    "Violation",
    "check",
    "collapse_ports",
    "compile_nftables",
    "distinct",
    "flow_from",
    "learn",
    "read_flows",
    "split_by_time",
    "stage",
    "to_alert",
]
