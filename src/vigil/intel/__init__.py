"""Threat intelligence: indicators, their sources (STIX, TAXII, MISP, lists), lifecycle,
sightings, and the ATT&CK knowledge base."""

from vigil.intel.model import (
    TYPES,
    ImportResult,
    Indicator,
    IndicatorValueError,
    Rejected,
    Unsupported,
    canonical,
    canonical_domain,
    canonical_url,
)

__all__ = [
    "TYPES",
    "ImportResult",
    "Indicator",
    "IndicatorValueError",
    "Rejected",
    "Unsupported",
    "canonical",
    "canonical_domain",
    "canonical_url",
]
