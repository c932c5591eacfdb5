"""A small SVG line plot for the language-model demo's report (no plotting library needed).

``ckstore plot`` draws every recorded value, so the first steps' losses (above 6 nats/byte)
set the y-axis and the differences between raw and the averages (hundredths of a nat) vanish.
:func:`write_plot` draws the same curves with the y-axis fitted to the steps from ``y_from``
on (values above the axis are clipped at its top edge and the line is drawn through them).
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

COLORS = ["#555555", "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b"]


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    step = (high - low) / count
    return [low + i * step for i in range(count + 1)]


def write_plot(path: str | Path, title: str, series: list[tuple[str, dict[int, float]]], y_from: int | None = None,
               y_label: str = "validation loss (nats/byte)") -> None:
    """Write an SVG with one line per ``(label, {step: value})`` series against step."""
    width, height, left, right, top, bottom = 760, 440, 70, 170, 40, 50
    pw, ph = width - left - right, height - top - bottom
    steps = sorted({s for _, d in series for s in d})
    if not steps:
        raise ValueError(f"{path}: nothing to plot")
    x0, x1 = steps[0], max(steps[-1], steps[0] + 1)
    shown = [v for _, d in series for s, v in d.items() if y_from is None or s >= y_from]
    y0, y1 = min(shown), max(shown)
    pad = (y1 - y0) * 0.05 or 0.01
    y0, y1 = y0 - pad, y1 + pad

    def px(s: float) -> float:
        return left + (s - x0) / (x1 - x0) * pw

    def py(v: float) -> float:
        return top + (1 - (min(max(v, y0), y1) - y0) / (y1 - y0)) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left + pw / 2:.1f}" y="22" text-anchor="middle" font-size="14">{escape(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for v in _ticks(y0, y1):
        y = py(v)
        out.append(f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{v:.3f}</text>')
    for s in _ticks(x0, x1):
        x = px(s)
        out.append(f'<text x="{x:.1f}" y="{top + ph + 18}" text-anchor="middle">{s:.0f}</text>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 10}" text-anchor="middle">step</text>')
    out.append(f'<text x="16" y="{top + ph / 2:.1f}" text-anchor="middle" '
               f'transform="rotate(-90 16 {top + ph / 2:.1f})">{escape(y_label)}</text>')
    for i, (label, data) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        pts = " ".join(f"{px(s):.1f},{py(v):.1f}" for s, v in sorted(data.items()))
        if pts:
            out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{pts}"/>')
        ly = top + 14 + 20 * i
        out.append(f'<line x1="{left + pw + 12}" y1="{ly}" x2="{left + pw + 36}" y2="{ly}" stroke="{color}" '
                   f'stroke-width="2"/>')
        out.append(f'<text x="{left + pw + 42}" y="{ly + 4}">{escape(label)}</text>')
    out.append("</svg>")
    Path(path).write_text("\n".join(out) + "\n")
