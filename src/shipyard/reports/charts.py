"""Inline SVG charts for self-contained reports: line charts, bar charts and histograms.

Each helper returns one ``<svg>`` string with no external references (no scripts, fonts or CDNs), so
a report opens offline. Values are plotted as given; NaN points are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

import numpy as np

__all__ = ["PALETTE", "bar_chart", "heatmap", "histogram", "line_chart"]

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
_M = {"left": 56, "right": 16, "top": 30, "bottom": 44}


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 12))
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e6 or a < 1e-3:
        return f"{v:.2g}"
    if a >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _frame(width: int, height: int, title: str, x_label: str, y_label: str) -> list[str]:
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11" role="img">'
    ]
    if title:
        parts.append(f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13" '
                     f'font-weight="bold">{escape(title)}</text>')
    if x_label:
        parts.append(f'<text x="{_M["left"] + (width - _M["left"] - _M["right"]) / 2}" y="{height - 6}" '
                     f'text-anchor="middle">{escape(x_label)}</text>')
    if y_label:
        cy = _M["top"] + (height - _M["top"] - _M["bottom"]) / 2
        parts.append(f'<text x="12" y="{cy}" text-anchor="middle" '
                     f'transform="rotate(-90 12 {cy})">{escape(y_label)}</text>')
    return parts


def _y_axis(parts: list[str], ticks: list[float], sy: Any, x0: float, x1: float) -> None:
    for t in ticks:
        y = sy(t)
        parts.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        parts.append(f'<text x="{x0 - 4}" y="{y + 3:.1f}" text-anchor="end">{_fmt(t)}</text>')


def _legend(parts: list[str], names: Sequence[str], x: float, y: float) -> None:
    for i, name in enumerate(names):
        c = PALETTE[i % len(PALETTE)]
        yy = y + 14 * i
        parts.append(f'<rect x="{x}" y="{yy - 8}" width="10" height="10" fill="{c}"/>')
        parts.append(f'<text x="{x + 14}" y="{yy + 1}">{escape(str(name))}</text>')


def line_chart(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    width: int = 480,
    height: int = 300,
    diagonal: bool = False,
    y_range: tuple[float, float] | None = None,
    x_range: tuple[float, float] | None = None,
    max_points: int = 600,
) -> str:
    """Lines, one per ``name -> (x, y)`` entry, on shared axes.

    ``diagonal`` draws the dashed y = x reference (for ROC and gain curves). Series longer than
    ``max_points`` are thinned evenly (first and last points kept) to keep the SVG small.
    """
    clean: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, (xs, ys) in series.items():
        x = np.asarray(xs, dtype=float)
        y = np.asarray(ys, dtype=float)
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        if len(x) > max_points:
            idx = np.unique(np.linspace(0, len(x) - 1, max_points).round().astype(int))
            x, y = x[idx], y[idx]
        clean[name] = (x, y)
    allx = np.concatenate([v[0] for v in clean.values()] or [np.array([0.0, 1.0])])
    ally = np.concatenate([v[1] for v in clean.values()] or [np.array([0.0, 1.0])])
    if len(allx) == 0:
        allx, ally = np.array([0.0, 1.0]), np.array([0.0, 1.0])
    xlo, xhi = x_range or (float(allx.min()), float(allx.max()))
    ylo, yhi = y_range or (float(min(ally.min(), 0.0)), float(ally.max()))
    xt, yt = _nice_ticks(xlo, xhi), _nice_ticks(ylo, yhi)
    xlo, xhi = (xlo, xhi) if x_range else (xt[0], xt[-1])
    ylo, yhi = (ylo, yhi) if y_range else (yt[0], yt[-1])
    x0, x1 = _M["left"], width - _M["right"]
    y0, y1 = height - _M["bottom"], _M["top"]
    xspan, yspan = (xhi - xlo) or 1.0, (yhi - ylo) or 1.0

    def sx(v: float) -> float:
        return x0 + (v - xlo) / xspan * (x1 - x0)

    def sy(v: float) -> float:
        return y0 - (v - ylo) / yspan * (y0 - y1)

    parts = _frame(width, height, title, x_label, y_label)
    _y_axis(parts, [t for t in yt if ylo <= t <= yhi], sy, x0, x1)
    for t in xt:
        if xlo <= t <= xhi:
            parts.append(f'<text x="{sx(t):.1f}" y="{y0 + 14}" text-anchor="middle">{_fmt(t)}</text>')
    parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#333"/>')
    parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#333"/>')
    if diagonal:
        lo, hi = max(xlo, ylo), min(xhi, yhi)
        parts.append(f'<line x1="{sx(lo):.1f}" y1="{sy(lo):.1f}" x2="{sx(hi):.1f}" y2="{sy(hi):.1f}" '
                     'stroke="#999" stroke-dasharray="4 3"/>')
    for i, (_name, (x, y)) in enumerate(clean.items()):
        if len(x) == 0:
            continue
        pts = " ".join(f"{sx(a):.1f},{sy(b):.1f}" for a, b in zip(x, y, strict=True))
        parts.append(f'<polyline fill="none" stroke="{PALETTE[i % len(PALETTE)]}" stroke-width="1.8" '
                     f'points="{pts}"/>')
    if len(clean) > 1:
        _legend(parts, list(clean), x0 + 10, y1 + 10)
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    labels: Sequence[Any],
    values: Sequence[float] | Mapping[str, Sequence[float]],
    *,
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    line: Sequence[float] | None = None,
    line_label: str = "",
    width: int = 480,
    height: int = 300,
    rotate_labels: bool | None = None,
) -> str:
    """Vertical bars per label; ``values`` may be one sequence or ``name -> sequence`` (grouped bars).

    ``line`` overlays a second series on its own right-hand scale (e.g. bad rate over counts).
    """
    groups = dict(values) if isinstance(values, Mapping) else {"": values}
    arrays = {k: np.nan_to_num(np.asarray(v, dtype=float)) for k, v in groups.items()}
    n = len(labels)
    vmax = max([float(a.max()) for a in arrays.values() if len(a)] + [0.0])
    vmin = min([float(a.min()) for a in arrays.values() if len(a)] + [0.0])
    yt = _nice_ticks(vmin, vmax if vmax > vmin else vmin + 1)
    ylo, yhi = yt[0], yt[-1]
    rotate = (n > 8 or max((len(str(s)) for s in labels), default=0) > 6) if rotate_labels is None \
        else rotate_labels
    bottom = _M["bottom"] + (40 if rotate else 0)
    right = _M["right"] + (40 if line is not None else 0)
    x0, x1 = _M["left"], width - right
    y0, y1 = height - bottom, _M["top"]

    def sy(v: float) -> float:
        return y0 - (v - ylo) / ((yhi - ylo) or 1.0) * (y0 - y1)

    parts = _frame(width, height, title, "" if rotate else x_label, y_label)
    _y_axis(parts, yt, sy, x0, x1)
    slot = (x1 - x0) / max(n, 1)
    k = len(arrays)
    bw = slot * 0.8 / k
    for j, (_name, arr) in enumerate(arrays.items()):
        color = PALETTE[j % len(PALETTE)]
        for i, v in enumerate(arr):
            xa = x0 + i * slot + slot * 0.1 + j * bw
            ya, yb = sy(max(v, 0.0)), sy(min(v, 0.0))
            parts.append(f'<rect x="{xa:.1f}" y="{ya:.1f}" width="{max(bw - 1, 0.5):.1f}" '
                         f'height="{max(yb - ya, 0):.1f}" fill="{color}"><title>{escape(str(labels[i]))}: '
                         f'{_fmt(float(v))}</title></rect>')
    step = max(1, math.ceil(n / 30))
    for i in range(0, n, step):
        cx = x0 + (i + 0.5) * slot
        lab = escape(str(labels[i])[:18])
        if rotate:
            parts.append(f'<text x="{cx:.1f}" y="{y0 + 10}" text-anchor="end" '
                         f'transform="rotate(-45 {cx:.1f} {y0 + 10})">{lab}</text>')
        else:
            parts.append(f'<text x="{cx:.1f}" y="{y0 + 14}" text-anchor="middle">{lab}</text>')
    parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#333"/>')
    if line is not None:
        lv = np.asarray(line, dtype=float)
        fin = lv[np.isfinite(lv)]
        lt = _nice_ticks(0.0, float(fin.max()) if len(fin) else 1.0)

        def sl(v: float) -> float:
            return y0 - (v - lt[0]) / ((lt[-1] - lt[0]) or 1.0) * (y0 - y1)

        pts = " ".join(f"{x0 + (i + 0.5) * slot:.1f},{sl(v):.1f}" for i, v in enumerate(lv) if np.isfinite(v))
        parts.append(f'<polyline fill="none" stroke="#d62728" stroke-width="2" points="{pts}"/>')
        for t in lt:
            parts.append(f'<text x="{x1 + 4}" y="{sl(t) + 3:.1f}" fill="#d62728">{_fmt(t)}</text>')
        if line_label:
            parts.append(f'<text x="{x1}" y="{y1 - 6}" text-anchor="end" fill="#d62728">'
                         f'{escape(line_label)}</text>')
    if k > 1:
        _legend(parts, list(arrays), x0 + 10, y1 + 10)
    parts.append("</svg>")
    return "".join(parts)


def histogram(
    values: Sequence[float] | np.ndarray,
    bins: int = 20,
    *,
    title: str = "",
    x_label: str = "",
    y_label: str = "count",
    width: int = 480,
    height: int = 260,
    counts: Sequence[float] | None = None,
    edges: Sequence[float] | None = None,
) -> str:
    """Histogram of ``values`` over ``bins`` equal-width bins (NaN/inf ignored).

    Pass precomputed ``counts`` and ``edges`` (len(edges) = len(counts) + 1) instead of values to
    draw a histogram computed elsewhere (e.g. in DuckDB).
    """
    if counts is None or edges is None:
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v)]
        if len(v) == 0:
            c, e = np.zeros(1), np.array([0.0, 1.0])
        else:
            c, e = np.histogram(v, bins=bins)
    else:
        c, e = np.asarray(counts, dtype=float), np.asarray(edges, dtype=float)
    x0, x1 = _M["left"], width - _M["right"]
    y0, y1 = height - _M["bottom"], _M["top"]
    yt = _nice_ticks(0.0, float(c.max()) if len(c) and c.max() > 0 else 1.0)

    def sy(v: float) -> float:
        return y0 - v / (yt[-1] or 1.0) * (y0 - y1)

    lo, hi = float(e[0]), float(e[-1])
    span = (hi - lo) or 1.0

    def sx(v: float) -> float:
        return x0 + (v - lo) / span * (x1 - x0)

    parts = _frame(width, height, title, x_label, y_label)
    _y_axis(parts, yt, sy, x0, x1)
    for i, cnt in enumerate(c):
        xa, xb = sx(float(e[i])), sx(float(e[i + 1]))
        parts.append(f'<rect x="{xa:.1f}" y="{sy(cnt):.1f}" width="{max(xb - xa - 1, 0.5):.1f}" '
                     f'height="{y0 - sy(cnt):.1f}" fill="{PALETTE[0]}"><title>({_fmt(float(e[i]))}, '
                     f'{_fmt(float(e[i + 1]))}]: {int(cnt)}</title></rect>')
    for t in _nice_ticks(lo, hi):
        if lo <= t <= hi:
            parts.append(f'<text x="{sx(t):.1f}" y="{y0 + 14}" text-anchor="middle">{_fmt(t)}</text>')
    parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#333"/>')
    parts.append("</svg>")
    return "".join(parts)


def heatmap(
    matrix: Sequence[Sequence[float]] | np.ndarray,
    labels: Sequence[str],
    *,
    title: str = "",
    cell: int = 0,
    vmin: float = -1.0,
    vmax: float = 1.0,
) -> str:
    """Square matrix as coloured cells (blue negative, white 0, red positive); NaN cells grey.

    Meant for correlation matrices; ``cell`` is the cell size in pixels (auto when 0).
    """
    m = np.asarray(matrix, dtype=float)
    k = len(labels)
    size = cell or max(6, min(28, 560 // max(k, 1)))
    pad_left, pad_top = 120, 24 + (18 if title else 0)
    width, height = pad_left + k * size + 10, pad_top + k * size + 110
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="10" role="img">']
    if title:
        parts.append(f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13" '
                     f'font-weight="bold">{escape(title)}</text>')
    span = (vmax - vmin) or 1.0
    for i in range(k):
        for j in range(k):
            v = m[i, j]
            if not np.isfinite(v):
                color = "#cccccc"
            else:
                t = min(max((v - vmin) / span * 2 - 1, -1.0), 1.0)
                fade = int(255 * (1 - abs(t)))
                color = f"#ff{fade:02x}{fade:02x}" if t >= 0 else f"#{fade:02x}{fade:02x}ff"
            parts.append(f'<rect x="{pad_left + j * size}" y="{pad_top + i * size}" width="{size}" '
                         f'height="{size}" fill="{color}"><title>{escape(str(labels[i]))} × '
                         f'{escape(str(labels[j]))}: {_fmt(float(v)) if np.isfinite(v) else "n/a"}</title></rect>')
    if size >= 8:
        for i, lab in enumerate(labels):
            y = pad_top + i * size + size / 2 + 3
            parts.append(f'<text x="{pad_left - 4}" y="{y:.1f}" text-anchor="end">{escape(str(lab)[:18])}</text>')
            x = pad_left + i * size + size / 2
            yb = pad_top + k * size + 6
            parts.append(f'<text x="{x:.1f}" y="{yb}" text-anchor="end" '
                         f'transform="rotate(-60 {x:.1f} {yb})">{escape(str(lab)[:18])}</text>')
    parts.append("</svg>")
    return "".join(parts)
