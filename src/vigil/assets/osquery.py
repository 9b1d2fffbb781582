"""osquery results into the inventory: the hosts that sent them, and what their scheduled
queries found there (hardware and OS, software, users, listening services, addresses).

Read: osqueryd's results log, one JSON object a line, as the filesystem logger writes it:
differential (`{"name", "hostIdentifier", "calendarTime", "unixTime", "columns": {...},
"action": "added"}`), snapshot (`{..., "snapshot": [{...}, ...], "action": "snapshot"}`) and
batched (`{..., "diffResults": {"added": [...], "removed": [...]}}`); a JSON array of such
objects too. Rows marked removed are not imported (they say what is gone; counted in a
warning).

A result is told by its query's name: the table's (`deb_packages`), or a pack query ending
in it (`pack_inventory_deb_packages`, `pack/inventory/deb_packages`). Other queries are
skipped, counted per name in a warning. The host is keyed by `hostIdentifier` (lower case).

- `system_info`, `os_version` → the host's attributes (hostname, cpu, memory, hardware; os).
- `deb_packages`, `rpm_packages`, `python_packages`, `programs` (and npm, Homebrew,
  Chocolatey packages) → `software` `<name>@<version>`, `runs` from the host.
- `users` → `user` nodes: a local account keyed `<host>\\<username>` (the same name on two
  hosts is two accounts), a Windows roaming (domain) one by its name. The table says nothing
  of groups: the one clear case of administration, uid 0, makes an `admin_of` edge.
- `listening_ports` → `service` `<host>:<proto>/<port>` and `exposes`; its bind addresses
  kept, `local_only` when all are loopback. Unix sockets (port 0) are not services.
- `interface_addresses` → `address` and `has_address` (with the interface); loopback and
  link-local addresses are left out (they name no host across a network).
- Device posture, which Zero Trust decides on (`disk_encrypted`, `edr`, `last_patched`):
  `bitlocker_info` (the system drive C: when reported, else every drive, must be protected),
  `disk_encryption` (encrypted when a volume is: a boot partition never is, the root one is);
  `windows_security_products` (an antivirus registered with Windows Security Center and on:
  the product kept as `edr_product`; none on: no EDR); `patches` (`installed_on`, as WMI
  writes it, M/D/YYYY) and `windows_update_history` (succeeded installations) → when the host
  was last patched (epoch s; its age is counted when decided).
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from vigil.assets.findings import Findings, text
from vigil.assets.model import Inventory, Node
from vigil.errors import InputError
from vigil.events import parse_time

FORMAT = "osquery"

# system_info column → (host attribute, as a number)
SYSTEM_INFO = {
    "hostname": ("hostname", False),
    "computer_name": ("computer_name", False),
    "uuid": ("uuid", False),
    "cpu_brand": ("cpu", False),
    "cpu_type": ("cpu_type", False),
    "cpu_physical_cores": ("cpu_cores", True),
    "cpu_logical_cores": ("cpu_threads", True),
    "physical_memory": ("memory", True),
    "hardware_vendor": ("hardware_vendor", False),
    "hardware_model": ("hardware_model", False),
    "hardware_serial": ("hardware_serial", False),
}
# os_version column → host attribute
OS_VERSION = {
    "platform": "os_platform",
    "version": "os_version",
    "build": "os_build",
    "codename": "os_codename",
    "arch": "arch",
}
# package table → (the packages' type, the column naming who made it)
PACKAGES = {
    "deb_packages": ("deb", "maintainer"),
    "rpm_packages": ("rpm", "vendor"),
    "python_packages": ("python", "author"),
    "programs": ("windows", "publisher"),
    "npm_packages": ("npm", "author"),
    "homebrew_packages": ("homebrew", None),
    "chocolatey_packages": ("chocolatey", "author"),
}
PROTOCOLS = {"6": "tcp", "17": "udp", "132": "sctp"}
# posture table → the columns that name one of its rows (a drive, a volume, a product...)
POSTURE_KEYS: dict[str, tuple[str, ...]] = {
    "bitlocker_info": ("device_id", "drive_letter"),
    "disk_encryption": ("name",),
    "windows_security_products": ("type", "name"),
    "patches": ("hotfix_id", "installed_on"),
    "windows_update_history": ("update_id", "update_revision", "date", "operation"),
}
# Windows Update entries that are no patch: antivirus definitions, arriving daily
NOT_PATCHES = re.compile(r"intelligence update|definition update|KB2267602", re.IGNORECASE)
# users.type of a Windows domain account (its name means the same on every host)
DOMAIN_USERS = frozenset({"roaming"})
_LOOPBACK_INTERFACES = frozenset({"lo", "lo0"})


def sniff(name: str, head: bytes) -> bool:
    if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] not in (b"{", b"["):
        return False
    named = b'"hostIdentifier"' in head or b'"calendarTime"' in head
    return named and any(part in head for part in (b'"columns"', b'"snapshot"', b'"diffResults"'))


def read(data: bytes, name: str) -> Inventory:
    """The hosts and what their results say of them."""
    inventory = Inventory(name)
    inventory.report.format = FORMAT
    results = _Results(inventory)
    for where, record in _records(data, name, inventory):
        inventory.report.records_read += 1
        results.record(record, where)
    if inventory.report.records_read and not results.read:
        raise InputError(
            f"{name}: not osquery results (no record has a query name and a hostIdentifier)"
        )
    return results.finish()


def _records(data: bytes, name: str, inventory: Inventory) -> Iterator[tuple[int, Any]]:
    """(line or item number, decoded object); a line that is not JSON is set aside."""
    body = data.removeprefix(b"\xef\xbb\xbf")
    if body.lstrip()[:1] == b"[":
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InputError(f"{name}: not osquery results: {exc}") from exc
        yield from enumerate(document if isinstance(document, list) else [document], 1)
        return
    for number, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield number, orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            inventory.report.records_read += 1
            inventory.report.reject(number, f"not JSON: {exc}")


class _Results:
    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self.software = Findings(inventory).software
        self.read = 0  # records that were osquery results
        self.skipped: Counter[str] = Counter()  # unknown query → rows
        self.removed = 0
        self.known: dict[str, str | None] = {}  # query name → its table
        self.tables: dict[str, Callable[[Node, dict[str, Any], int, str], None]] = {
            "system_info": self.system_info,
            "os_version": self.os_version,
            **dict.fromkeys(PACKAGES, self.package),
            "users": self.user,
            "listening_ports": self.listening_port,
            "interface_addresses": self.interface_address,
        }
        # posture results: (unixTime, order read, host, table, [(action, rows)])
        self.posture: list[tuple[float, int, Node, str, list[tuple[str, list[Any]]]]] = []

    def record(self, record: Any, where: int) -> None:
        report = self.inventory.report
        if not isinstance(record, dict):
            report.reject(where, "not a JSON object")
            return
        query = text(record.get("name"))
        host_id = text(record.get("hostIdentifier")) or text(record.get("hostname"))
        if not query or not host_id:
            report.reject(where, "a result without a query name or a hostIdentifier")
            return
        if query not in self.known:
            self.known[query] = _table(query, {**self.tables, **POSTURE_KEYS})
        table = self.known[query]
        if table in POSTURE_KEYS:  # folded in time order once all is read (`finish`)
            changes = _changes(record)
            if changes is None:
                report.reject(where, "a result without columns, snapshot or diffResults")
                return
            self.read += 1
            host = self.inventory.node("host", host_id.lower(), name=host_id)
            when = _float(record.get("unixTime")) or 0.0
            self.posture.append((when, len(self.posture), host, table, changes))
            return
        rows = self.rows(record)
        if rows is None:
            report.reject(where, "a result without columns, snapshot or diffResults")
            return
        self.read += 1
        host = self.inventory.node("host", host_id.lower(), name=host_id)
        if table is None:
            self.skipped[query] += len(rows)
            return
        for row in rows:
            if isinstance(row, dict):
                self.tables[table](host, row, where, table)
            else:
                report.reject(where, f"a {table} row that is not an object")

    def rows(self, record: dict[str, Any]) -> list[Any] | None:
        """The rows a result adds (removed ones only counted); None when it has none."""
        if isinstance(record.get("snapshot"), list):
            return list(record["snapshot"])
        diff = record.get("diffResults")
        if isinstance(diff, dict):
            removed = diff.get("removed")
            self.removed += len(removed) if isinstance(removed, list) else 0
            added = diff.get("added")
            return added if isinstance(added, list) else []
        if isinstance(record.get("columns"), dict):
            if record.get("action") == "removed":
                self.removed += 1
                return []
            return [record["columns"]]
        return None

    # --- tables ---------------------------------------------------------------------------

    def system_info(self, host: Node, row: dict[str, Any], where: int, table: str) -> None:
        for column, (attr, number) in SYSTEM_INFO.items():
            value = _number(row.get(column)) if number else text(row.get(column))
            if value is not None:
                host.attrs[attr] = value

    def os_version(self, host: Node, row: dict[str, Any], where: int, table: str) -> None:
        os = " ".join(filter(None, (text(row.get("name")), text(row.get("version")))))
        if os:
            host.attrs["os"] = os
        for column, attr in OS_VERSION.items():
            value = text(row.get(column))
            if value is not None:
                host.attrs[attr] = value

    def package(self, host: Node, row: dict[str, Any], where: int, table: str) -> None:
        product = text(row.get("name"))
        if not product:
            self.inventory.report.reject(where, f"a {table} row without a name")
            return
        version = text(row.get("version"))
        if table == "rpm_packages" and version:
            epoch, release = text(row.get("epoch")), text(row.get("release"))
            version = f"{epoch}:{version}" if epoch and epoch != "0" else version
            version = f"{version}-{release}" if release else version
        package_type, maker = PACKAGES[table]
        self.software(
            host,
            product,
            version,
            paths=[text(row.get("path")) or text(row.get("install_location"))],
            type=package_type,
            architecture=text(row.get("arch")),
            vendor=text(row.get(maker)) if maker else None,
        )

    def user(self, host: Node, row: dict[str, Any], where: int, table: str) -> None:
        username = text(row.get("username"))
        if not username:
            self.inventory.report.reject(where, "a users row without a username")
            return
        account = text(row.get("type"))
        domain = account in DOMAIN_USERS
        uid = text(row.get("uid"))
        user = self.inventory.node(
            "user",
            username.lower() if domain else f"{host.key}\\{username.lower()}",
            name=username,
            uid=uid,
            gid=text(row.get("gid")),
            home=text(row.get("directory")),
            shell=text(row.get("shell")),
            description=text(row.get("description")),
            account_type=account,
            host=None if domain else host.key,
        )
        if uid == "0":
            self.inventory.edge("admin_of", user, host, why="uid 0")

    def listening_port(self, host: Node, row: dict[str, Any], where: int, table: str) -> None:
        port = _number(row.get("port"))
        if port is None or port <= 0:
            return  # a Unix socket, not a network service
        proto = PROTOCOLS.get(text(row.get("protocol")) or "")
        if proto is None or port > 65535:
            self.inventory.report.reject(
                where, f"listening port {row.get('port')!r} protocol {row.get('protocol')!r}"
            )
            return
        service = self.inventory.node(
            "service", f"{host.key}:{proto}/{port}", name=f"{proto}/{port}", port=port, proto=proto
        )
        bound = _ip(row.get("address"))
        if bound is not None:
            addresses = sorted({*service.attrs.get("addresses", ()), bound.compressed})
            service.attrs["addresses"] = addresses
            service.attrs["local_only"] = all(
                ipaddress.ip_address(a).is_loopback for a in addresses
            )
        self.inventory.edge("exposes", host, service)

    def interface_address(self, host: Node, row: dict[str, Any], where: int, table: str) -> None:
        address = _ip(row.get("address"))
        interface = text(row.get("interface"))
        if address is None:
            self.inventory.report.reject(where, f"not an IP address: {row.get('address')!r}")
            return
        if address.is_loopback or address.is_link_local or interface in _LOOPBACK_INTERFACES:
            return
        found = self.inventory.node("address", address.compressed, type=f"ipv{address.version}")
        self.inventory.edge("has_address", host, found, interface=interface)

    def fold_posture(self) -> None:
        """Each host's posture tables as they stand after the last result (in time order: a
        snapshot replaces the table, added rows are put in, removed ones taken out), then
        what they say of the host."""
        tables: dict[tuple[str, str], dict[Any, dict[str, Any]]] = {}
        hosts: dict[str, Node] = {}
        times: dict[str, float] = {}
        for when, _, host, table, changes in sorted(self.posture, key=lambda p: p[:2]):
            hosts[host.id] = host
            times[host.id] = max(times.get(host.id, 0.0), when)
            rows = tables.setdefault((host.id, table), {})
            for action, found in changes:
                if action == "snapshot":
                    rows.clear()
                for row in found:
                    if not isinstance(row, dict):
                        continue
                    key = tuple(text(row.get(c)) for c in POSTURE_KEYS[table])
                    if action == "removed":
                        rows.pop(key, None)
                    else:
                        rows[key] = row
        for (host_id, table), rows in tables.items():
            host, latest = hosts[host_id], times[host_id] or time.time()
            if table in ("bitlocker_info", "disk_encryption"):
                encrypted = _encrypted(table, list(rows.values()))
                if encrypted is not None:
                    host.attrs["disk_encrypted"] = encrypted
            elif table == "windows_security_products":
                on = sorted(
                    {
                        text(r.get("name")) or ""
                        for r in rows.values()
                        if (text(r.get("type")) or "").lower() == "antivirus"
                        and (text(r.get("state")) or "").lower() == "on"
                    }
                    - {""}
                )
                host.attrs["edr"] = bool(on)
                if on:
                    host.attrs["edr_product"] = ", ".join(on)[:256]
            else:  # patches, windows_update_history
                patched = [w for r in rows.values() if (w := _patched(table, r)) is not None]
                patched = [w for w in patched if w <= latest + 86400]  # not in the future
                if patched and max(patched) > float(host.attrs.get("last_patched") or 0):
                    host.attrs["last_patched"] = max(patched)

    def finish(self) -> Inventory:
        self.fold_posture()
        report = self.inventory.report
        for query, rows in sorted(self.skipped.items()):
            report.warn(query, f"query {query!r} names no table Vigil reads: {rows} rows skipped")
        if self.removed:
            report.warn(None, f"rows marked removed: {self.removed} (not imported)")
        return self.inventory


def _table(query: str, tables: dict[str, Any]) -> str | None:
    """The table a query's name names: itself, or the longest table it ends with after a
    pack's `_` or `/`."""
    if query in tables:
        return query
    ends = [t for t in tables if query.endswith((f"_{t}", f"/{t}"))]
    return max(ends, key=len) if ends else None


def _changes(record: dict[str, Any]) -> list[tuple[str, list[Any]]] | None:
    """A result's rows with what happened to them: snapshot, added or removed."""
    if isinstance(record.get("snapshot"), list):
        return [("snapshot", list(record["snapshot"]))]
    diff = record.get("diffResults")
    if isinstance(diff, dict):
        return [
            (action, list(found))
            for action in ("removed", "added")
            if isinstance(found := diff.get(action), list)
        ]
    if isinstance(record.get("columns"), dict):
        action = "removed" if record.get("action") == "removed" else "added"
        return [(action, [record["columns"]])]
    return None


def _encrypted(table: str, rows: list[dict[str, Any]]) -> bool | None:
    """BitLocker: the system drive C: when reported, else every drive, protected
    (protection_status 1); disk_encryption: a volume encrypted (the root one is; a boot
    partition never is). None when the rows say nothing."""
    volumes: list[tuple[str | None, bool]] = []
    for row in rows:
        if table == "bitlocker_info":  # protection_status: 0 off, 1 on, 2 unknown
            found = {"0": False, "1": True}.get(text(row.get("protection_status")) or "")
            drive = (text(row.get("drive_letter")) or "").upper() or None
        else:
            found = {"0": False, "1": True}.get(text(row.get("encrypted")) or "")
            if found is None:
                status = text(row.get("encryption_status")) or ""
                found = {"encrypted": True, "not encrypted": False}.get(status)
            drive = None
        if found is not None:
            volumes.append((drive, found))
    if not volumes:
        return None
    system = [found for drive, found in volumes if drive == "C:"]
    if system:
        return all(system)
    if table == "bitlocker_info":
        return all(found for _, found in volumes)
    return any(found for _, found in volumes)


def _patched(table: str, row: dict[str, Any]) -> float | None:
    """When a row says the host was patched: a hotfix's date, or a Windows Update
    installation that succeeded (not an uninstallation, not antivirus definitions)."""
    if table == "patches":
        return _date(text(row.get("installed_on")) or text(row.get("install_date")))
    operation = (text(row.get("operation")) or "installation").lower()
    result = (text(row.get("result_code")) or "succeeded").lower()
    if operation != "installation" or result != "succeeded":
        return None
    if NOT_PATCHES.search(text(row.get("title")) or ""):
        return None
    return _float(row.get("date"))


def _float(value: Any) -> float | None:
    try:
        found = float(str(text(value)))
    except ValueError:
        return None
    return found if 0 < found < 1e11 else None


def _date(value: str | None) -> float | None:
    """A patch's date: M/D/YYYY as WMI's InstalledOn has it, or ISO 8601."""
    if not value:
        return None
    try:
        return datetime.strptime(value, "%m/%d/%Y").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return parse_time(value)


def _number(value: Any) -> int | None:
    try:
        return int(str(text(value)))
    except ValueError:
        return None


def _ip(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    raw = (text(value) or "").split("%", 1)[0]  # fe80::1%en0: the scope is not the address
    try:
        return ipaddress.ip_address(raw)
    except ValueError:
        return None
