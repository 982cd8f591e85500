"""Small inline SVG charts for the bench's HTML pages: no script, no external asset, so a
page opens the same on an air-gapped box. Grouped bars (with min-max whiskers) and lines."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

__all__ = ["PALETTE", "bar_chart", "line_chart"]

PALETTE = ("#3b6fb6", "#e07b39", "#4a9d5b", "#b5485d", "#7d5ba6", "#8c8c3a")
W, H = 560, 260
LEFT, RIGHT, TOP, BOTTOM = 58, 16, 34, 52


def _nice_max(v: float) -> float:
    if v <= 0 or not math.isfinite(v):
        return 1.0
    mag = 10 ** math.floor(math.log10(v))
    return next(m * mag for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * mag >= v)


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def _frame(title: str, unit: str, ymax: float) -> list[str]:
    plot_h = H - TOP - BOTTOM
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           f'role="img" aria-label="{escape(title)}" class="chart">',
           f'<rect x="0" y="0" width="{W}" height="{H}" fill="#ffffff"/>',
           f'<text x="{LEFT}" y="20" font-size="14" font-weight="bold" fill="#222">{escape(title)}</text>']
    for i in range(5):
        v = ymax * i / 4
        y = TOP + plot_h - plot_h * i / 4
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e3e3"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="#555">'
                   f'{_fmt(v)}</text>')
    out.append(f'<text x="14" y="{TOP + plot_h / 2:.0f}" font-size="11" fill="#555" text-anchor="middle" '
               f'transform="rotate(-90 14 {TOP + plot_h / 2:.0f})">{escape(unit)}</text>')
    out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" stroke="#888"/>')
    return out


def _legend(names: Sequence[str]) -> list[str]:
    out, x = [], LEFT
    for i, name in enumerate(names):
        color = PALETTE[i % len(PALETTE)]
        out.append(f'<rect x="{x}" y="{H - 16}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{x + 14}" y="{H - 7}" font-size="11" fill="#333">{escape(name)}</text>')
        x += 24 + 7 * len(name)
    return out


def bar_chart(title: str, categories: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]],
              unit: str, whiskers: Sequence[Sequence[tuple[float, float] | None]] | None = None) -> str:
    """Grouped bars: one group per category, one bar per series (None: no bar), each
    labelled with its value; `whiskers[s][c]` = (min, max) drawn over bar c of series s."""
    values = [v for _, vs in series for v in vs if v is not None]
    tops = [hi for ws in (whiskers or []) for w in ws if w for hi in (w[1],)]
    ymax = _nice_max(max(values + tops, default=1.0))
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    out = _frame(title, unit, ymax)
    group_w = plot_w / max(1, len(categories))
    bar_w = min(48.0, group_w * 0.8 / max(1, len(series)))
    for c, cat in enumerate(categories):
        x0 = LEFT + c * group_w + (group_w - bar_w * len(series)) / 2
        for s, (_, vs) in enumerate(series):
            v = vs[c] if c < len(vs) else None
            if v is None:
                continue
            h = plot_h * max(0.0, v) / ymax
            x, y = x0 + s * bar_w, TOP + plot_h - h
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" '
                       f'fill="{PALETTE[s % len(PALETTE)]}"/>')
            w = whiskers[s][c] if whiskers and s < len(whiskers) and c < len(whiskers[s]) else None
            if w:
                cx = x + (bar_w - 2) / 2
                y_lo, y_hi = (TOP + plot_h - plot_h * max(0.0, b) / ymax for b in w)
                out.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y_lo:.1f}" y2="{y_hi:.1f}" stroke="#222"/>')
            out.append(f'<text x="{x + (bar_w - 2) / 2:.1f}" y="{y - 4:.1f}" font-size="10" text-anchor="middle" '
                       f'fill="#222">{_fmt(v)}</text>')
        out.append(f'<text x="{LEFT + (c + 0.5) * group_w:.1f}" y="{TOP + plot_h + 16}" font-size="11" '
                   f'text-anchor="middle" fill="#333">{escape(cat)}</text>')
    return "\n".join(out + _legend([name for name, _ in series]) + ["</svg>"])


def line_chart(title: str, series: Sequence[tuple[str, Sequence[tuple[float, float | None]]]], unit: str,
               x_label: str, hline: tuple[str, float] | None = None) -> str:
    """Lines over a shared x axis (points with a None y are gaps), with an optional
    dashed horizontal reference line (label, y)."""
    xs = [x for _, pts in series for x, y in pts if y is not None]
    ys = [y for _, pts in series for _, y in pts if y is not None] + ([hline[1]] if hline else [])
    ymax = _nice_max(max(ys, default=1.0))
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    x_hi = x_hi if x_hi > x_lo else x_lo + 1
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    out = _frame(title, unit, ymax)

    def px(x: float, y: float) -> str:
        return f"{LEFT + plot_w * (x - x_lo) / (x_hi - x_lo):.1f},{TOP + plot_h - plot_h * y / ymax:.1f}"

    for s, (_, pts) in enumerate(series):
        color = PALETTE[s % len(PALETTE)]
        run: list[str] = []
        for x, y in [*pts, (0.0, None)]:
            if y is None:
                if len(run) > 1:
                    out.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{color}" stroke-width="2"/>')
                run = []
                continue
            point = px(x, y)
            run.append(point)
            cx, cy = point.split(",")
            out.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{color}"/>')
    if hline:
        y = TOP + plot_h - plot_h * hline[1] / ymax
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#c00" '
                   f'stroke-dasharray="6 4"/>')
        out.append(f'<text x="{W - RIGHT - 4}" y="{y - 4:.1f}" font-size="11" text-anchor="end" fill="#c00">'
                   f'{escape(hline[0])}</text>')
    out.append(f'<text x="{LEFT}" y="{TOP + plot_h + 16}" font-size="11" fill="#555">{_fmt(x_lo)}</text>')
    out.append(f'<text x="{W - RIGHT}" y="{TOP + plot_h + 16}" font-size="11" text-anchor="end" fill="#555">'
               f'{_fmt(x_hi)}</text>')
    out.append(f'<text x="{LEFT + plot_w / 2:.0f}" y="{TOP + plot_h + 30}" font-size="11" text-anchor="middle" '
               f'fill="#555">{escape(x_label)}</text>')
    return "\n".join(out + _legend([name for name, _ in series]) + ["</svg>"])
