"""A CMDB or spreadsheet export (CSV with a header row) into the inventory: one asset a row,
its columns told by their names.

A header is compared in lower case, spaces and dashes read as `_`; a field takes the first
non-empty value of its columns in the order `COLUMNS` lists them. The delimiter is the one
the header uses most (`,` `;` tab `|`); a file that is not UTF-8 is read as Latin-1 (warned).

- The asset's kind (`KINDS`; default host, an unknown value read as a host and warned once,
  the given value kept as `asset_type`). A host is keyed by its host name, else its name (lower
  case), else its first IP address; another kind by its name, else its first address.
- Each IP of the row (several may be split by `;` `,` or spaces) → an `address` node and
  `has_address`; a value that is not an address is warned about and left out.
- criticality → one of `CRITICALITY` (low to high; 1-5 counts up, 5 the most critical;
  ServiceNow's "1 - most critical"... read as it means), `crown_jewel` true for the top one
  (crown-jewel, critical); exposure → `internet_exposed`; tags split on `;` or `,`.
- Device posture, for Zero Trust: disk encryption and EDR (yes/no, on/off...; a value that is
  neither is warned about and left out; an EDR agent column naming the agent means it runs,
  the name kept as `edr_product`), when the host was last patched (an ISO 8601 date in the
  past: `last_patched`, epoch s, so its age is counted when decided) or its patch age in
  days.
- A row naming neither a name nor an IP address is set aside with its reason; a value Vigil
  cannot read (a criticality, an exposure) is warned about once per value and the row kept.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import re
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from vigil.assets.findings import text
from vigil.assets.model import NODE_KINDS, Inventory
from vigil.errors import InputError
from vigil.events import parse_time

FORMAT = "csv"

# field → its columns, the first non-empty one winning
COLUMNS = {
    "hostname": ("hostname", "host", "host_name", "fqdn", "computer_name", "device_name"),
    "name": ("name", "asset_name", "asset", "display_name"),
    "ip": ("ip", "ip_address", "address", "ipaddress", "ipv4", "ip_addresses", "ips"),
    "kind": ("kind", "type", "asset_type", "category"),
    "owner": ("owner", "owned_by", "asset_owner", "business_owner", "managed_by"),
    "criticality": ("criticality", "business_criticality", "asset_criticality"),
    "segment": ("segment", "zone", "network", "network_segment", "vlan"),
    "os": ("os", "operating_system"),
    "tags": ("tags", "labels"),
    "exposure": ("exposure", "internet_facing", "internet_exposed", "exposed", "public"),
    "environment": ("environment", "env"),
    # device posture, as a CMDB or an MDM export records it (Zero Trust decides on it)
    "disk_encrypted": (
        "disk_encrypted",
        "encrypted",
        "disk_encryption",
        "encryption",
        "bitlocker",
        "filevault",
    ),
    "edr": ("edr", "edr_running", "edr_installed", "endpoint_protection"),  # yes or no
    "edr_agent": ("edr_agent", "edr_product", "edr_name"),  # the agent running, or none
    "last_patched": ("last_patched", "last_patch", "last_patch_date", "patched_on", "patched"),
    "patch_age_days": ("patch_age_days", "patch_age", "days_since_patch"),
    "description": ("description", "notes", "comment", "comments"),
}
NAMING = ("hostname", "name", "ip")  # a file without one of these is not an inventory
# the asset's kind, as CMDBs spell it → the node kind (a service needs a port: application)
KINDS = {
    **{kind: kind for kind in NODE_KINDS if kind != "service"},
    **dict.fromkeys(
        (
            "server",
            "workstation",
            "laptop",
            "desktop",
            "endpoint",
            "vm",
            "virtual_machine",
            "network_device",
            "router",
            "switch",
            "firewall",
            "printer",
            "appliance",
        ),
        "host",
    ),
    **dict.fromkeys(("app", "web_application", "service", "business_service"), "application"),
    **dict.fromkeys(("database", "db", "datastore", "storage", "bucket"), "data_store"),
    **dict.fromkeys(("image", "container_image"), "container"),
    **dict.fromkeys(("cloud", "cloud_instance"), "cloud_resource"),
}
CRITICALITY = ("minimal", "low", "medium", "high", "critical")  # ordered, least first
CRITICALITIES = {
    **{level: level for level in CRITICALITY},
    "crown_jewel": "critical",
    "crown_jewels": "critical",
    "very_high": "critical",
    "moderate": "medium",
    "med": "medium",
    "minor": "minimal",
    "very_low": "minimal",
    "none": "minimal",
    **{str(rank): level for rank, level in enumerate(CRITICALITY, 1)},
    # ServiceNow's business criticality counts down
    "1_most_critical": "critical",
    "2_somewhat_critical": "high",
    "3_less_critical": "medium",
    "4_not_critical": "low",
}
EXPOSURE = {
    **dict.fromkeys(("true", "yes", "y", "1", "internet", "public", "external", "exposed"), True),
    **dict.fromkeys(("false", "no", "n", "0", "internal", "private", "none"), False),
}
SWITCH = {  # yes or no, as an inventory says it of encryption or an EDR agent
    **dict.fromkeys(
        [
            "true",
            "yes",
            "y",
            "1",
            "on",
            "enabled",
            "encrypted",
            "running",
            "installed",
            "protected",
        ],
        True,
    ),
    **dict.fromkeys(
        [
            "false",
            "no",
            "n",
            "0",
            "off",
            "disabled",
            "not_encrypted",
            "unencrypted",
            "none",
            "stopped",
            "missing",
            "not_installed",
            "unprotected",
            "not_running",
            "inactive",
        ],
        False,
    ),
}
# what a warning says of a value Vigil cannot read, by field
ODD = {
    "kind": "kind {value!r} is not one Vigil knows: {rows} read as hosts",
    "ip": "{value!r} is not an IP address: left out of {rows}",
    "criticality": "criticality {value!r} is not one Vigil reads: left out of {rows}",
    "exposure": "exposure {value!r} is not yes or no: left out of {rows}",
    "disk_encrypted": "disk encryption {value!r} is not yes or no: left out of {rows}",
    "last_patched": "last patched {value!r} is not a date (ISO 8601) in the past: left out "
    "of {rows}",
    "edr": "EDR {value!r} is not yes or no: left out of {rows}",
    "patch_age_days": "patch age {value!r} is not a number of days: left out of {rows}",
}
DELIMITERS = ",;\t|"
_WORDS = re.compile(r"[^a-z0-9]+")
_LIST = re.compile(r"[;,]")
_IPS = re.compile(r"[;,\s]+")


def sniff(name: str, head: bytes) -> bool:
    if not name.lower().endswith(".csv"):
        return False
    header = head.removeprefix(b"\xef\xbb\xbf").split(b"\n", 1)[0]
    return _naming(_header(header.decode("utf-8", "replace")))


def read(data: bytes, name: str) -> Inventory:
    """One node a row (with its addresses)."""
    inventory = Inventory(name)
    inventory.report.format = FORMAT
    try:
        body = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        body = data.decode("latin-1")
        inventory.report.warn(None, "not UTF-8: read as Latin-1")
    first = body[: body.find("\n")] if "\n" in body else body
    if not first.strip():
        raise InputError(f"{name}: no header row")
    delimiter = max(DELIMITERS, key=first.count)
    rows = _rows(body.replace("\x00", ""), delimiter, inventory)
    header = [_word(cell) for cell in next(rows, (0, []))[1]]
    if not _naming(header):
        raise InputError(
            f"{name}: no name, hostname or ip column in the header "
            f"(columns: {', '.join(h for h in header if h) or 'none'})"
        )
    fields = {
        field: [header.index(c) for c in columns if c in header]
        for field, columns in COLUMNS.items()
    }
    assets = _Assets(inventory)
    for line, row in rows:
        if not any(cell.strip() for cell in row):
            continue
        inventory.report.records_read += 1
        values = {
            field: next((v for i in at if i < len(row) and (v := text(row[i]))), None)
            for field, at in fields.items()
        }
        assets.row(values, line)
    return assets.finish()


def _rows(body: str, delimiter: str, inventory: Inventory) -> Iterator[tuple[int, list[str]]]:
    """(line, cells); a row the csv module cannot read (a field over its size limit) is set
    aside and reading goes on."""
    reader = csv.reader(io.StringIO(body, newline=""), delimiter=delimiter)
    while True:
        before = reader.line_num
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            inventory.report.reject(reader.line_num, f"not CSV: {exc}")
            if reader.line_num == before:
                return
            continue
        yield reader.line_num, row


class _Assets:
    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self.odd: Counter[tuple[str, str]] = Counter()  # (field, value) Vigil cannot read
        self.first: dict[tuple[str, str], int] = {}

    def row(self, values: dict[str, str | None], line: int) -> None:
        parts = [p for p in _IPS.split(values["ip"] or "") if p]
        addresses = [a for a in map(_ip, parts) if a]
        hostname, name = values["hostname"], values["name"]
        if not hostname and not name and not addresses:
            given = f" ({values['ip']!r} is not an IP address)" if values["ip"] else ""
            self.inventory.report.reject(line, f"a row with neither a name nor an IP{given}")
            return
        for part in parts:
            if not _ip(part):
                self.warn("ip", part, line)
        given_kind = values["kind"]
        kind = KINDS.get(_word(given_kind)) if given_kind else "host"
        if kind is None:
            self.warn("kind", given_kind or "", line)
            kind = "host"
        named = hostname or name
        # hosts and users by their lower-case name, as telemetry keys them
        key = (named.lower() if kind in ("host", "user") else named) if named else addresses[0]
        level = self.read_value("criticality", values["criticality"], CRITICALITIES, line)
        node = self.inventory.node(
            kind,
            key,
            name=name or hostname or key,
            hostname=hostname,
            ip=addresses[0] if addresses else None,
            asset_type=given_kind,
            owner=values["owner"],
            criticality=level,
            crown_jewel=(level == CRITICALITY[-1]) if level else None,
            segment=values["segment"],
            os=values["os"],
            tags=[t for t in dict.fromkeys(map(str.strip, _LIST.split(values["tags"] or ""))) if t]
            or None,
            internet_exposed=self.read_value("exposure", values["exposure"], EXPOSURE, line),
            environment=values["environment"],
            description=values["description"],
            **self.posture(values, line),
        )
        for address in addresses:
            found = self.inventory.node(
                "address", address, type=f"ipv{ipaddress.ip_address(address).version}"
            )
            self.inventory.edge("has_address", node, found)

    def posture(self, values: dict[str, str | None], line: int) -> dict[str, Any]:
        """Disk encryption, EDR (yes/no, or the agent's name: running), when last patched
        (a date) or the patch age in days; what a row does not say is left out."""
        out: dict[str, Any] = {}
        encrypted = self.read_value("disk_encrypted", values["disk_encrypted"], SWITCH, line)
        if encrypted is not None:
            out["disk_encrypted"] = encrypted
        running = self.read_value("edr", values["edr"], SWITCH, line)
        agent = values["edr_agent"]
        if agent is not None:  # an agent's name: it runs; "none", "no"...: none does
            running = SWITCH.get(_word(agent), True) if running is None else running
            if _word(agent) not in SWITCH:
                out["edr_product"] = agent[:128]
        if running is not None:
            out["edr"] = running
        patched = values["last_patched"]
        if patched is not None:
            when = parse_time(patched)
            if when is None or when > time.time() + 86400:
                self.warn("last_patched", patched, line)
            else:
                out["last_patched"] = when
        age = values["patch_age_days"]
        if age is not None:
            if age.isdigit() and len(age) <= 5:
                out["patch_age_days"] = int(age)
            else:
                self.warn("patch_age_days", age, line)
        return out

    def read_value(self, field: str, value: str | None, table: dict[str, Any], line: int) -> Any:
        if value is None:
            return None
        found = table.get(_word(value))
        if found is None:
            self.warn(field, value, line)
        return found

    def warn(self, field: str, value: str, line: int) -> None:
        self.odd[field, value] += 1
        self.first.setdefault((field, value), line)

    def finish(self) -> Inventory:
        for (field, value), count in self.odd.items():
            rows = f"{count} row{'s' if count != 1 else ''}"
            self.inventory.report.warn(
                self.first[field, value], ODD[field].format(value=value, rows=rows)
            )
        return self.inventory


def _word(value: str | None) -> str:
    return _WORDS.sub("_", (value or "").strip().lower()).strip("_")


def _header(line: str) -> list[str]:
    delimiter = max(DELIMITERS, key=line.count)
    cells = next(csv.reader([line.rstrip("\r")], delimiter=delimiter), [])
    return [_word(cell) for cell in cells]


def _naming(header: list[str]) -> bool:
    return any(c in header for field in NAMING for c in COLUMNS[field])


def _ip(value: str) -> str | None:
    try:
        return ipaddress.ip_address(value).compressed
    except ValueError:
        return None
