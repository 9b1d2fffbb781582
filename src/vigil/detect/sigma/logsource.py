"""Sigma logsource routing: which events a rule's product/category/service covers (data-driven)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from vigil.events import Event

FieldMap = tuple[tuple[str, str], ...]  # rule field -> event field, sorted; () when none


@dataclass(frozen=True, slots=True)
class Alternative:
    """One way an event belongs to a category: allowed values per field, and field renames."""

    conditions: tuple[tuple[str, frozenset[str]], ...]
    fieldmap: FieldMap


@dataclass
class ProductMap:
    key_fields: tuple[str, ...] = ()
    prefer: dict[str, str] = field(default_factory=dict)
    services: dict[str, frozenset[str]] = field(default_factory=dict)  # service -> channels
    categories: dict[str, list[Alternative]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Dataset:
    """A kind of log readers recognise, and the Sigma logsource its events belong to."""

    product: str | None
    services: tuple[str, ...]
    categories: tuple[tuple[str, FieldMap], ...]
    fieldmap: FieldMap  # for rules of the product/service


@dataclass(frozen=True, slots=True)
class EventClass:
    """What routing knows of an event: product, services and categories (with field renames),
    and the renames for rules of its product and service (`fieldmap`)."""

    product: str | None
    services: frozenset[str]
    categories: tuple[tuple[str, FieldMap], ...]
    fieldmap: FieldMap = ()

    def fieldmap_for(self, category: str) -> FieldMap | None:
        for name, fieldmap in self.categories:
            if name == category:
                return fieldmap
        return None


KEY_TYPES = frozenset((str, int, type(None)))


def _norm(value: Any) -> str:
    return str(value).strip().lower()


class LogsourceMap:
    """Classifies events into Sigma logsources using mapping tables (see data/logsources.yml)."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        # what the plan cache keys on: a plan compiled for other tables is another plan
        self.digest = hashlib.sha256(
            json.dumps(data, sort_keys=True, default=str).encode()
        ).hexdigest()
        self.products: dict[str, ProductMap] = {}
        self.datasets: dict[str, Dataset] = {}
        self._prefixes: dict[str, Mapping[str, Any]] = {}
        for name, spec in (data.get("datasets") or {}).items():
            if name.endswith(".*"):
                self._prefixes[name[:-1]] = spec
            else:
                self.datasets[name] = self._dataset(spec, "")
        for product, spec in data.items():
            if product == "datasets":
                continue
            pmap = ProductMap(
                key_fields=tuple(spec.get("key_fields", ())), prefer=dict(spec.get("prefer") or {})
            )
            for service, channels in (spec.get("services") or {}).items():
                pmap.services[service] = frozenset(_norm(c) for c in channels)
            for category, alternatives in (spec.get("categories") or {}).items():
                pmap.categories[category] = [self._alternative(pmap, a) for a in alternatives]
            self.products[product] = pmap
        self._cache: dict[tuple[Any, ...], EventClass] = {}

    @staticmethod
    def _dataset(spec: Mapping[str, Any], suffix: str) -> Dataset:
        services = spec.get("service") or ()
        if isinstance(services, str):
            services = (services,)
        return Dataset(
            product=spec.get("product"),
            services=tuple(str(s).replace("{suffix}", suffix) for s in services),
            categories=tuple(
                (category, tuple(sorted((renames or {}).items())))
                for category, renames in (spec.get("categories") or {}).items()
            ),
            fieldmap=tuple(sorted((spec.get("fieldmap") or {}).items())),
        )

    def dataset(self, name: str | None) -> Dataset | None:
        """The table entry of a dataset (`zeek.dns`), from its own entry or its prefix's."""
        if not name:
            return None
        found = self.datasets.get(name)
        if found is None:
            for prefix, spec in self._prefixes.items():
                if name.startswith(prefix):
                    found = self._dataset(spec, name[len(prefix) :])
                    self.datasets[name] = found
                    break
        return found

    def fieldmaps(
        self, product: str | None, category: str | None, service: str | None
    ) -> list[FieldMap]:
        """Every field-rename set a rule of this logsource can be evaluated under (besides
        none): category renames of product tables and datasets, service renames of datasets."""
        maps: list[FieldMap] = []
        for name, pmap in self.products.items():
            if category and (not product or product == name):
                maps.extend(alt.fieldmap for alt in pmap.categories.get(category, []))
        for entry in self.datasets.values():
            if product and entry.product and product != entry.product:
                continue
            if category:
                maps.extend(renames for name, renames in entry.categories if name == category)
            elif service and service in entry.services:
                maps.append(entry.fieldmap)
        return [m for i, m in enumerate(maps) if m and m not in maps[:i]]

    @staticmethod
    def _alternative(pmap: ProductMap, spec: Mapping[str, Any]) -> Alternative:
        conditions: list[tuple[str, frozenset[str]]] = []
        for key, values in spec.items():
            if key == "fieldmap":
                continue
            if key == "service":
                conditions.append(("Channel", pmap.services[values]))
            else:
                conditions.append((key, frozenset(_norm(v) for v in values)))
        fieldmap = tuple(sorted((spec.get("fieldmap") or {}).items()))
        return Alternative(tuple(conditions), fieldmap)

    @classmethod
    def default(cls) -> LogsourceMap:
        text = resources.files("vigil.data").joinpath("logsources.yml").read_text("utf-8")
        return cls(yaml.safe_load(text))

    def key(self, event: Event) -> tuple[Any, ...]:
        """Events with equal keys classify alike; used to cache routing.

        Plain str and int values (the usual case) are used as they are: equal ones normalise
        alike. Anything else (bool, float, lists) is normalised first, so that `True == 1` or an
        unhashable list cannot confuse the cache."""
        product = event.product
        if product is None and event.dataset:
            entry = self.dataset(event.dataset)
            product = entry.product if entry else None
        pmap = self.products.get(product or "")
        if pmap is None and product:
            product = _norm(product)
            pmap = self.products.get(product)
        head = (product, event.service, event.category, event.dataset)
        if pmap is None:
            return head
        values = tuple(map(event.fields.get, pmap.key_fields))
        if not KEY_TYPES.issuperset(map(type, values)):
            values = tuple(v if type(v) in KEY_TYPES else ("\0", _norm(v)) for v in values)
        return head + values

    def classify(self, event: Event) -> EventClass:
        key = self.key(event)
        found = self._cache.get(key)
        if found is None:
            found = self._classify(event)
            self._cache[key] = found
        return found

    def _classify(self, event: Event) -> EventClass:
        entry = self.dataset(event.dataset)
        product = event.product or (entry.product if entry else None)
        product = _norm(product) if product else None
        services: set[str] = set(entry.services) if entry else set()
        categories: list[tuple[str, FieldMap]] = list(entry.categories) if entry else []
        if isinstance(event.service, tuple):
            services.update(_norm(name) for name in event.service)
        elif event.service:
            services.add(_norm(event.service))
        if event.category:
            categories.append((_norm(event.category), ()))
        pmap = self.products.get(product or "")
        if pmap is not None:
            values = {name: event.fields.get(name) for name in pmap.key_fields}
            for name, preferred in pmap.prefer.items():
                if values.get(preferred) is not None:
                    values[name] = values[preferred]
            channel = _norm(values.get("Channel")) if values.get("Channel") is not None else None
            for service, channels in pmap.services.items():
                if channel in channels:
                    services.add(service)
            for category, alternatives in pmap.categories.items():
                for alt in alternatives:
                    if all(
                        values.get(name) is not None and _norm(values[name]) in allowed
                        for name, allowed in alt.conditions
                    ):
                        categories.append((category, alt.fieldmap))
                        break
        return EventClass(
            product, frozenset(services), tuple(categories), entry.fieldmap if entry else ()
        )


@dataclass(frozen=True, slots=True)
class RuleSource:
    """A rule's logsource, lower-cased; None means "any"."""

    product: str | None
    category: str | None
    service: str | None

    def fieldmap(self, event_class: EventClass) -> FieldMap | None:
        """The field renames under which the rule applies to this class of event, or None if it
        does not apply."""
        if self.product and self.product != event_class.product:
            return None
        if self.service and self.service not in event_class.services:
            return None
        if self.category:
            return event_class.fieldmap_for(self.category)
        return event_class.fieldmap
