"""Which partition of the `events` stream an event goes to: by its host, else its source,
so that everything one host does is detected by one worker (the Sigma correlation windows
and the order of its events live there).

The host is found in the raw record without parsing it: the first value of a field that
names the host in the shapes Vigil reads (Windows `Computer`/`Hostname`, ECS `host.name`
or `host: {name}`, Defender `DeviceName`, syslog `hostname`), looked for in the first
`SCANNED` bytes with a bounded pattern. A record that names none goes by its source (the
sending agent, file or listener), which is usually one host too. The partition is a CRC-32
of that key (stable across processes and releases, unlike Python's `hash`)."""

from __future__ import annotations

import re
import zlib

SCANNED = 16 << 10
_HOST = re.compile(
    rb'"(?:Computer|ComputerName|Hostname|hostname|host_name|host\.name|DeviceName|'
    rb'computer_name)"\s{0,4}:\s{0,4}"([^"\\]{1,255})"'
    # ECS: host.name at the first level of the host object (its os, ip... objects skipped)
    rb'|"host"\s{0,4}:\s{0,4}\{(?:[^{}"]|"[^"\\]{0,255}"|\{[^{}]{0,512}\}){0,64}?'
    rb'"name"\s{0,4}:\s{0,4}"([^"\\]{1,255})"'
)


def partition_key(payload: bytes | bytearray, source: str) -> bytes:
    """The host a record names (lower case), else `source`."""
    found = _HOST.search(payload, 0, SCANNED)
    if found is not None:
        return (found.group(1) or found.group(2)).lower()
    return source.encode("utf-8", "replace")


def partition_of(payload: bytes | bytearray, source: str, partitions: int) -> int:
    if partitions <= 1:
        return 0
    return zlib.crc32(partition_key(payload, source)) % partitions


__all__ = ["SCANNED", "partition_key", "partition_of"]
