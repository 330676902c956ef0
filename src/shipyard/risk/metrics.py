"""Classification metrics for risk models: AUC, KS, Gini, curves, lift/gain tables, PSI.

Conventions used everywhere in this module (and in ``docs/risk-metrics.md``):

* ``y`` is the binary target with **1 = bad** (the event) and 0 = good, read by the toolkit's one
  parser (:mod:`shipyard.risk.target`: 0/1, good/bad, Y/N, yes/no, True/False, or any two values
  with ``bad=`` naming the bad one — every function here takes ``bad=``).
* ``score`` is oriented so that a **higher score means a higher risk** of being bad (a probability of
  default, for instance). Nothing is flipped behind your back: a scorecard whose points grow with
  creditworthiness yields an AUC below 0.5 here. Pass ``-points`` (or use
  ``ModelReport(..., higher_is_bad=False)``) to flip it explicitly.
* Missing or infinite scores are rejected with :class:`~shipyard.errors.InvalidInput`.

All computations are vectorised NumPy (sorting plus cumulative sums); there are no per-row loops.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from shipyard.errors import InvalidInput
from shipyard.risk.target import TargetLabel, ValuesLike, binary_target

__all__ = [
    "KSResult",
    "approval_tradeoff",
    "auc",
    "confusion_at",
    "gain_table",
    "gini",
    "ks",
    "ks_curve",
    "lift_table",
    "psi",
    "psi_table",
    "roc_curve",
    "summary",
    "to_binary_target",
    "PSI_EPSILON",
]

#: Proportion substituted for an empty bin in PSI so that ``ln(A/E)`` stays finite.
PSI_EPSILON = 1e-4


# --------------------------------------------------------------------------------------------- input
def to_binary_target(y: ValuesLike, *, bad: TargetLabel | None = None, field: str = "target") -> np.ndarray:
    """``y`` as an ``int8`` array of 0/1 with 1 = bad: the toolkit's one target parser,
    :func:`shipyard.risk.target.binary_target` (recognised labels and ``bad=`` rules there)."""
    return binary_target(y, bad, field=field)


def _score_array(score: ValuesLike, field: str = "score") -> np.ndarray:
    try:
        arr = np.asarray(score, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"{field!r} must be numeric; convert it to numbers first ({exc})", {"field": field}
        ) from exc
    if np.isnan(arr).any():
        raise InvalidInput(
            f"{field!r} has {int(np.isnan(arr).sum())} missing values; drop or impute them first",
            {"field": field},
        )
    if np.isinf(arr).any():
        raise InvalidInput(
            f"{field!r} has {int(np.isinf(arr).sum())} infinite values; clip or drop them first",
            {"field": field},
        )
    return arr


def _check(y: ValuesLike, score: ValuesLike, bad: TargetLabel | None = None) -> tuple[np.ndarray, np.ndarray]:
    yy = y if isinstance(y, np.ndarray) and y.dtype == np.int8 and bad is None else binary_target(y, bad)
    ss = score if isinstance(score, np.ndarray) and score.dtype == np.float64 and score.ndim == 1 \
        else _score_array(score)
    if ss is score and not np.isfinite(ss).all():
        ss = _score_array(score)  # raises with the precise message
    if len(yy) != len(ss):
        raise InvalidInput(
            f"target and score have different lengths ({len(yy)} vs {len(ss)}); pass aligned arrays",
            {"field": "score", "target_length": len(yy), "score_length": len(ss)},
        )
    return yy, ss


_GROUP_CACHE: contextvars.ContextVar[dict[tuple[int, int], Any] | None] = contextvars.ContextVar(
    "shipyard_metrics_group_cache", default=None
)


@contextlib.contextmanager
def shared_grouping() -> Iterator[None]:
    """Within this block, metrics on the same (y, score) arrays share one sort of the scores.

    Used by the model report, which computes many metrics on each data set; the arrays must not be
    modified inside the block.
    """
    token = _GROUP_CACHE.set({})
    try:
        yield
    finally:
        _GROUP_CACHE.reset(token)


def _grouped(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct scores ascending with bad and good counts per distinct score (ties grouped)."""
    cache = _GROUP_CACHE.get()
    key = (id(y), id(score))
    if cache is not None and key in cache:
        return cache[key][2]
    uniq, inv = np.unique(score, return_inverse=True)
    bad = np.bincount(inv, weights=y, minlength=len(uniq))
    total = np.bincount(inv, minlength=len(uniq)).astype(float)
    out = (uniq, bad, total - bad)
    if cache is not None:
        cache[key] = (y, score, out)  # keep the arrays alive so their ids stay unique
    return out


# ------------------------------------------------------------------------------------- rank metrics
def auc(y: ValuesLike, score: ValuesLike, *, bad: TargetLabel | None = None) -> float:
    """Area under the ROC curve: P(score of a random bad > score of a random good), ties count 1/2.

    Equal to ``sklearn.metrics.roc_auc_score(y, score)``. Never negated: a value below 0.5 means the
    score is oriented the other way (higher = better), which you should flip explicitly.
    """
    yy, ss = _check(y, score, bad)
    _, bads, good = _grouped(yy, ss)
    goods_below = np.cumsum(good) - good
    n_bad, n_good = bads.sum(), good.sum()
    return float(np.sum(bads * (goods_below + 0.5 * good)) / (n_bad * n_good))


def gini(y: ValuesLike, score: ValuesLike, *, bad: TargetLabel | None = None) -> float:
    """Gini coefficient (accuracy ratio) = 2·AUC − 1."""
    return 2.0 * auc(y, score, bad=bad) - 1.0


@dataclass(frozen=True)
class KSResult:
    """Kolmogorov–Smirnov separation.

    ``statistic`` = max over thresholds t of |F_bad(t) − F_good(t)|, where F(t) = share of the class
    with score ≤ t; ``score`` is the threshold t where the maximum occurs (the smallest such t);
    ``cum_bad`` and ``cum_good`` are F_bad(t) and F_good(t) there.
    """

    statistic: float
    score: float
    cum_bad: float
    cum_good: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def ks_curve(y: ValuesLike, score: ValuesLike, *, bad: TargetLabel | None = None) -> pd.DataFrame:
    """Cumulative class distributions at every distinct score (ascending), ties grouped.

    Columns: ``score``, ``cum_bad`` = F_bad(score), ``cum_good`` = F_good(score), ``ks`` =
    |cum_bad − cum_good|.
    """
    yy, ss = _check(y, score, bad)
    uniq, bads, good = _grouped(yy, ss)
    fb = np.cumsum(bads) / bads.sum()
    fg = np.cumsum(good) / good.sum()
    return pd.DataFrame({"score": uniq, "cum_bad": fb, "cum_good": fg, "ks": np.abs(fb - fg)})


def ks(y: ValuesLike, score: ValuesLike, *, bad: TargetLabel | None = None) -> KSResult:
    """KS = max |F_bad − F_good| over distinct scores with ties grouped.

    Equal to ``scipy.stats.ks_2samp(score[y == 1], score[y == 0]).statistic``. Walking row by row
    through tied scores would overstate it; grouping ties evaluates the CDFs only where they are
    defined.
    """
    curve = ks_curve(y, score, bad=bad)
    i = int(np.argmax(curve["ks"].to_numpy()))
    row = curve.iloc[i]
    return KSResult(float(row["ks"]), float(row["score"]), float(row["cum_bad"]), float(row["cum_good"]))


def roc_curve(y: ValuesLike, score: ValuesLike, *, bad: TargetLabel | None = None) -> pd.DataFrame:
    """ROC points, one per distinct score as threshold (predict bad when score ≥ threshold).

    Columns ``threshold`` (descending, starting at +inf for the (0, 0) point), ``fpr``, ``tpr``.
    """
    yy, ss = _check(y, score, bad)
    uniq, bads, good = _grouped(yy, ss)
    tp = np.cumsum(bads[::-1])
    fp = np.cumsum(good[::-1])
    return pd.DataFrame(
        {
            "threshold": np.concatenate([[np.inf], uniq[::-1]]),
            "fpr": np.concatenate([[0.0], fp / good.sum()]),
            "tpr": np.concatenate([[0.0], tp / bads.sum()]),
        }
    )


# ---------------------------------------------------------------------------------- binned tables
def _score_bins(score: np.ndarray, bins: int | Sequence[float], method: str) -> np.ndarray:
    """Inner edges for score bands. Bands are right-closed: (e_{k-1}, e_k]."""
    if not isinstance(bins, int):
        return np.unique(np.asarray(bins, dtype=float))
    if bins < 1:
        raise InvalidInput(f"bins must be ≥ 1, got {bins}", {"field": "bins"})
    if method in ("quantile", "frequency", "deciles"):
        edges = np.quantile(score, np.linspace(0, 1, bins + 1)[1:-1])
    elif method in ("width", "uniform", "bands"):
        edges = np.linspace(score.min(), score.max(), bins + 1)[1:-1]
    else:
        raise InvalidInput(
            f"unknown binning method {method!r}; use 'quantile' (equal frequency) or 'width' "
            "(equal-width score bands)",
            {"field": "method"},
        )
    return np.unique(edges)


def lift_table(
    y: ValuesLike,
    score: ValuesLike,
    bins: int | Sequence[float] = 10,
    method: str = "quantile",
    *,
    bad: TargetLabel | None = None,
) -> pd.DataFrame:
    """Lift and gain table over score bands, riskiest band (highest scores) first.

    ``method="quantile"``: equal-frequency bands with inner edges at the 1/n … (n−1)/n quantiles of
    ``score`` (tied scores stay in one band, so bands can be uneven and fewer than ``bins``);
    ``method="width"``: ``bins`` equal-width bands between min and max score. ``bins`` may also be
    a list of edges. Bands are right-closed ``(lower, upper]``.

    Columns: ``band`` (1 = riskiest), ``min_score``, ``max_score`` (observed), ``count``, ``bad``,
    ``good``, ``bad_rate``, ``share`` (of all rows), ``lift`` = bad_rate / overall bad rate,
    ``cum_count``, ``cum_share`` (depth), ``cum_bad``, ``cum_bad_rate``, ``gain`` (= cumulative
    share of all bads captured), ``cum_good_share``, ``cum_lift`` = gain / cum_share, ``ks`` =
    gain − cum_good_share.
    """
    yy, ss = _check(y, score, bad)
    edges = _score_bins(ss, bins, method)
    idx = np.searchsorted(edges, ss, side="left")  # band k holds (edges[k-1], edges[k]]
    nb = len(edges) + 1
    count = np.bincount(idx, minlength=nb).astype(float)
    bads = np.bincount(idx, weights=yy, minlength=nb)
    lo = np.full(nb, np.nan)
    hi = np.full(nb, np.nan)
    np.fmin.at(lo, idx, ss)
    np.fmax.at(hi, idx, ss)
    keep = count > 0
    order = np.arange(nb)[keep][::-1]
    count, bads, lo, hi = count[order], bads[order], lo[order], hi[order]
    good = count - bads
    n, n_bad, n_good = count.sum(), bads.sum(), good.sum()
    cum_count, cum_bad, cum_good = np.cumsum(count), np.cumsum(bads), np.cumsum(good)
    overall = n_bad / n
    gain = cum_bad / n_bad
    cum_share = cum_count / n
    return pd.DataFrame(
        {
            "band": np.arange(1, len(order) + 1),
            "min_score": lo,
            "max_score": hi,
            "count": count.astype(np.int64),
            "bad": bads.astype(np.int64),
            "good": good.astype(np.int64),
            "bad_rate": bads / count,
            "share": count / n,
            "lift": (bads / count) / overall,
            "cum_count": cum_count.astype(np.int64),
            "cum_share": cum_share,
            "cum_bad": cum_bad.astype(np.int64),
            "cum_bad_rate": cum_bad / cum_count,
            "gain": gain,
            "cum_good_share": cum_good / n_good,
            "cum_lift": gain / cum_share,
            "ks": gain - cum_good / n_good,
        }
    )


def gain_table(
    y: ValuesLike, score: ValuesLike, bins: int | Sequence[float] = 10, method: str = "quantile", *, bad: TargetLabel | None = None
) -> pd.DataFrame:
    """The cumulative (gain) columns of :func:`lift_table`: depth, bads captured, cumulative lift."""
    t = lift_table(y, score, bins, method, bad=bad)
    return t[["band", "min_score", "max_score", "cum_count", "cum_share", "cum_bad", "gain",
              "cum_bad_rate", "cum_lift", "ks"]]


def approval_tradeoff(
    y: ValuesLike, score: ValuesLike, cutoffs: int | Sequence[float] = 20, *, bad: TargetLabel | None = None
) -> pd.DataFrame:
    """Approval-rate / bad-rate trade-off: approve when ``score < cutoff`` (lower score = safer).

    ``cutoffs`` is a list of thresholds or a number n of thresholds placed at the 1/n … n/n
    quantiles of the score (the last one approves everyone). Columns: ``cutoff``,
    ``approval_rate``, ``approved``, ``approved_bad``, ``approved_bad_rate`` (the cumulative bad
    rate of the book you would accept), ``rejected_bad_share`` (share of all bads turned away).
    """
    yy, ss = _check(y, score, bad)
    if isinstance(cutoffs, int):
        q = np.quantile(ss, np.linspace(0, 1, cutoffs + 1)[1:])
        q[-1] = np.nextafter(ss.max(), np.inf)
        cuts = np.unique(q)
    else:
        cuts = np.sort(np.asarray(cutoffs, dtype=float))
    uniq, bads, good = _grouped(yy, ss)
    cum_bad = np.concatenate([[0.0], np.cumsum(bads)])
    cum_all = np.concatenate([[0.0], np.cumsum(bads + good)])
    k = np.searchsorted(uniq, cuts, side="left")  # number of distinct scores strictly below cutoff
    approved, approved_bad = cum_all[k], cum_bad[k]
    n, n_bad = len(ss), float(yy.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(approved > 0, approved_bad / approved, np.nan)
    return pd.DataFrame(
        {
            "cutoff": cuts,
            "approval_rate": approved / n,
            "approved": approved.astype(np.int64),
            "approved_bad": approved_bad.astype(np.int64),
            "approved_bad_rate": rate,
            "rejected_bad_share": 1.0 - approved_bad / n_bad,
        }
    )


def confusion_at(y: ValuesLike, score: ValuesLike, cutoff: float, *, bad: TargetLabel | None = None) -> dict[str, float]:
    """Confusion metrics when ``score >= cutoff`` is predicted bad (positive = bad).

    Returns tp, fp, tn, fn, accuracy, precision, recall (= true-positive rate), fpr, specificity,
    f1 and approval_rate (share predicted good).
    """
    yy, ss = _check(y, score, bad)
    pred = ss >= float(cutoff)
    tp = int(np.sum(pred & (yy == 1)))
    fp = int(np.sum(pred & (yy == 0)))
    fn = int(np.sum(~pred & (yy == 1)))
    tn = int(np.sum(~pred & (yy == 0)))
    n = tp + fp + tn + fn
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn)
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {
        "cutoff": float(cutoff),
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        "accuracy": (tp + tn) / n,
        "precision": precision,
        "recall": recall,
        "fpr": fp / (fp + tn),
        "specificity": tn / (fp + tn),
        "f1": f1,
        "approval_rate": (tn + fn) / n,
    }


def summary(y: ValuesLike, score: ValuesLike, *, bad: TargetLabel | None = None) -> dict[str, float]:
    """The headline numbers: n, bad count and rate, AUC, Gini, KS and the score where KS occurs."""
    yy, ss = _check(y, score, bad)
    with shared_grouping() if _GROUP_CACHE.get() is None else contextlib.nullcontext():
        a = auc(yy, ss)
        k = ks(yy, ss)
    return {
        "n": int(len(yy)),
        "n_bad": int(yy.sum()),
        "bad_rate": float(yy.mean()),
        "auc": a,
        "gini": 2 * a - 1,
        "ks": k.statistic,
        "ks_score": k.score,
    }


# -------------------------------------------------------------------------------------------- PSI
def _is_categorical(s: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)) or isinstance(
        s.dtype, pd.CategoricalDtype
    )


def psi_table(
    expected: ValuesLike,
    actual: ValuesLike,
    bins: int | Sequence[float] = 10,
    *,
    categorical: bool | None = None,
    eps: float = PSI_EPSILON,
) -> pd.DataFrame:
    """Per-bin Population Stability Index of ``actual`` against the reference ``expected``.

    Bins are defined on the reference only. Numeric: inner edges at the 1/n … (n−1)/n quantiles of
    ``expected`` (``np.quantile``, linear interpolation), duplicates dropped, so at most ``bins``
    right-closed intervals ``(lo, hi]`` with the outer ones open to ±inf; ``bins`` may instead be an
    explicit list of inner edges. Categorical (strings, categories; or ``categorical=True``): one
    bin per reference category, plus a ``__unseen__`` bin for categories absent from the reference.
    Missing values get a ``__missing__`` bin when either side has any.

    Each bin contributes (A − E)·ln(A / E) with A, E the bin's shares of ``actual`` and ``expected``;
    a share of 0 is replaced by ``eps`` (default 1e-4) in that term only.
    Columns: ``bin``, ``lower``, ``upper``, ``expected_count``, ``actual_count``, ``expected_pct``,
    ``actual_pct``, ``psi``.
    """
    e = expected if isinstance(expected, pd.Series) else pd.Series(np.asarray(expected))
    a = actual if isinstance(actual, pd.Series) else pd.Series(np.asarray(actual))
    if len(e) == 0 or len(a) == 0:
        raise InvalidInput(
            "psi needs non-empty expected and actual samples", {"field": "expected" if not len(e) else "actual"}
        )
    cat = _is_categorical(e) if categorical is None else categorical
    e_na, a_na = e.isna().to_numpy(), a.isna().to_numpy()
    if cat:
        ev, av = e[~e_na].astype(str).to_numpy(), a[~a_na].astype(str).to_numpy()
        labels = np.unique(ev)
        e_idx = np.searchsorted(labels, ev)
        a_pos = np.searchsorted(labels, av)
        a_pos_c = np.minimum(a_pos, len(labels) - 1)
        seen = labels[a_pos_c] == av
        a_idx = np.where(seen, a_pos_c, len(labels))
        names = [*labels.tolist(), "__unseen__"]
        lower = upper = [None] * len(names)
    else:
        try:
            ev = e[~e_na].to_numpy(dtype=float)
            av = a[~a_na].to_numpy(dtype=float)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(
                "psi: actual must be numeric like expected, or pass categorical=True", {"field": "actual"}
            ) from exc
        if np.isinf(ev).any() or np.isinf(av).any():
            raise InvalidInput(
                "psi: infinite values found; clip or drop them first",
                {"field": "expected" if np.isinf(ev).any() else "actual"},
            )
        if isinstance(bins, int):
            if bins < 1:
                raise InvalidInput(f"bins must be ≥ 1, got {bins}", {"field": "bins"})
            if len(ev) == 0:
                raise InvalidInput("psi: expected is all missing", {"field": "expected"})
            edges = np.unique(np.quantile(ev, np.linspace(0, 1, bins + 1)[1:-1]))
        else:
            edges = np.unique(np.asarray(bins, dtype=float))
        e_idx = np.searchsorted(edges, ev, side="left")
        a_idx = np.searchsorted(edges, av, side="left")
        full = np.concatenate([[-np.inf], edges, [np.inf]])
        lower, upper = full[:-1].tolist(), full[1:].tolist()
        names = [f"({lo:.6g}, {hi:.6g}]" for lo, hi in zip(lower, upper, strict=True)]
    nb = len(names)
    ec = np.bincount(e_idx, minlength=nb).astype(float)
    ac = np.bincount(a_idx, minlength=nb).astype(float)
    lower, upper = list(lower), list(upper)
    if cat and ac[-1] == 0:  # no unseen category: drop the empty placeholder bin
        ec, ac, names, lower, upper = ec[:-1], ac[:-1], names[:-1], lower[:-1], upper[:-1]
    if e_na.any() or a_na.any():
        ec = np.append(ec, e_na.sum())
        ac = np.append(ac, a_na.sum())
        names, lower, upper = [*names, "__missing__"], [*lower, None], [*upper, None]
    ep, ap = ec / len(e), ac / len(a)
    ep_s, ap_s = np.where(ep > 0, ep, eps), np.where(ap > 0, ap, eps)
    contrib = (ap_s - ep_s) * np.log(ap_s / ep_s)
    return pd.DataFrame(
        {
            "bin": names,
            "lower": lower,
            "upper": upper,
            "expected_count": ec.astype(np.int64),
            "actual_count": ac.astype(np.int64),
            "expected_pct": ep,
            "actual_pct": ap,
            "psi": contrib,
        }
    )


def psi(
    expected: ValuesLike,
    actual: ValuesLike,
    bins: int | Sequence[float] = 10,
    *,
    categorical: bool | None = None,
    eps: float = PSI_EPSILON,
) -> float:
    """Population Stability Index = Σ (A − E)·ln(A / E) over bins defined on ``expected``.

    See :func:`psi_table` for the binning and the ``eps`` rule. Rule of thumb: < 0.1 stable,
    0.1–0.25 moderate shift, > 0.25 significant shift.
    """
    return float(psi_table(expected, actual, bins, categorical=categorical, eps=eps)["psi"].sum())
