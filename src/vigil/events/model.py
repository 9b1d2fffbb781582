"""The `Event` type: one log record with its native, flattened fields."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

FieldValue = str | int | float | bool | None | list[Any]

HOST_FIELDS = ("Computer", "Hostname", "host.name", "hostname", "ComputerName")


class Event:
    """One record, with fields named the way Sigma rules name them.

    `fields` holds the log's native field names, flattened (EVTX: `EventID`, `Channel`,
    `Provider_Name`, `Computer` and each `EventData` field by its own name). `product`,
    `service` and `category` are what the reader knows about the log source; Sigma logsource
    routing starts from them (`service` may name several, as a tuple). `dataset` says what kind
    of log it is, as ECS `event.dataset` does (`zeek.dns`, `aws.cloudtrail`, `linux.auditd`);
    it selects the table that gives the event its ECS view (`ecs`). `time` is epoch seconds;
    readers may hand over the raw time stamp (`stamp`) instead, parsed only when the time is
    asked for. `raw` is the record as the reader got it (a JSON text), when there is one.
    """

    __slots__ = (
        "_ecs",
        "_stamp",
        "_time",
        "category",
        "dataset",
        "fields",
        "format",
        "product",
        "raw",
        "record",
        "service",
        "source",
    )

    def __init__(
        self,
        fields: dict[str, Any],
        source: str,
        record: int | str | None = None,
        time: float | None = None,
        product: str | None = None,
        service: str | tuple[str, ...] | None = None,
        category: str | None = None,
        format: str = "",
        stamp: Any = None,
        raw: bytes | str | None = None,
        dataset: str | None = None,
    ) -> None:
        self.fields = fields
        self.source = source
        self.record = record
        self._time = time
        self._stamp = stamp
        self.product = product
        self.service = service
        self.category = category
        self.format = format
        self.raw = raw
        self.dataset = dataset
        self._ecs: dict[str, Any] | None = None

    @property
    def time(self) -> float | None:
        if self._time is None and self._stamp is not None:
            self._time = parse_time(self._stamp)
            self._stamp = None
        return self._time

    @time.setter
    def time(self, value: float | None) -> None:
        self._time = value
        self._stamp = None

    @property
    def timestamp(self) -> str | None:
        """The event time as ISO 8601 UTC, or None when the log has none."""
        return format_time(self.time)

    @property
    def ecs(self) -> dict[str, Any]:
        """The event in Elastic Common Schema terms (`source.ip`, `user.name`, ...), flat
        dotted names, built on first use from the table of its dataset."""
        if self._ecs is None:
            from vigil.events.ecs import ecs_view

            self._ecs = ecs_view(self)
        return self._ecs

    @property
    def host(self) -> str | None:
        for name in HOST_FIELDS:
            value = self.fields.get(name)
            if value:
                return str(value)
        return None

    def __repr__(self) -> str:
        return f"Event(source={self.source!r}, record={self.record!r}, fields={self.fields!r})"


# The instants datetime can represent (years 1 to 9999), in epoch seconds.
_FIRST = -62135596800.0
_LAST = 253402300799.0


def format_time(epoch: float | None) -> str | None:
    """ISO 8601 UTC with microseconds, or None for no time or one out of datetime's range."""
    if epoch is None or not _FIRST <= epoch <= _LAST:
        return None
    try:
        stamp = datetime.fromtimestamp(epoch, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return stamp.isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text: Any) -> float | None:
    """Epoch seconds from the time stamps logs carry (ISO 8601, evtx-rs style, epoch seconds or
    milliseconds), or None when there is none or it is out of range."""
    if text is None or isinstance(text, bool):
        return None
    if isinstance(text, int | float):
        try:
            value = float(text)
        except OverflowError:
            return None
        if value > 1e11 or value < -1e11:
            value /= 1000.0
        return value if _FIRST <= value <= _LAST else None  # also rejects NaN
    raw = str(text).strip()
    if not raw or len(raw) > 64:
        return None
    if raw.endswith(" UTC"):
        raw = raw[:-4]
    try:
        stamp = datetime.fromisoformat(raw)
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return stamp.timestamp()
    except (ValueError, OverflowError, OSError):
        return None
