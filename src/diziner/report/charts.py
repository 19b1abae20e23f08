"""Small hand-built SVG charts (no plotting library, no external resources).

Each function returns an SVG string whose every piece of text is escaped, so labels
taken from run files (annotator ids, categories) cannot inject markup. Colours follow
the Okabe–Ito palette, which stays distinguishable for colour-blind readers.
"""
from __future__ import annotations

import math
from html import escape

__all__ = ["PALETTE", "grouped_bars", "heatmap", "line_chart", "stacked_bars"]

PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
           "#999999", "#882255", "#44AA99", "#117733"]


def _e(s: object) -> str:
    return escape(str(s), quote=True)


def _fmt(v: float) -> str:
    return f"{v:.3f}".rstrip("0").rstrip(".") if v != int(v) else str(int(v))


def _svg_open(w: int, h: int, title: str) -> list[str]:
    return [(f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {w} {h}" width="{w}" '
             f'height="{h}" role="img" aria-label="{_e(title)}"><title>{_e(title)}</title>'),
            f'<text x="{w / 2:.1f}" y="16" text-anchor="middle" class="ct">{_e(title)}</text>']


def _legend(names: list[str], colors: dict[str, str], x: float, y: float, dashed: set[str] = frozenset()) -> list[str]:
    out = []
    for i, n in enumerate(names):
        yy = y + i * 16
        dash = ' stroke-dasharray="4 3"' if n in dashed else ""
        out.append(f'<line x1="{x:.1f}" y1="{yy:.1f}" x2="{x + 18:.1f}" y2="{yy:.1f}" stroke="{colors[n]}" '
                   f'stroke-width="3"{dash}/>')
        out.append(f'<text x="{x + 24:.1f}" y="{yy + 4:.1f}" class="cl">{_e(n)}</text>')
    return out


def line_chart(series: dict[str, list[tuple[float, float]]], title: str, y_label: str = "",
               y_range: tuple[float, float] = (0.0, 1.0), dashed: set[str] | None = None,
               x_label: str = "iteration") -> str:
    """Lines with point markers; x values are iterations (integers)."""
    dashed = dashed or set()
    names = list(series)
    colors = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}
    w, h = 640, 300
    left, right, top, bottom = 50, 170, 28, 40
    pw, ph = w - left - right, h - top - bottom
    xs = sorted({x for pts in series.values() for x, _ in pts}) or [0]
    x0, x1 = min(xs), max(xs)
    lo, hi = y_range

    def px(x: float) -> float:
        return left + (pw / 2 if x1 == x0 else (x - x0) / (x1 - x0) * pw)

    def py(y: float) -> float:
        return top + ph - (min(max(y, lo), hi) - lo) / ((hi - lo) or 1) * ph

    out = _svg_open(w, h, title)
    for k in range(6):
        v = lo + (hi - lo) * k / 5
        out.append(f'<line x1="{left}" y1="{py(v):.1f}" x2="{left + pw}" y2="{py(v):.1f}" class="grid"/>')
        out.append(f'<text x="{left - 6}" y="{py(v) + 4:.1f}" text-anchor="end" class="ax">{_fmt(round(v, 3))}</text>')
    for x in xs:
        out.append(f'<text x="{px(x):.1f}" y="{top + ph + 16}" text-anchor="middle" class="ax">{_e(_fmt(x))}</text>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{h - 6}" text-anchor="middle" class="ax">{_e(x_label)}</text>')
    if y_label:
        out.append(f'<text transform="translate(12 {top + ph / 2:.1f}) rotate(-90)" text-anchor="middle" '
                   f'class="ax">{_e(y_label)}</text>')
    for n in names:
        pts = sorted(series[n])
        if not pts:
            continue
        dash = ' stroke-dasharray="5 4"' if n in dashed else ""
        d = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{d}" fill="none" stroke="{colors[n]}" stroke-width="2"{dash}/>')
        for x, y in pts:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{colors[n]}">'
                       f'<title>{_e(n)}, {_e(x_label)} {_e(_fmt(x))}: {_fmt(round(y, 4))}</title></circle>')
    out += _legend(names, colors, left + pw + 14, top + 8, dashed)
    out.append("</svg>")
    return "".join(out)


def stacked_bars(groups: list[tuple[str, dict[str, int]]], title: str, x_label: str = "iteration") -> str:
    """One stacked bar per group (e.g. per iteration), one colour per category."""
    cats: list[str] = []
    for _, counts in groups:
        for c in counts:
            if c not in cats:
                cats.append(c)
    colors = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(cats)}
    w, h = 640, 300
    left, right, top, bottom = 50, 170, 44, 40
    pw, ph = w - left - right, h - top - bottom
    vmax = max([sum(c.values()) for _, c in groups] + [1])
    step = max(1, math.ceil(vmax / 5))
    vmax = step * math.ceil(vmax / step)
    out = _svg_open(w, h, title)
    for k in range(0, vmax + 1, step):
        y = top + ph - k / vmax * ph
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="ax">{k}</text>')
    n = max(len(groups), 1)
    slot = pw / n
    bw = min(60.0, slot * 0.6)
    for i, (name, counts) in enumerate(groups):
        x = left + slot * i + (slot - bw) / 2
        base = 0
        for c in cats:
            v = counts.get(c, 0)
            if v <= 0:
                continue
            y = top + ph - (base + v) / vmax * ph
            hh = v / vmax * ph
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw:.1f}" height="{hh:.1f}" fill="{colors[c]}">'
                       f'<title>{_e(name)} — {_e(c)}: {v}</title></rect>')
            base += v
        out.append(f'<text x="{x + bw / 2:.1f}" y="{top + ph + 16}" text-anchor="middle" class="ax">{_e(name)}</text>')
        out.append(f'<text x="{x + bw / 2:.1f}" y="{top + ph - base / vmax * ph - 4:.1f}" text-anchor="middle" '
                   f'class="ax">{base}</text>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{h - 6}" text-anchor="middle" class="ax">{_e(x_label)}</text>')
    for i, c in enumerate(cats):
        yy = top + 8 + i * 16
        out.append(f'<rect x="{left + pw + 14}" y="{yy - 6}" width="14" height="12" fill="{colors[c]}"/>')
        out.append(f'<text x="{left + pw + 34}" y="{yy + 4}" class="cl">{_e(c)}</text>')
    out.append("</svg>")
    return "".join(out)


def grouped_bars(names: list[str], series: dict[str, dict[str, float]], title: str,
                 y_range: tuple[float, float] = (0.0, 1.0)) -> str:
    """Bars per name (e.g. annotator), one bar per series (e.g. agreement, weight)."""
    snames = list(series)
    colors = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(snames)}
    w, h = 640, 300
    left, right, top, bottom = 50, 170, 28, 56
    pw, ph = w - left - right, h - top - bottom
    lo, hi = y_range
    out = _svg_open(w, h, title)
    for k in range(6):
        v = lo + (hi - lo) * k / 5
        y = top + ph - (v - lo) / ((hi - lo) or 1) * ph
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="ax">{_fmt(round(v, 3))}</text>')
    slot = pw / max(len(names), 1)
    bw = min(28.0, slot * 0.8 / max(len(snames), 1))
    for i, n in enumerate(names):
        x0 = left + slot * i + (slot - bw * len(snames)) / 2
        for j, s in enumerate(snames):
            v = series[s].get(n)
            if v is None:
                continue
            vv = min(max(v, lo), hi)
            hh = (vv - lo) / ((hi - lo) or 1) * ph
            out.append(f'<rect x="{x0 + j * bw:.1f}" y="{top + ph - hh:.1f}" width="{bw - 1:.1f}" height="{hh:.1f}" '
                       f'fill="{colors[s]}"><title>{_e(n)} — {_e(s)}: {_fmt(round(v, 4))}</title></rect>')
        out.append(f'<text transform="translate({left + slot * i + slot / 2:.1f} {top + ph + 12}) rotate(20)" '
                   f'class="ax">{_e(n[:24])}</text>')
    for i, s in enumerate(snames):
        yy = top + 8 + i * 16
        out.append(f'<rect x="{left + pw + 14}" y="{yy - 6}" width="14" height="12" fill="{colors[s]}"/>')
        out.append(f'<text x="{left + pw + 34}" y="{yy + 4}" class="cl">{_e(s)}</text>')
    out.append("</svg>")
    return "".join(out)


def _heat_color(v: float) -> str:
    """White (0) to dark blue (1)."""
    v = min(max(v, 0.0), 1.0)
    r = round(247 + (8 - 247) * v)
    g = round(251 + (48 - 251) * v)
    b = round(255 + (107 - 255) * v)
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(names: list[str], matrix: list[list[float | None]], title: str) -> str:
    """A square matrix of values in [0, 1] (pairwise F1), each cell labelled."""
    n = len(names)
    cell = max(34, min(64, 420 // max(n, 1)))
    left, top = 150, 36
    w = left + cell * n + 20
    h = top + cell * n + 80
    out = _svg_open(w, h, title)
    for i, a in enumerate(names):
        out.append(f'<text x="{left - 6}" y="{top + cell * i + cell / 2 + 4:.1f}" text-anchor="end" '
                   f'class="ax">{_e(a[:22])}</text>')
        out.append(f'<text transform="translate({left + cell * i + cell / 2:.1f} {top + cell * n + 10}) rotate(45)" '
                   f'class="ax">{_e(a[:22])}</text>')
        for j, b in enumerate(names):
            v = matrix[i][j]
            x, y = left + cell * j, top + cell * i
            if v is None:
                out.append(f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="#eeeeee" stroke="#fff"/>')
                continue
            fg = "#ffffff" if v > 0.55 else "#111111"
            out.append(f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{_heat_color(v)}" stroke="#fff">'
                       f'<title>{_e(a)} vs {_e(b)}: {v:.3f}</title></rect>')
            out.append(f'<text x="{x + cell / 2:.1f}" y="{y + cell / 2 + 4:.1f}" text-anchor="middle" '
                       f'fill="{fg}" class="hv">{v:.2f}</text>')
    out.append("</svg>")
    return "".join(out)
