"""The indicator store: indicators, every source's say on each, sources with their pull
positions, and sightings, in the state database (SQLAlchemy; SQLite by default).

An indicator is one (type, canonical value); its `key` is a 64-bit digest of the two, so that
bulk imports write provenance without reading ids back. Each source that names it keeps its
own row (`provenance`: confidence, validity, revocation, tags, techniques, actors), so
deduplication across sources loses nobody's provenance. Whether an indicator matches is
decided per source row (see `lifecycle`): it matches while any source's row is live.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import (
    Engine,
    func,
    select,
)

from vigil.intel import lifecycle
from vigil.intel.model import ImportResult, Indicator, IndicatorValueError, canonical
from vigil.store import migrate, state_engine, upsert_insert
from vigil.store.tables import indicator_table, provenance_table, sighting_table, source_table

BATCH = 100_000


def indicator_key(kind: str, value: str) -> int:
    """The indicator's key: the first 8 bytes of BLAKE2b over type and value, signed."""
    digest = hashlib.blake2b(f"{kind}\0{value}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(frozen=True, slots=True)
class SourceSay:
    """One source's row for an indicator."""

    source: str
    reference: str
    confidence: int | None
    first_seen: float | None
    last_seen: float | None
    valid_until: float | None
    revoked: bool
    tags: tuple[str, ...]
    techniques: tuple[str, ...]
    actors: tuple[str, ...]
    description: str | None
    imported_at: float


@dataclass(frozen=True, slots=True)
class StoredIndicator:
    """An indicator with every source's say, its sightings and where its lifecycle is now."""

    key: int
    type: str
    value: str
    created: float
    last_sighting: float | None
    sightings: int
    sources: tuple[SourceSay, ...]

    def live_sources(self, now: float | None = None) -> tuple[SourceSay, ...]:
        at = time.time() if now is None else now
        return tuple(s for s in self.sources if _say_is_live(self.type, s, self.last_sighting, at))

    def score(self, now: float | None = None) -> float:
        """The highest current score over its sources (0 when all are revoked or expired)."""
        at = time.time() if now is None else now
        best = 0.0
        for say in self.sources:
            if say.revoked or (say.valid_until is not None and say.valid_until <= at):
                continue
            since = lifecycle.active_since(
                say.imported_at, say.first_seen, say.last_seen, self.last_sighting
            )
            best = max(best, lifecycle.current_score(self.type, say.confidence, since, at))
        return best

    @property
    def techniques(self) -> tuple[str, ...]:
        return _union(s.techniques for s in self.sources)

    @property
    def actors(self) -> tuple[str, ...]:
        return _union(s.actors for s in self.sources)

    @property
    def tags(self) -> tuple[str, ...]:
        return _union(s.tags for s in self.sources)


def _union(groups: Iterable[tuple[str, ...]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(item for group in groups for item in group))


def _say_is_live(kind: str, say: SourceSay, last_sighting: float | None, now: float) -> bool:
    since = lifecycle.active_since(say.imported_at, say.first_seen, say.last_seen, last_sighting)
    return lifecycle.is_live(
        kind,
        confidence=say.confidence,
        since=since,
        valid_until=say.valid_until,
        revoked=say.revoked,
        now=now,
    )


@dataclass
class AddCounts:
    indicators: int = 0  # source rows written (new or updated)
    new: int = 0  # indicators not in the store before
    invalid: list[tuple[Indicator, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Sighting:
    """An indicator seen in Vigil's logs: where (host or file), which ECS field, when."""

    key: int
    where: str
    field: str
    time: float | None


class IndicatorStore:
    """Indicators in the state database. `IndicatorStore.open()` uses the data folder."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pid = os.getpid()
        migrate(engine)
        self._insert = upsert_insert(engine)
        # Bulk writes go straight to the driver (executemany): SQLite and PostgreSQL share
        # the upsert syntax, only the parameter marks differ.
        mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        heads = ("key", "type", "value", "created", "sightings")
        # (built from this module's constants only: no outside text reaches the SQL)
        self._sql_heads = (
            f"INSERT INTO intel_indicator ({', '.join(heads)}) "  # noqa: S608
            f"VALUES ({', '.join([mark] * len(heads))}) ON CONFLICT (key) DO NOTHING"
        )
        says = [c.name for c in provenance_table.columns]
        updated = [c for c in says if c not in ("key", "source", "reference")]
        self._sql_says = (
            f"INSERT INTO intel_provenance ({', '.join(says)}) "  # noqa: S608
            f"VALUES ({', '.join([mark] * len(says))}) "
            "ON CONFLICT (key, source, reference) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in updated)
        )

    @classmethod
    def open(cls, url_or_folder: str | Path | None = None) -> IndicatorStore:
        return cls(state_engine(url_or_folder))

    # --- writing ---------------------------------------------------------------------------

    def add(self, indicators: Iterable[Indicator], *, now: float | None = None) -> AddCounts:
        """Write indicators (re-canonicalised, so any caller's values are safe): new ones are
        created, a source's row for a known one is replaced by its new say."""
        imported_at = time.time() if now is None else now
        counts = AddCounts()
        batch: list[Indicator] = []
        for indicator in indicators:
            batch.append(indicator)
            if len(batch) >= BATCH:
                self._add_batch(batch, imported_at, counts)
                batch = []
        if batch:
            self._add_batch(batch, imported_at, counts)
        return counts

    def _add_batch(self, batch: list[Indicator], imported_at: float, counts: AddCounts) -> None:
        heads: dict[int, tuple[Any, ...]] = {}
        says: dict[tuple[int, str, str], tuple[Any, ...]] = {}
        for item in batch:
            try:
                kind, value = canonical(item.type, item.value)
            except IndicatorValueError as exc:
                counts.invalid.append((item, str(exc)))
                continue
            key = indicator_key(kind, value)
            heads[key] = (key, kind, value, imported_at, 0)
            reference = (item.reference or "")[:512]
            says[(key, item.source, reference)] = (
                key,
                item.source,
                reference,
                item.confidence,
                item.first_seen,
                item.last_seen,
                item.valid_until,
                bool(item.revoked),
                _json(item.tags),
                _json(item.techniques),
                _json(item.actors),
                item.description,
                imported_at,
            )
        if not heads:
            return
        with self.engine.begin() as conn:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                # in key order: neighbouring rows land on the same B-tree pages
                cursor.executemany(self._sql_heads, sorted(heads.values()))
                counts.new += max(0, cursor.rowcount)
                cursor.executemany(self._sql_says, [says[k] for k in sorted(says)])
            finally:
                cursor.close()
        counts.indicators += len(says)

    def record_import(
        self, result: ImportResult, *, kind: str, location: str, now: float | None = None
    ) -> AddCounts:
        """Store an importer's result and remember the source: where it is, its counts and
        the position the next pull starts from."""
        counts = self.add(result.indicators, now=now)
        row = {
            "name": result.source,
            "kind": kind,
            "location": location,
            "cursor": result.cursor,
            "last_import": time.time() if now is None else now,
            "indicators": counts.indicators,
            "unsupported": len(result.unsupported),
            "rejected": len(result.rejected) + len(counts.invalid),
        }
        statement = self._insert(source_table)
        with self.engine.begin() as conn:
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["name"],
                    set_={k: statement.excluded[k] for k in row if k != "name"},
                ),
                [row],
            )
        return counts

    def cursor(self, source: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                select(source_table.c.cursor).where(source_table.c.name == source)
            ).scalar_one_or_none()

    def record_sightings(self, sightings: Iterable[Sighting], *, now: float | None = None) -> int:
        """Add sightings, merged per (indicator, where, field): count, first and last time.
        Each indicator's last sighting (which resets its decay) is the newest time seen."""
        recorded = time.time() if now is None else now
        merged: dict[tuple[int, str, str], list[Any]] = {}
        for sighting in sightings:
            slot = merged.get((sighting.key, sighting.where, sighting.field))
            seen = sighting.time if sighting.time is not None else recorded
            if slot is None:
                merged[(sighting.key, sighting.where[:512], sighting.field[:128])] = [
                    seen,
                    seen,
                    1,
                ]
            else:
                slot[0], slot[1], slot[2] = min(slot[0], seen), max(slot[1], seen), slot[2] + 1
        if not merged:
            return 0
        with self.engine.begin() as conn:
            existing = {
                (row.key, row.where, row.field): row
                for keys in _chunks(sorted({k for k, _, _ in merged}), 500)
                for row in conn.execute(
                    select(sighting_table).where(sighting_table.c.key.in_(keys))
                )
            }
            rows = []
            newest: dict[int, float] = {}
            for (key, where, field_name), (first, last, count) in merged.items():
                old = existing.get((key, where, field_name))
                if old is not None:
                    first = min(first, old.first_seen if old.first_seen is not None else first)
                    last = max(last, old.last_seen if old.last_seen is not None else last)
                    count += old.count
                rows.append(
                    {
                        "key": key,
                        "where": where,
                        "field": field_name,
                        "first_seen": first,
                        "last_seen": last,
                        "count": count,
                        "recorded": recorded,
                    }
                )
                newest[key] = max(newest.get(key, last), last)
            statement = self._insert(sighting_table)
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["key", "where", "field"],
                    set_={
                        k: statement.excluded[k]
                        for k in ("first_seen", "last_seen", "count", "recorded")
                    },
                ),
                rows,
            )
            added: dict[int, int] = {}
            for (key, _, _), (_, _, count) in merged.items():
                added[key] = added.get(key, 0) + count
            for key, last in newest.items():
                conn.execute(
                    indicator_table.update()
                    .where(indicator_table.c.key == key)
                    .values(
                        sightings=indicator_table.c.sightings + added[key],
                        last_sighting=func.max(
                            func.coalesce(indicator_table.c.last_sighting, last), last
                        )
                        if self.engine.dialect.name == "sqlite"
                        else func.greatest(
                            func.coalesce(indicator_table.c.last_sighting, last), last
                        ),
                    )
                )
        return sum(added.values())

    # --- reading ---------------------------------------------------------------------------

    def live(self, now: float | None = None) -> Iterator[tuple[int, str, str]]:
        """(key, type, value) of the indicators some source keeps live now. An indicator that
        several sources keep live comes once per source (the matcher keeps one)."""
        at = time.time() if now is None else now
        greatest = "MAX" if self.engine.dialect.name == "sqlite" else "GREATEST"
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        # revoked and expired rows are dropped by the database; decay is computed here
        query = (
            "SELECT i.key, i.type, i.value, p.confidence, "  # noqa: S608 (constants only)
            f"{greatest}(p.imported_at, COALESCE(p.first_seen, 0), COALESCE(p.last_seen, 0), "
            "COALESCE(i.last_sighting, 0)) "
            "FROM intel_provenance p JOIN intel_indicator i ON i.key = p.key "
            f"WHERE p.revoked = {mark} AND (p.valid_until IS NULL OR p.valid_until > {mark})"
        )
        model_for = lifecycle.model_for
        default_base = lifecycle.DEFAULT_BASE_SCORE
        self.forked()
        with self.engine.connect() as conn:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(query, (False, at))
                while rows := cursor.fetchmany(BATCH):
                    for key, kind, value, confidence, since in rows:
                        model = model_for(kind)
                        base = default_base if confidence is None else confidence
                        if model.score(base, at - since) >= model.threshold:
                            yield key, kind, value
            finally:
                cursor.close()

    def forked(self) -> None:
        """In a forked worker: drop the parent's pooled connections (never share them)."""
        if self._pid != os.getpid():
            self.engine.dispose(close=False)
            self._pid = os.getpid()

    def get(self, keys: Sequence[int]) -> dict[int, StoredIndicator]:
        """The indicators with these keys, with every source's say."""
        self.forked()
        out: dict[int, StoredIndicator] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(keys)), 500):
                heads = conn.execute(
                    select(indicator_table).where(indicator_table.c.key.in_(chunk))
                ).all()
                says: dict[int, list[SourceSay]] = {}
                for row in conn.execute(
                    select(provenance_table)
                    .where(provenance_table.c.key.in_(chunk))
                    .order_by(provenance_table.c.source, provenance_table.c.reference)
                ):
                    says.setdefault(row.key, []).append(_say(row))
                for head in heads:
                    out[head.key] = StoredIndicator(
                        key=head.key,
                        type=head.type,
                        value=head.value,
                        created=head.created,
                        last_sighting=head.last_sighting,
                        sightings=head.sightings,
                        sources=tuple(says.get(head.key, ())),
                    )
        return out

    def search(self, text: str) -> list[StoredIndicator]:
        """Indicators whose value is `text` read as any type (a domain also finds the
        indicators on its parent domains, an address the networks holding it)."""
        keys: list[int] = []
        for kind in ("ipv4", "domain", "url", "md5", "sha1", "sha256", "sha512", "email"):
            try:
                canon_kind, value = canonical(kind, text)
            except IndicatorValueError:
                continue
            keys.append(indicator_key(canon_kind, value))
            if canon_kind == "domain":
                labels = value.split(".")
                keys.extend(
                    indicator_key("domain", ".".join(labels[i:])) for i in range(1, len(labels))
                )
        keys.append(indicator_key("filename", text.strip()))
        found = self.get(keys)
        if any(k in ("ipv4", "ipv6") for k in (s.type for s in found.values())) or _is_ip(text):
            found.update(self._networks_holding(text))
        return list(found.values())

    def _networks_holding(self, text: str) -> dict[int, StoredIndicator]:
        import ipaddress

        try:
            address = ipaddress.ip_address(text.strip())
        except ValueError:
            return {}
        keys = []
        with self.engine.connect() as conn:
            for key, value in conn.execute(
                select(indicator_table.c.key, indicator_table.c.value).where(
                    indicator_table.c.type == "cidr"
                )
            ):
                network = ipaddress.ip_network(value)
                if address.version == network.version and address in network:
                    keys.append(key)
        return self.get(keys)

    def stats(self, now: float | None = None) -> dict[str, Any]:
        """Counts: indicators per type, live ones, source rows per source, sources."""
        at = time.time() if now is None else now
        with self.engine.connect() as conn:
            per_type: dict[str, int] = dict(
                conn.execute(
                    select(indicator_table.c.type, func.count()).group_by(indicator_table.c.type)
                ).all()
            )
            per_source: dict[str, int] = dict(
                conn.execute(
                    select(provenance_table.c.source, func.count()).group_by(
                        provenance_table.c.source
                    )
                ).all()
            )
            revoked = conn.execute(
                select(func.count()).where(provenance_table.c.revoked.is_(True))
            ).scalar_one()
            expired = conn.execute(
                select(func.count()).where(provenance_table.c.valid_until <= at)
            ).scalar_one()
            sightings = conn.execute(
                select(func.coalesce(func.sum(sighting_table.c.count), 0))
            ).scalar_one()
        live: dict[str, int] = {}
        seen: set[int] = set()
        for key, kind, _ in self.live(at):
            if key not in seen:
                seen.add(key)
                live[kind] = live.get(kind, 0) + 1
        return {
            "indicators": sum(per_type.values()),
            "by_type": per_type,
            "live": sum(live.values()),
            "live_by_type": live,
            "source_rows": per_source,
            "revoked_rows": revoked,
            "expired_rows": expired,
            "sightings": sightings,
            "sources": self.sources(),
        }

    def sources(self) -> list[dict[str, Any]]:
        """Every source imported or pulled: kind, location, cursor, counts."""
        with self.engine.connect() as conn:
            return [_plain(row) for row in conn.execute(select(source_table))]

    def recent(self, *, limit: int = 50, offset: int = 0) -> list[StoredIndicator]:
        """The indicators most recently added first (a page), with every source's say."""
        i = indicator_table.c
        query = select(i.key).order_by(i.created.desc(), i.key).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            keys = list(conn.execute(query).scalars())
        found = self.get(keys)
        return [found[key] for key in keys if key in found]

    def recent_sightings(self, *, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        """Sightings, the latest first (a page): each with its indicator's type and value."""
        s, i = sighting_table.c, indicator_table.c
        query = (
            select(sighting_table, i.type, i.value)
            .join(indicator_table, i.key == s.key)
            .order_by(s.last_seen.desc(), s.key, s.where, s.field)
            .limit(limit)
            .offset(offset)
        )
        with self.engine.connect() as conn:
            return [_plain(row) for row in conn.execute(query)]

    def sightings(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [
                _plain(row)
                for row in conn.execute(
                    select(sighting_table).order_by(sighting_table.c.key, sighting_table.c.where)
                )
            ]


def _plain(row: Any) -> dict[str, Any]:
    """A row as a dict with plain `str` keys (SQLAlchemy's are a `str` subclass)."""
    return {str(key): value for key, value in row._mapping.items()}


def _json(items: Sequence[str]) -> str:
    return orjson.dumps(list(items)).decode()


def _tuple(text: str | None) -> tuple[str, ...]:
    return tuple(orjson.loads(text)) if text else ()


def _say(row: Any) -> SourceSay:
    return SourceSay(
        source=row.source,
        reference=row.reference,
        confidence=row.confidence,
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        valid_until=row.valid_until,
        revoked=bool(row.revoked),
        tags=_tuple(row.tags),
        techniques=_tuple(row.techniques),
        actors=_tuple(row.actors),
        description=row.description,
        imported_at=row.imported_at,
    )


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _is_ip(text: str) -> bool:
    try:
        canonical("ipv4", text)
    except IndicatorValueError:
        return False
    return True
