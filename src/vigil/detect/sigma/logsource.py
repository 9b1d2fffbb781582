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
class EventClass:
    """What routing knows of an event: product, services and categories (with field renames)."""

    product: str | None
    services: frozenset[str]
    categories: tuple[tuple[str, FieldMap], ...]

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
        for product, spec in data.items():
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
        pmap = self.products.get(product or "")
        if pmap is None and product:
            product = _norm(product)
            pmap = self.products.get(product)
        head = (product, event.service, event.category)
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
        product = _norm(event.product) if event.product else None
        services: set[str] = set()
        categories: list[tuple[str, FieldMap]] = []
        if event.service:
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
        return EventClass(product, frozenset(services), tuple(categories))


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
        return ()
