"""Inline SVG charts drawn on the server (no script, nothing fetched at run time): a monthly trend line with
its target, and one bar per agent."""
from __future__ import annotations

from markupsafe import Markup, escape

COLOURS = {"met": "#2f855a", "below": "#c05621", "zero": "#c53030", "none": "#a0aec0"}


def status(value, target, score) -> str:
    if value is None:
        return "none"
    if value >= target:
        return "met"
    return "zero" if score == 0 else "below"


def _scale(values, target, unit):
    top = 100.0 if unit == "%" else max([100.0] + [v for v in values if v is not None])
    return max(top, target)


def trend(points: list[tuple[str, float | None]], target: float, unit: str, title: str,
          width: int = 300, height: int = 130) -> Markup:
    """A line over the months (None leaves a gap), the target as a dashed line, the value on each point."""
    left, right, top, bottom = 30, 20, 14, 22
    w, h = width - left - right, height - top - bottom
    scale = _scale([v for _m, v in points], target, unit)
    n = max(1, len(points) - 1)

    def x(i):
        return left + w * i / n

    def y(v):
        return top + h * (1 - v / scale)

    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
             f'<line x1="{left}" y1="{y(0):.1f}" x2="{width - right}" y2="{y(0):.1f}" stroke="#cbd5e0"/>',
             f'<line x1="{left}" y1="{y(target):.1f}" x2="{width - right}" y2="{y(target):.1f}" stroke="#2f855a" '
             f'stroke-dasharray="4 3"/>',
             f'<text x="2" y="{y(target) + 4:.1f}" font-size="9" fill="#2f855a">{target:g}</text>']
    run = []
    for i, (_m, v) in enumerate(points + [("", None)]):
        if v is not None:
            run.append(f"{x(i):.1f},{y(v):.1f}")
        elif run:
            parts.append(f'<polyline fill="none" stroke="#2b6cb0" stroke-width="2" points="{" ".join(run)}"/>')
            run = []
    for i, (month, v) in enumerate(points):
        parts.append(f'<text x="{x(i):.1f}" y="{height - 6}" font-size="9" text-anchor="middle" fill="#4a5568">'
                     f'{escape(month[2:])}</text>')
        if v is not None:
            colour = COLOURS[status(v, target, None if v >= target else 1)]
            parts.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"/>'
                         f'<text x="{x(i):.1f}" y="{y(v) - 5:.1f}" font-size="9" text-anchor="middle">{v:g}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def bars(rows: list[tuple[str, float | None, float | None]], target: float, unit: str, title: str,
         width: int = 300) -> Markup:
    """One horizontal bar per agent: (label, value, score); the target as a dashed vertical line."""
    label_w, right, row_h = 90, 40, 18
    height = max(1, len(rows)) * row_h + 8
    w = width - label_w - right
    scale = _scale([v for _l, v, _s in rows], target, unit)
    tx = label_w + w * target / scale
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    for i, (label, v, s) in enumerate(rows):
        y = 4 + i * row_h
        parts.append(f'<text x="{label_w - 4}" y="{y + 12}" font-size="10" text-anchor="end">{escape(label)}</text>')
        if v is None:
            parts.append(f'<text x="{label_w + 2}" y="{y + 12}" font-size="10" fill="#a0aec0">—</text>')
            continue
        parts.append(f'<rect x="{label_w}" y="{y + 2}" width="{max(1.0, w * v / scale):.1f}" height="{row_h - 6}" '
                     f'fill="{COLOURS[status(v, target, s)]}"/>'
                     f'<text x="{label_w + w * v / scale + 3:.1f}" y="{y + 12}" font-size="10">{v:g}</text>')
    parts.append(f'<line x1="{tx:.1f}" y1="0" x2="{tx:.1f}" y2="{height}" stroke="#2f855a" stroke-dasharray="4 3"/>'
                 "</svg>")
    return Markup("".join(parts))
