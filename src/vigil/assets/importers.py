"""Asset importers: one module per source, each in the same shape (fetch → transform →
load), listed here.

A module `vigil.assets.<name>` has:

    FORMAT = "nmap"                                  # what `vigil assets import --format` says
    def sniff(name: str, head: bytes) -> bool: ...   # is this file of the format? (its start)
    def read(data: bytes, name: str) -> Inventory:   # transform: the file → nodes and edges

`read` never raises on a bad record: it counts it and sets it aside with its reason in the
inventory's report, and goes on. A file that cannot be read at all (not the format, hostile
XML) raises `vigil.errors.InputError` naming the file and why. Loading is the store's
(`vigil.store.assets.AssetStore.merge`), the same for every source.

    inventory = import_bytes(Path("scan.xml").read_bytes(), "scan.xml")   # format sniffed
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

from vigil.assets.model import Inventory
from vigil.errors import InputError

# The registry, in the order formats are sniffed (the more specific first).
MODULES = (
    "nmap",
    "openvas",
    "masscan",
    "trivy",
    "grype",
    "wazuh",
    "osquery",
    "aws_iam",
    "csv_inventory",
)
SNIFFED = 64 << 10  # bytes of a file its format is told from


def module(name: str) -> ModuleType:
    return importlib.import_module(f"vigil.assets.{name}")


def formats() -> dict[str, Callable[[bytes, str], Inventory]]:
    """Every format's name → its `read`."""
    out = {}
    for name in MODULES:
        found = module(name)
        out[found.FORMAT] = found.read
    return out


class NotAnAssetSource(InputError):
    """No importer reads this file (a README beside the scans, a format Vigil does not
    read)."""


def sniff(data: bytes, name: str) -> str:
    """The format of a file, from its name and start; NotAnAssetSource when none reads it,
    InputError for XML that plays entity or DTD tricks (said as such, whatever it claims to
    be)."""
    head = data[:SNIFFED]
    for module_name in MODULES:
        found = module(module_name)
        if found.sniff(name, head):
            return str(found.FORMAT)
    if head.lstrip()[:1] == b"<":
        from vigil.assets.scanners import parse_xml

        parse_xml(data, name, "XML")  # a hostile document is refused for what it is
    raise NotAnAssetSource(
        f"{name}: not an asset source Vigil reads (nmap XML, masscan, Trivy, Grype, OpenVAS, "
        "Wazuh, osquery, AWS IAM authorization details, CSV): name it with --format"
    )


def import_bytes(data: bytes, name: str, format: str | None = None) -> Inventory:
    """A file's nodes and edges (format sniffed unless given)."""
    readers = formats()
    chosen = format or sniff(data, name)
    if chosen not in readers:
        raise InputError(f"no asset format {chosen!r}; formats: {', '.join(sorted(readers))}")
    inventory = readers[chosen](data, name)
    inventory.source = f"{chosen}:{name}"  # every importer's nodes say where they came from
    inventory.report.format = chosen
    return inventory
