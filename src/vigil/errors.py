"""The one exception hierarchy of Vigil. Problems with single records or rules are not raised:
they are reported (`vigil.ingest.Problem`, `vigil.detect.sigma.RuleProblem`) and work goes on.

The kinds below say what sort of failure it is; the API turns each kind into its HTTP status
in one place (`vigil.api.app`), never by reading the message."""

from __future__ import annotations


class VigilError(Exception):
    """Root of every error Vigil raises on purpose."""


class InputError(VigilError):
    """A path, folder, option or request given by the user cannot be used."""


class TooLarge(InputError):
    """A request or upload is over a size or count limit (what was sent must be split)."""


class Unsupported(InputError):
    """A content type or encoding Vigil does not read."""


class Unavailable(VigilError):
    """Vigil cannot take this now (overload, storage trouble); try again after
    `retry_after` seconds."""

    def __init__(self, reason: str, retry_after: float = 2.0) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class StorageFull(Unavailable):
    """The data folder's file system is full: nothing more can be stored until space is
    freed."""
