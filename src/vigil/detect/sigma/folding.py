"""Case folding for matching: Sigma compares case-insensitively by lower-casing both sides.

One function for every comparison the engine makes (prefilter buffer, literals and exact
tests), so that whether a rule matches never depends on which of them decided it."""

from __future__ import annotations

# Letters that lower() leaves apart from the letter case-insensitive engines equate them with:
# long s (which regex engines fold to s) and Greek final sigma (lower() writes it only at the end
# of a word, so "ΑΣ".lower() is "ας" while "Σ".lower() is "σ").
_SPECIAL = str.maketrans({"\u017f": "s", "\u03c2": "\u03c3"})


def fold(text: str) -> str:
    """Text as matching compares it: lower case, long s as s, final sigma as sigma.

    A per-character mapping after lower(), so a substring of a value stays a substring once
    folded."""
    lowered = text.lower()
    if lowered.isascii() or ("\u017f" not in lowered and "\u03c2" not in lowered):
        return lowered
    return lowered.translate(_SPECIAL)
