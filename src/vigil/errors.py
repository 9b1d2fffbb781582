"""The one exception hierarchy of Vigil. Problems with single records or rules are not raised:
they are reported (`vigil.ingest.Problem`, `vigil.detect.sigma.RuleProblem`) and work goes on."""

from __future__ import annotations


class VigilError(Exception):
    """Root of every error Vigil raises on purpose."""


class InputError(VigilError):
    """A path, folder or option given by the user cannot be used."""
