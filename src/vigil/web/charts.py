"""Charts drawn on the server as SVG (no script, no inline style: colours come from the
console's stylesheet by class). Every label is escaped: a record's text never becomes
markup."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape


def bars(
    rows: Sequence[tuple[str, float]],
    *,
    width: int = 420,
    row: int = 22,
    label: int = 150,
    unit: str = "",
    kind: str = "",
) -> Markup:
    """Horizontal bars, one per (label, value); `kind` names a class per bar when it is
    "level" (the label is a severity)."""
    if not rows:
        return Markup('<p class="quiet">nothing yet</p>')
    most = max((value for _, value in rows), default=0) or 1
    room = width - label - 60
    height = row * len(rows)
    parts = [
        f'<svg class="chart bars" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">'
    ]
    for i, (name, value) in enumerate(rows):
        y = i * row
        size = max(1.0, room * value / most) if value else 0.0
        cls = f"bar level-{escape(name)}" if kind == "level" else "bar"
        parts.append(
            f"<g><title>{escape(name)}: {value:,.6g}{escape(unit)}</title>"
            f'<text class="label" x="{label - 6}" y="{y + row * 0.68:.1f}" '
            f'text-anchor="end">{escape(_short(name, 24))}</text>'
            f'<rect class="{cls}" x="{label}" y="{y + 3}" width="{size:.1f}" '
            f'height="{row - 6}" rx="2"/>'
            f'<text class="value" x="{label + size + 5:.1f}" y="{y + row * 0.68:.1f}">'
            f"{value:,.6g}{escape(unit)}</text></g>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every text in it escaped above)


def trend(
    points: Sequence[tuple[str, float | None]],
    *,
    width: int = 420,
    height: int = 110,
    unit: str = "s",
) -> Markup:
    """A line over days (or any ordered labels); a missing value breaks the line."""
    known = [value for _, value in points if value is not None]
    if not known:
        return Markup('<p class="quiet">no figures yet</p>')
    top = max(known) or 1.0
    left, bottom, right, over = 46, 20, 8, 8
    span_x = (width - left - right) / max(1, len(points) - 1)
    span_y = height - bottom - over

    def y_of(value: float) -> float:
        return over + span_y * (1 - value / top)

    parts = [
        f'<svg class="chart trend" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">',
        f'<line class="axis" x1="{left}" y1="{over + span_y}" x2="{width - right}" '
        f'y2="{over + span_y}"/>',
        f'<text class="label" x="{left - 4}" y="{over + 8}" text-anchor="end">'
        f"{_round(top)}{escape(unit)}</text>",
        f'<text class="label" x="{left - 4}" y="{over + span_y}" text-anchor="end">0</text>',
    ]
    line: list[str] = []
    for i, (name, value) in enumerate(points):
        x = left + i * span_x
        if value is None:
            if len(line) > 1:
                parts.append(f'<polyline class="line" points="{" ".join(line)}"/>')
            line = []
            continue
        line.append(f"{x:.1f},{y_of(value):.1f}")
        parts.append(
            f'<circle class="dot" cx="{x:.1f}" cy="{y_of(value):.1f}" r="3">'
            f"<title>{escape(name)}: {_round(value)}{escape(unit)}</title></circle>"
        )
    if len(line) > 1:
        parts.append(f'<polyline class="line" points="{" ".join(line)}"/>')
    if points:
        parts.append(
            f'<text class="label" x="{left}" y="{height - 4}">{escape(points[0][0])}</text>'
            f'<text class="label" x="{width - right}" y="{height - 4}" text-anchor="end">'
            f"{escape(points[-1][0])}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every text in it escaped above)


def _round(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _short(text: str, most: int) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"
