"""Case folding for matching: Sigma compares case-insensitively by lower-casing both sides."""

from __future__ import annotations

# Letters case-insensitive regex engines equate with ASCII ones that lower() leaves alone.
_EXTRA = {0x17F: "s"}  # long s


def fold(text: str) -> str:
    """The prefilter's form of text: lower case (and long s as s, for non-ASCII text).

    A per-character mapping, so a substring of a value stays a substring once folded."""
    lowered = text.lower()
    return lowered if lowered.isascii() else lowered.translate(_EXTRA)
