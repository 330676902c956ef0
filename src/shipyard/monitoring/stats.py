"""Drift statistics, vectorised over many columns at once.

Definitions (the user guide, docs/monitoring.md, states the same):

* **PSI** — Σ (A − E)·ln(A / E) over bins defined on the reference only: inner edges at the
  1/10 … 9/10 quantiles of the reference (``np.quantile``, linear interpolation), duplicates
  dropped, right-closed bins ``(lo, hi]`` with the outer ones open to ±∞; categoricals get one bin
  per reference category plus ``__unseen__``; missing values their own ``__missing__`` bin when
  either side has any. A share of 0 is replaced by ``eps`` = 1e-4 in its term. The same numbers
  as :func:`shipyard.risk.metrics.psi`.
* **Jensen–Shannon distance** — on the PSI bins, base 2 (so it lies in [0, 1]); equal to
  ``scipy.spatial.distance.jensenshannon(p, q, base=2)``.
* **KS** — two-sample Kolmogorov–Smirnov statistic on the non-missing values, equal to
  ``scipy.stats.ks_2samp``; the p-value is scipy's (exact up to 10,000 rows a side, else ``kstwo``).
* **Wasserstein (normed)** — ``scipy.stats.wasserstein_distance(ref, cur)`` divided by the
  reference's standard deviation (ddof 0, floored at 0.001 as Evidently does).
* **Chi-square** — ``scipy.stats.chi2_contingency`` on the 2 × k table of category counts
  (reference, current), with scipy's Yates correction when k = 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats as _sp

PSI_EPSILON = 1e-4
DEFAULT_BINS = 10
JS_BASE = 2.0
WASSERSTEIN_STD_FLOOR = 0.001
KS_EXACT_MAX_N = 10_000
# merged-sort work arrays are (rows × columns); columns are taken in groups of about this many cells
_CELLS_PER_CHUNK = 8_000_000


def quantile_edges(values: np.ndarray, bins: int = DEFAULT_BINS) -> list[np.ndarray]:
    """Inner bin edges per column of ``values`` (rows × columns): quantiles of the non-missing values."""
    qs = np.linspace(0, 1, bins + 1)[1:-1]
    return [np.unique(q) for q in column_quantiles(values, qs)]


def column_quantiles(values: np.ndarray, qs: np.ndarray) -> list[np.ndarray]:
    """``np.quantile`` (linear) of each column's non-missing values at ``qs`` — one call per column."""
    out = []
    for j in range(values.shape[1]):
        col = values[:, j]
        col = col[~np.isnan(col)]
        out.append(np.quantile(col, qs) if col.size and len(qs) else np.array([], dtype=float))
    return out


def bin_counts(col: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, int]:
    """Counts of ``col`` in the right-closed bins of ``edges`` (len(edges) + 1 bins) and its missing count."""
    missing = np.isnan(col)
    n_missing = int(missing.sum())
    present = col[~missing] if n_missing else col
    idx = np.searchsorted(edges, present, side="left")
    return np.bincount(idx, minlength=len(edges) + 1).astype(np.int64), n_missing


def psi_terms(expected: np.ndarray, actual: np.ndarray, eps: float = PSI_EPSILON) -> np.ndarray:
    """Per-bin PSI terms from bin counts (any shape, bins on the last axis)."""
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        ep = e / e.sum(axis=-1, keepdims=True)
        ap = a / a.sum(axis=-1, keepdims=True)
    ep = np.where(ep > 0, ep, eps)
    ap = np.where(ap > 0, ap, eps)
    return (ap - ep) * np.log(ap / ep)


def psi_from_counts(expected: np.ndarray, actual: np.ndarray, eps: float = PSI_EPSILON) -> np.ndarray:
    return psi_terms(expected, actual, eps).sum(axis=-1)


def js_from_counts(expected: np.ndarray, actual: np.ndarray, base: float = JS_BASE) -> np.ndarray:
    """Jensen–Shannon distance between two count vectors (bins on the last axis)."""
    p = np.asarray(expected, dtype=float)
    q = np.asarray(actual, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = p / p.sum(axis=-1, keepdims=True)
        q = q / q.sum(axis=-1, keepdims=True)
    m = (p + q) / 2.0
    js = _rel_entr(p, m).sum(axis=-1) + _rel_entr(q, m).sum(axis=-1)
    js = js / np.log(base)
    return np.sqrt(np.maximum(js, 0.0) / 2.0)


def _rel_entr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    from scipy.special import rel_entr

    return rel_entr(x, y)


def ks_wasserstein(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """KS statistic and Wasserstein-1 distance per column of two float matrices (NaN = missing).

    One merged sort per group of columns: ``c1/n1 − c2/n2`` at the end of each run of equal values
    is F_ref − F_cur there (the KS gap), and Σ |gap|·(next value − value) is the area between the
    CDFs (Wasserstein-1). Returns (ks, wasserstein, n_ref, n_cur) per column. The work arrays hold
    one column per row, so every sort and running sum walks contiguous memory.
    """
    n1_rows, k = reference.shape
    n1 = (~np.isnan(reference)).sum(axis=0)
    n2 = (~np.isnan(current)).sum(axis=0)
    ks = np.full(k, np.nan)
    wd = np.full(k, np.nan)
    step = max(1, _CELLS_PER_CHUNK // max(1, n1_rows + current.shape[0]))
    for start in range(0, k, step):
        sl = slice(start, min(k, start + step))
        both = np.concatenate([reference[:, sl].T, current[:, sl].T], axis=1)
        order = np.argsort(both, axis=1)
        vals = np.take_along_axis(both, order, axis=1)
        del both
        valid = ~np.isnan(vals)
        from_ref = order < n1_rows
        del order
        c1 = np.cumsum(from_ref & valid, axis=1)
        c2 = np.cumsum(~from_ref & valid, axis=1)
        del from_ref
        a, b = n1[sl][:, None], n2[sl][:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            gap = c1 / a - c2 / b
        del c1, c2
        last = np.ones_like(valid)
        last[:, :-1] = vals[:, 1:] != vals[:, :-1]
        ks[sl] = np.max(np.where(last & valid, np.abs(gap), 0.0), axis=1)
        widths = np.diff(vals, axis=1)
        widths[~valid[:, 1:]] = 0.0
        wd[sl] = np.sum(np.abs(gap[:, :-1]) * widths, axis=1)
        empty = (n1[sl] == 0) | (n2[sl] == 0)
        ks[sl][empty] = np.nan
        wd[sl][empty] = np.nan
    return ks, wd, n1, n2


def ks_pvalue(d: float, n1: int, n2: int, reference: np.ndarray | None = None,
              current: np.ndarray | None = None) -> float:
    """Two-sided p-value of the KS statistic ``d`` as ``scipy.stats.ks_2samp`` computes it (the
    exact distribution up to 10,000 rows a side, Smirnov's asymptotic ``kstwo`` above)."""
    if not n1 or not n2 or not np.isfinite(d):
        return float("nan")
    if max(n1, n2) <= KS_EXACT_MAX_N and reference is not None and current is not None:
        # scipy's own choice: the exact distribution up to 10,000 rows a side
        return float(_sp.ks_2samp(reference, current).pvalue)
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    return float(np.clip(_sp.kstwo.sf(d, np.round(en)), 0.0, 1.0))


def chi2_contingency(expected: np.ndarray, actual: np.ndarray) -> tuple[float, float, int]:
    """Chi-square statistic, p-value and degrees of freedom of the 2 × k table (reference, current).

    Categories absent from both sides are left out; with one category left the test has no
    degrees of freedom (statistic 0, p-value 1), as scipy reports.
    """
    table = np.vstack([np.asarray(expected, dtype=float), np.asarray(actual, dtype=float)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0, 0
    total = table.sum()
    exp = np.outer(table.sum(axis=1), table.sum(axis=0)) / total
    dof = table.shape[1] - 1
    obs = table
    if dof == 1:
        diff = exp - obs
        obs = obs + np.minimum(0.5, np.abs(diff)) * np.sign(diff)
    stat = float(np.sum((obs - exp) ** 2 / exp))
    return stat, float(_sp.chi2.sf(stat, dof)), dof


def wasserstein_norm(wd: np.ndarray | float, ref_std: np.ndarray | float) -> np.ndarray:
    return np.asarray(wd, dtype=float) / np.maximum(np.asarray(ref_std, dtype=float), WASSERSTEIN_STD_FLOOR)


def binned_ks_wasserstein(edges: np.ndarray, expected: np.ndarray, actual: np.ndarray,
                          lo: float, hi: float) -> tuple[float, float]:
    """KS and Wasserstein-1 from counts on shared fine bins (the stored-baseline approximation).

    The CDFs are known at the bin edges only: KS is their largest gap there (a lower bound of the
    exact one, off by at most the largest bin share), and Wasserstein integrates the gap with both
    CDFs linear inside each bin (values spread evenly in a bin); the outer bins end at ``lo`` and
    ``hi`` (the smallest and largest value seen on either side).
    """
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    if e.sum() == 0 or a.sum() == 0:
        return float("nan"), float("nan")
    gap = np.concatenate([[0.0], np.cumsum(e) / e.sum() - np.cumsum(a) / a.sum()])
    gap[-1] = 0.0
    ks = float(np.abs(gap).max())
    inner = np.asarray(edges, dtype=float)
    bounds = np.concatenate([[min(lo, inner[0]) if inner.size else lo], inner,
                             [max(hi, inner[-1]) if inner.size else hi]])
    width = np.diff(bounds)
    g0, g1 = gap[:-1], gap[1:]
    s0, s1 = np.abs(g0), np.abs(g1)
    same = g0 * g1 >= 0
    with np.errstate(invalid="ignore", divide="ignore"):
        crossing = np.where(s0 + s1 > 0, (g0 ** 2 + g1 ** 2) / (2 * (s0 + s1)), 0.0)
    area = np.where(same, (s0 + s1) / 2, crossing)
    return ks, float(np.sum(area * width))


def category_counts(ref: Sequence[object], cur: Sequence[object]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Aligned counts of two categorical samples over the union of categories (missing left out)."""
    import pandas as pd

    r = pd.Series(ref, dtype="object").dropna().astype(str).value_counts()
    c = pd.Series(cur, dtype="object").dropna().astype(str).value_counts()
    cats = sorted(set(r.index) | set(c.index))
    return cats, r.reindex(cats, fill_value=0).to_numpy(np.int64), c.reindex(cats, fill_value=0).to_numpy(np.int64)
