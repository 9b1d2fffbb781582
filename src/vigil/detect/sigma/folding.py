"""Case folding for matching: Sigma compares case-insensitively by lower-casing both sides."""

from __future__ import annotations

# A letter case-insensitive regex engines equate with an ASCII one that lower() leaves alone.
_LONG_S = "\u017f"


def fold(text: str) -> str:
    """The prefilter's form of text: lower case, and long s as s.

    A per-character mapping, so a substring of a value stays a substring once folded."""
    lowered = text.lower()
    if lowered.isascii() or _LONG_S not in lowered:
        return lowered
    return lowered.replace(_LONG_S, "s")
