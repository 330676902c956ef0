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
    neg = -np.inf
    dp = np.full((m + 1, m + 1), neg)
    dp[0, :] = iv[0, :]
    best_val, best_k, best_i = (dp[0, m], 1, 0) if np.isfinite(dp[0, m]) else (neg, 0, -1)
    back: list[np.ndarray] = []
    if trend is not None:
        # cond[h, i, j]: the bin h..i-1 followed by the bin i..j-1 respects the trend
        r_prev = rate[:, :, None]
        r_next = rate[None, :, :]
        with np.errstate(invalid="ignore"):
            cond = (r_prev < r_next) if trend == "ascending" else (r_prev > r_next)
    for k in range(2, max_bins + 1):
        if trend is None:
            arg = np.argmax(dp, axis=0)  # best h for each i
            prev = dp[arg, np.arange(m + 1)]
            new = iv + prev[:, None]
            argk = np.broadcast_to(arg[:, None], (m + 1, m + 1))
        else:
            cand = np.where(cond, dp[:, :, None], neg)
            argk = np.argmax(cand, axis=0)
            prev = np.take_along_axis(cand, argk[None], axis=0)[0]
            new = iv + prev
        new[~np.isfinite(new)] = neg
        back.append(argk)
        dp = new
        col = dp[:, m]
        i = int(np.argmax(col))
        if col[i] > best_val + 1e-12:
            best_val, best_k, best_i = float(col[i]), k, i
        if not np.isfinite(dp).any():
            break
    if best_k == 0:
        return None, neg
    # backtrack
    cuts: list[int] = []
    j, i = m, best_i
    for k in range(best_k, 1, -1):
        cuts.append(i)
        h = int(back[k - 2][i, j])
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
