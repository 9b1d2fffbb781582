"""Events: the `Event` type, field flattening and time stamps."""

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
    "flatten_dotted",
    "flatten_evtx_json",
    "flatten_nxlog",
    "flatten_winlogbeat",
    "format_time",
    "parse_time",
    "windows_shape",
]
