"""The entities an event names (host, user, ip, process, file hash, cloud principal), from its
ECS view: which ECS fields give each kind is data (data/entities.yml, one table per dataset);
what counts as a value of a kind is here.

    >>> entities_of(event)  # doctest: +SKIP
    (('host', 'ws-01'), ('user', 'alice'), ('ip', '10.0.0.5'))

Values are lower-cased text, each entity once, in the order of the kinds in the table. A value
names nobody when it is a placeholder (`-`, `n/a`) or one of the local system's own accounts
(`SYSTEM`, `LOCAL SERVICE`, machine accounts ending in `$`: the host says it); `DOMAIN\\user`
is `user`; loopback and unspecified addresses link nothing; Sysmon's `SHA1=..,MD5=..` gives
each digest (not the import-table hash); the hashes of Windows' own binaries (on every host)
link nothing; values longer than `MAX_VALUE` keep a prefix and a digest.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from functools import cache, lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from vigil.events.records import Entity

if TYPE_CHECKING:
    from vigil.events.model import Event

# Values that name nobody (accounts of the local system, placeholders).
NOBODY = frozenset(
    {
        "",
        "-",
        "system",
        "local service",
        "network service",
        "localsystem",
        "n/a",
        "unknown",
        "null",
        "nt authority\\system",
        "anonymous logon",
    }
)
_SHARED_IPS = {"127.0.0.1", "::1", "0.0.0.0", "::"}  # noqa: S104 - a value to ignore, not a bind
_DIGEST_LENGTHS = (32, 40, 64)  # md5, sha1, sha256 in hex
# Windows' own binaries: the same files on every host, so their hashes link nothing
_SYSTEM_DIRS = ("c:\\windows\\", "c:\\program files\\windows")

MAX_VALUE = 200  # longer values (they come from the data) keep a prefix and a digest


def bounded(value: str) -> str:
    """`value`, or when longer than MAX_VALUE its prefix and a digest of the whole."""
    if len(value) <= MAX_VALUE:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:16]
    return f"{value[: MAX_VALUE - 18]}…{digest}"


def entity_values(kind: str, value: Any) -> list[str]:
    """The values one native or ECS value gives an entity of `kind` (none when it names
    nobody), lower-cased and bounded."""
    if value is None or isinstance(value, dict | list):
        return []
    text = str(value).strip().lower()
    if text in NOBODY:
        return []
    if kind == "ip":
        try:
            address = ipaddress.ip_address(text.split("%")[0])
        except ValueError:
            return []
        if address.version == 6 and address.ipv4_mapped:  # `::ffff:10.0.0.5` is 10.0.0.5
            address = address.ipv4_mapped
        return [] if str(address) in _SHARED_IPS else [str(address)]
    if kind == "hash":
        # Sysmon's `SHA1=..,MD5=..,SHA256=..,IMPHASH=..`: each digest of the file; not the
        # import-table hash, which many unrelated binaries share (every .NET one, for a start)
        digests = []
        for part in text.split(","):
            name, sep, digest = part.partition("=")
            if not sep:
                digests.append(name.strip())
            elif name.strip() != "imphash":
                digests.append(digest.strip())
        return [d for d in digests if len(d) in _DIGEST_LENGTHS and d.isalnum()]
    if kind == "user":
        if text.endswith("$"):
            return []  # a machine account: the host says it
        if "\\" in text:
            text = text.rpartition("\\")[2]
            if text in NOBODY:
                return []
    return [bounded(text)]


def system_binary(path: Any) -> bool:
    """Whether `path` is one of Windows' own binaries (the same file on every host)."""
    return str(path or "").lower().startswith(_SYSTEM_DIRS)


# --- the tables --------------------------------------------------------------------------

# One way a kind gets its values: (ECS field, ECS field whose value scopes it, or None).
Source = tuple[str, str | None]
# One kind of one dataset's table: its sources, and whether only the first that gives a value
# counts.
Rule = tuple[str, tuple[Source, ...], bool]


def _source(kind: str, spec: Any) -> Source:
    if isinstance(spec, str):
        return spec, None
    if isinstance(spec, Mapping) and isinstance(spec.get("field"), str):
        scope = spec.get("scope")
        return spec["field"], None if scope is None else str(scope)
    raise ValueError(f"entities.yml: a source of {kind} is a field or {{field, scope}}: {spec!r}")


def _rule(kind: str, spec: Any) -> Rule:
    first = isinstance(spec, Mapping) and "first" in spec
    if first:
        spec = spec["first"]
    items = spec if isinstance(spec, list) else [spec]
    return kind, tuple(_source(kind, item) for item in items), first


@cache
def _raw() -> dict[str, dict[str, Any]]:
    import yaml  # only when the first event asks for its entities

    text = resources.files("vigil.data").joinpath("entities.yml").read_text("utf-8")
    raw: dict[str, dict[str, Any]] = yaml.safe_load(text)
    return raw


@lru_cache(maxsize=1024)  # datasets are few, but a Zeek log names its own (`zeek.<path>`)
def table(dataset: str | None) -> tuple[Rule, ...]:
    """The compiled table of a dataset: `default`'s kinds, replaced or added to by those of
    the dataset (`zeek.rfb` has `zeek`'s when it has none of its own)."""
    raw = _raw()
    spec = dict(raw.get("default") or {})
    if dataset:
        own = raw.get(dataset)
        if own is None:
            own = raw.get(dataset.split(".", 1)[0])
        spec.update(own or {})
    return tuple(_rule(str(kind), entry) for kind, entry in spec.items())


# --- one event ---------------------------------------------------------------------------


def entities_of(event: Event) -> tuple[Entity, ...]:
    """The (kind, value) pairs one event names, from its ECS view (see the module
    docstring)."""
    return entities_in(event.ecs, event.dataset)


def entities_in(view: Mapping[str, Any], dataset: str | None = None) -> tuple[Entity, ...]:
    """The entities of an ECS view (flat dotted names, as `Event.ecs` has them), read with the
    table of `dataset`."""
    found: list[Entity] = []
    for kind, sources, first in table(dataset):
        for name, scope in sources:
            if kind == "hash" and system_binary(_hashed_file(view, name)):
                continue
            values = _values_at(view, kind, name)
            if scope is not None:
                where = "".join(str(w).lower() for w in _scalars(view.get(scope)))
                values = [bounded(f"{value}@{where}") for value in values]
            for value in values:
                entity = (kind, value)
                if entity not in found:
                    found.append(entity)
            if first and values:
                break
    return tuple(found)


def _hashed_file(view: Mapping[str, Any], name: str) -> Any:
    """The file whose digest `name` holds: the process's image for `process.hash.*`, else the
    file the event names (a loaded DLL, a deleted file), else the process's image (Sysmon's
    process creation puts the image's hashes in `file.hash.*`)."""
    executable = view.get("process.executable")
    if name.startswith("process."):
        return executable
    return view.get("file.path") or executable


def _scalars(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [v for v in value if v is not None and not isinstance(v, dict | list)]
    return [] if value is None else [value]


def _values_at(view: Mapping[str, Any], kind: str, name: str) -> list[str]:
    out: list[str] = []
    for value in _scalars(view.get(name)):
        for text in entity_values(kind, value):
            if text not in out:
                out.append(text)
    return out
