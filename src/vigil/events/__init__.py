"""Events: the `Event` type, field flattening, time stamps and the entities an event names."""

from vigil.events.entities import entities_in, entities_of
from vigil.events.flatten import (
    flatten_dotted,
    flatten_evtx_json,
    flatten_nxlog,
    flatten_winlogbeat,
    windows_shape,
)
from vigil.events.model import HOST_FIELDS, Event, format_time, parse_time

__all__ = [
    "HOST_FIELDS",
    "Event",
    "entities_in",
    "entities_of",
    "flatten_dotted",
    "flatten_evtx_json",
    "flatten_nxlog",
    "flatten_winlogbeat",
    "format_time",
    "parse_time",
    "windows_shape",
]
