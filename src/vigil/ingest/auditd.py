"""Linux audit logs (auditd's `type=... msg=audit(time:serial): key=value ...` lines, and the
single-line AUOMS form), the records of one audit event joined into one Vigil event.

An audit event is written as several records (SYSCALL, EXECVE, CWD, PATH, PROCTITLE, ...)
sharing `audit(time:serial)`. They become one event: `type` lists the record types in order,
and each key keeps its value, or the list of its values when records repeat it (`name` of
each PATH, `a0` of SYSCALL and of EXECVE), which is how Sigma's list matching reads them.
Hex-encoded values that auditd writes for arguments with spaces or special characters
(EXECVE `aN`, `proctitle`) are decoded; `proctitle`'s NUL separators become spaces.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from vigil.events import Event, parse_time
from vigil.ingest.base import MAX_DEPTH, FileReport, Input, batched, numbered_lines, too_deep

NAME = "auditd"
BATCH = 2048
# Records of one event are written together; an event not continued within this many lines
# is complete (auditd interleaves events only briefly).
OPEN_WINDOW = 256
_HEX = frozenset("0123456789ABCDEFabcdef")

# Syscall names by audit arch and number, for raw logs (auditd's ENRICHED format writes the
# name as SYSCALL=, which Sigma rules match; the RAW format has only the number). The calls
# detection rules and audit rule sets watch, from the kernel's syscall tables.
SYSCALL_NAMES: dict[str, dict[str, str]] = {
    "c000003e": {  # x86_64
        "0": "read", "1": "write", "2": "open", "41": "socket", "42": "connect", "43": "accept",
        "49": "bind", "56": "clone", "57": "fork", "58": "vfork", "59": "execve", "62": "kill",
        "76": "truncate", "77": "ftruncate", "80": "chdir", "82": "rename", "83": "mkdir",
        "84": "rmdir", "85": "creat", "86": "link", "87": "unlink", "88": "symlink",
        "90": "chmod", "91": "fchmod", "92": "chown", "99": "sysinfo", "101": "ptrace",
        "103": "syslog", "105": "setuid", "106": "setgid", "113": "setreuid",
        "117": "setresuid", "126": "capset", "133": "mknod", "135": "personality",
        "157": "prctl", "165": "mount", "166": "umount2", "175": "init_module",
        "176": "delete_module", "250": "keyctl", "257": "openat", "259": "mknodat",
        "263": "unlinkat", "313": "finit_module", "319": "memfd_create", "321": "bpf",
        "322": "execveat",
    },
    "40000003": {  # i386
        "11": "execve", "14": "mknod", "103": "syslog", "116": "sysinfo",
        "136": "personality", "356": "memfd_create",
    },
    "c00000b7": {  # aarch64
        "33": "mknodat", "92": "personality", "116": "syslog", "179": "sysinfo",
        "221": "execve", "279": "memfd_create",
    },
}  # fmt: skip


def sniff(head: bytes) -> bool:
    first = head.lstrip()[:200]
    if first.startswith(b"node="):
        first = first.split(b" ", 1)[-1]
    return first.startswith(b"type=") and b"audit(" in first


def parse_pairs(text: str, unquoted: set[str] | None = None) -> dict[str, Any]:
    """`key=value key="quoted value" key='nested k=v' key=[...]` in one linear pass; the keys
    of bare (unquoted) values are added to `unquoted` when given (auditd writes a value bare
    when it had to hex-encode it)."""
    out: dict[str, Any] = {}
    position, end = 0, len(text)
    while position < end:
        while position < end and text[position] == " ":
            position += 1
        equals = text.find("=", position)
        if equals < 0:
            break
        key = text[position:equals].strip()
        position = equals + 1
        if position < end and text[position] in "\"'":
            quote = text[position]
            close = text.find(quote, position + 1)
            if close < 0:
                close = end
            value: Any = text[position + 1 : close]
            position = close + 1
            if quote == "'" and key == "msg":
                out.update(parse_pairs(value))  # USER_* records nest their fields in msg='...'
                continue
        elif position < end and text[position] == "[":
            close = text.find("]", position)
            close = end if close < 0 else close + 1
            raw = text[position:close]
            position = close
            try:
                value = json.loads(raw)
            except (ValueError, RecursionError):  # not JSON, or nested past the stack
                value = raw
            else:
                if raw.count("{") + raw.count("[") > MAX_DEPTH and too_deep(value):
                    value = raw  # kept as text, as any record nested this deep is
        else:
            space = text.find(" ", position)
            space = end if space < 0 else space
            value = text[position:space]
            position = space
            if unquoted is not None:
                unquoted.add(key)
        if key:
            out[key] = value
    return out


def _unhex(value: Any, nul_as_space: bool = False) -> Any:
    """auditd's hex encoding of a value it could not write plainly, decoded (else as is)."""
    if type(value) is not str or len(value) < 2 or len(value) % 2 or not _HEX.issuperset(value):
        return value
    try:
        data = bytes.fromhex(value)
    except ValueError:
        return value
    if nul_as_space:
        data = data.replace(b"\x00", b" ").strip()
    text = data.decode("utf-8", "replace")
    return text if text.isprintable() else value


def parse_record(line: str) -> tuple[str, str, dict[str, Any]] | None:
    """(event key "time:serial", record type, fields) of one audit line, or None."""
    node = None
    if line.startswith("node="):
        node, _, line = line.partition(" ")
        node = node[5:]
    if not line.startswith("type="):
        return None
    start = line.find("audit(")
    close = line.find("):", start)
    if start < 0 or close < 0:
        return None
    record_type = line[5:start].split(" ", 1)[0].strip()
    stamp = line[start + 6 : close]
    # ENRICHED logs append the interpreted fields (SYSCALL=, AUID=, ...) after a GS byte
    body = line[close + 2 :].replace("\x1d", " ")
    proctitle = None
    if record_type.startswith("AUOMS") and " proctitle=" in body:
        # AUOMS writes the process title bare, spaces and all, before its last two fields
        head, _, rest = body.partition(" proctitle=")
        proctitle, sep, tail = rest.partition(" redactors=")
        body = head + (" redactors=" + tail if sep else "")
    bare: set[str] = set()
    fields = parse_pairs(body, bare)
    if proctitle is not None:
        fields["proctitle"] = proctitle
    if record_type == "SYSCALL" and "SYSCALL" not in fields:
        name = SYSCALL_NAMES.get(str(fields.get("arch")), {}).get(str(fields.get("syscall")))
        if name:
            fields["SYSCALL"] = name
    if node and "node" not in fields:
        fields["node"] = node
    if record_type == "EXECVE":
        for key in bare:
            if key[:1] == "a" and key[1:].isdigit():
                fields[key] = _unhex(fields[key])
    if "proctitle" in bare:
        fields["proctitle"] = _unhex(fields["proctitle"], nul_as_space=True)
    return stamp, record_type, fields


class _Event:
    __slots__ = ("fields", "last", "line", "repeated", "stamp", "types")

    def __init__(self, stamp: str, line: int) -> None:
        self.stamp = stamp
        self.line = line
        self.last = line
        self.types: list[str] = []
        self.fields: dict[str, Any] = {}
        self.repeated: set[str] = set()

    def add(self, record_type: str, fields: dict[str, Any], line: int) -> None:
        self.types.append(record_type)
        self.last = line
        out = self.fields
        for key, value in fields.items():
            if key not in out:
                out[key] = value
            elif key in self.repeated:
                out[key].append(value)
            else:
                out[key] = [out[key], value]
                self.repeated.add(key)

    def finish(self) -> tuple[int, str, dict[str, Any]]:
        fields = self.fields
        fields["type"] = self.types[0] if len(self.types) == 1 else list(self.types)
        return self.line, self.stamp, fields


# (first line number, "time:serial", fields)
Raw = tuple[int, str, dict[str, Any]]


def read(source: Input, report: FileReport) -> Iterator[list[Raw]]:
    """Audit events as (line of their first record, "time:serial", fields)."""
    return batched(_events(source, report), BATCH)


def _events(source: Input, report: FileReport) -> Iterator[Raw]:
    open_events: dict[str, _Event] = {}
    next_sweep = OPEN_WINDOW
    for number, raw in numbered_lines(source, report):
        parsed = parse_record(raw.decode("utf-8", "replace").strip())
        if parsed is None:
            report.reject(number, "not an audit record (type=... msg=audit(...): ...)", raw=raw)
            continue
        stamp, record_type, fields = parsed
        event = open_events.get(stamp)
        if event is None:
            event = open_events[stamp] = _Event(stamp, number)
        if record_type == "EOE":
            yield open_events.pop(stamp).finish()
            continue
        event.add(record_type, fields, number)
        if number >= next_sweep:  # events not continued for a while are complete
            next_sweep = number + OPEN_WINDOW
            for old in [s for s, e in open_events.items() if e.last < number - OPEN_WINDOW]:
                yield open_events.pop(old).finish()
    for event in open_events.values():
        if event.types:
            yield event.finish()


def to_events(records: list[Raw], report: FileReport) -> list[Event]:
    events = []
    for line, stamp, fields in sorted(records, key=lambda r: r[0]):
        event = Event(fields=fields, source=report.path, record=line, format=NAME)
        tag(event, stamp)
        events.append(event)
    return events


def tag(event: Event, stamp: str | None) -> None:
    """Logsource, dataset and time of an audit event."""
    event.product = "linux"
    event.service = "auditd"
    event.dataset = "linux.auditd"
    if stamp:
        seconds = stamp.split(":", 1)[0]
        try:
            # `nan`, `inf` and `1e999` are floats too: parse_time keeps times in range
            event.time = parse_time(float(seconds))
        except ValueError:
            event.time = None
