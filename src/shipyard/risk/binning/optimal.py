"""Exact optimal binning over pre-bins by dynamic programming.

Maximise ``IV = sum over bins`` subject to: every bin holds at least ``min_n`` rows and both
classes, at most ``max_bins`` bins, and (optionally) a bad rate that is strictly ascending or
descending from bin to bin. IV is additive over bins, so with ``m`` pre-bins the state
"``k`` bins cover pre-bins ``0..j-1`` and the last bin is ``i..j-1``" gives an exact
``O(K * m**3)`` vectorised recursion (``m`` is at most a few hundred, typically 50–100).
"""

from __future__ import annotations

import numpy as np

from shipyard.risk.woe import iv_terms


def _solve(iv: np.ndarray, rate: np.ndarray, m: int, max_bins: int, trend: str | None):
    """Exact DP. ``dp[i, j]`` = best IV with the last bin covering pre-bins ``i..j-1``.

    With a trend, the predecessor bin ``h..i-1`` must have a strictly smaller (ascending) or larger
    (descending) bad rate than ``i..j-1``. For each ``i`` the predecessors are sorted by rate once;
    a prefix maximum over that order plus one batched ``searchsorted`` answers every ``(i, j)``
    query, so each extra bin costs ``O(m**2)``.
    """
    neg = -np.inf
    size = m + 1
    dp = np.full((size, size), neg)
    dp[0, :] = iv[0, :]
    layers = [dp]
    best_val, best_k, best_i = (dp[0, m], 1, 0) if np.isfinite(dp[0, m]) else (neg, 0, -1)
    if trend is not None:
        key = rate if trend == "ascending" else 1.0 - rate  # predecessor key must be < query key
        key_prev = np.where(np.isnan(key), 1.5, key)  # invalid predecessors sort last
        order = np.argsort(key_prev, axis=0, kind="stable")  # per column i, over h
        sorted_keys = np.take_along_axis(key_prev, order, axis=0)
        offs = 2.0 * np.arange(size)
        flat_keys = (sorted_keys + offs[None, :]).T.ravel()  # column i occupies [i*size, (i+1)*size)
        q = np.where(np.isnan(key), 0.0, key) + offs[:, None]  # query for (i, j)
        pos = np.searchsorted(flat_keys, q.ravel(), side="left").reshape(size, size)
        pos = pos - (np.arange(size) * size)[:, None]  # number of predecessors with key < query
        has = pos > 0
        gather = np.where(has, pos - 1, 0)
    for _k in range(2, max_bins + 1):
        if trend is None:
            prev = dp.max(axis=0)
            new = iv + prev[:, None]
        else:
            run = np.maximum.accumulate(np.take_along_axis(dp, order, axis=0), axis=0)  # [rank, i]
            colmax = run.T  # [i, rank]
            prev = np.take_along_axis(colmax, gather, axis=1)
            new = np.where(has, iv + prev, neg)
        new[~np.isfinite(new)] = neg
        dp = new
        layers.append(dp)
        col = dp[:, m]
        i = int(np.argmax(col))
        if col[i] > best_val + 1e-12:
            best_val, best_k, best_i = float(col[i]), len(layers), i
        if not np.isfinite(col).any() and not np.isfinite(dp).any():
            break
    if best_k == 0:
        return None, neg
    cuts: list[int] = []
    j, i = m, best_i
    for k in range(best_k, 1, -1):
        cuts.append(i)
        target = layers[k - 1][i, j] - iv[i, j]
        prev_layer = layers[k - 2][:, i]
        ok = np.isfinite(prev_layer)
        if trend is not None:
            with np.errstate(invalid="ignore"):
                ok &= (rate[:, i] < rate[i, j]) if trend == "ascending" else (rate[:, i] > rate[i, j])
        cand = np.where(ok, prev_layer, neg)
        h = int(np.argmin(np.where(ok, np.abs(cand - target), np.inf)))
        j, i = i, h
    return sorted(cuts), best_val


def optimal(
    bad: np.ndarray,
    good: np.ndarray,
    max_bins: int,
    min_n: float,
    trend: str | None = "auto",
    total_bad: float | None = None,
    total_good: float | None = None,
) -> list[int]:
    """Boundary positions of the IV-maximising binning; ``trend`` is ``None`` (unconstrained),
    ``ascending``, ``descending`` or ``auto`` (whichever of the two monotone trends has more IV).
    Falls back to a single bin when no feasible split exists."""
    bad = np.asarray(bad, dtype=np.float64)
    good = np.asarray(good, dtype=np.float64)
    m = len(bad)
    if m < 2 or max_bins < 2:
        return []
    tb = float(bad.sum()) if total_bad is None else total_bad
    tg = float(good.sum()) if total_good is None else total_good
    cb = np.concatenate([[0.0], np.cumsum(bad)])
    cg = np.concatenate([[0.0], np.cumsum(good)])
    sb = cb[None, :] - cb[:, None]
    sg = cg[None, :] - cg[:, None]
    n = sb + sg
    ii, jj = np.indices((m + 1, m + 1))
    valid = (jj > ii) & (n >= min_n) & (sb > 0) & (sg > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(valid, sb / n, np.nan)
        iv = np.where(valid, iv_terms(sb, sg, tb, tg), -np.inf)
    trends = ["ascending", "descending"] if trend == "auto" else [trend]
    best: tuple[list[int] | None, float] = (None, -np.inf)
    for t in trends:
        cuts, val = _solve(iv, rate, m, max_bins, t)
        if cuts is not None and val > best[1] + 1e-12:
            best = (cuts, val)
    return best[0] if best[0] is not None else []
