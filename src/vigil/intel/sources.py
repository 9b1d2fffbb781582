"""Configured intelligence sources (`[[intel.sources]]` in vigil.toml) and pulling them
incrementally: TAXII 2.1 collections from where the last pull stopped, MISP feeds by
manifest timestamp, files and URLs whole.

    [[intel.sources]]
    name = "partner-taxii"
    kind = "taxii"                      # taxii, misp-feed, url or path
    url = "https://taxii.example.org/api1/"
    collection = "indicators"           # optional: every collection otherwise
    user = "vigil"
    password_env = "PARTNER_TAXII_PASSWORD"   # the password is read from this variable

Passwords never live in the file, and never appear in messages.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from vigil.errors import InputError
from vigil.intel import misp, taxii
from vigil.intel.importers import Imported, import_path
from vigil.intel.store import IndicatorStore

KINDS = ("taxii", "misp-feed", "url", "path")


@dataclass(frozen=True, slots=True)
class IntelSource:
    name: str
    kind: str
    url: str
    collection: str | None = None
    user: str | None = None
    password_env: str | None = None
    verify: bool = True

    @property
    def password(self) -> str | None:
        if self.password_env is None:
            return None
        value = os.environ.get(self.password_env)
        if value is None:
            raise InputError(
                f"intel source {self.name!r}: environment variable {self.password_env} "
                "(its password) is not set"
            )
        return value


def load_sources(config: Path) -> list[IntelSource]:
    """The `[[intel.sources]]` of a vigil.toml file."""
    try:
        data = tomllib.loads(config.read_text("utf-8"))
    except OSError as exc:
        raise InputError(f"{config}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{config}: not valid TOML: {exc}") from None
    entries = data.get("intel", {}).get("sources", [])
    if not isinstance(entries, list):
        raise InputError(f"{config}: intel.sources must be an array of tables")
    sources = []
    names = set()
    for number, entry in enumerate(entries, 1):
        where = f"{config}: intel.sources[{number}]"
        if not isinstance(entry, dict):
            raise InputError(f"{where}: must be a table")
        if "password" in entry:
            raise InputError(
                f"{where}: no password in the file: name the environment variable that holds "
                "it with password_env"
            )
        unknown = set(entry) - set(IntelSource.__dataclass_fields__)
        if unknown:
            raise InputError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        for key in ("name", "kind", "url"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise InputError(f"{where}: `{key}` (text) is required")
        if entry["kind"] not in KINDS:
            raise InputError(f"{where}: kind must be one of {', '.join(KINDS)}")
        if entry["name"] in names:
            raise InputError(f"{where}: the name {entry['name']!r} is used twice")
        names.add(entry["name"])
        sources.append(IntelSource(**entry))
    return sources


def pull(source: IntelSource, store: IndicatorStore) -> list[Imported]:
    """Pull one source from where its last pull stopped and store what it gave."""
    cursor = store.cursor(source.name)
    if source.kind == "taxii":
        result = taxii.pull(
            source.url,
            collection=source.collection,
            user=source.user,
            password=source.password,
            added_after=cursor,
            verify=source.verify,
        )
        imported = [Imported(source.url, "taxii", result)]
    elif source.kind == "misp-feed":
        remote = source.url.startswith(("http://", "https://"))
        feed = misp.import_feed(source.url if remote else Path(source.url), source.name, cursor)
        imported = [Imported(source.url, "misp-feed", feed)]
    else:
        imported = list(import_path(source.url))
    for item in imported:
        if item.kind == "skipped":
            continue
        item.result.source = source.name
        store.record_import(item.result, kind=source.kind, location=source.url)
    return imported
