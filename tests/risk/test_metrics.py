"""Risk metrics against independent references: scikit-learn, SciPy and naive loops."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from shipyard.errors import InvalidInput
from shipyard.risk import metrics as M

GERMAN_CSV = Path(__file__).resolve().parents[2] / "src" / "shipyard" / "demo" / "germancredit.csv"


@pytest.fixture(scope="module")
def scored() -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    df = pd.read_csv(GERMAN_CSV)
    y = (df["creditability"] == "bad").to_numpy(dtype=int)
    X = df[["duration_in_month", "credit_amount", "age_in_years", "installment_rate_in_percentage_of_disposable_income"]]
    p = LogisticRegression(max_iter=2000).fit(X, y).predict_proba(X)[:, 1]
    return y, p, df


def naive_psi(expected: np.ndarray, actual: np.ndarray, n: int, eps: float = 1e-4) -> float:
    edges = np.unique(np.quantile(expected, [i / n for i in range(1, n)]))
    lo = [-math.inf, *edges]
    hi = [*edges, math.inf]
    total = 0.0
    for a_, b_ in zip(lo, hi, strict=True):
        e = sum(1 for v in expected if a_ < v <= b_) / len(expected)
        a = sum(1 for v in actual if a_ < v <= b_) / len(actual)
        e, a = (e or eps), (a or eps)
        total += (a - e) * math.log(a / e)
    return total


def test_auc_matches_sklearn(scored):
    y, p, _ = scored
    assert M.auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert M.gini(y, p) == pytest.approx(2 * roc_auc_score(y, p) - 1, abs=1e-12)


def test_auc_with_ties_and_never_negated():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 3000)
    s = np.round(rng.normal(size=3000) - 0.4 * y, 1) * 100 + 500  # scores > 1, oriented "higher = good"
    a = M.auc(y, s)
    assert a == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert a < 0.5  # reported as is; no silent flipping
    assert M.auc(y, -s) == pytest.approx(1 - a, abs=1e-12)


@pytest.mark.parametrize("decimals", [0, 1, 3])
def test_ks_matches_scipy_with_ties(decimals):
    rng = np.random.default_rng(decimals)
    y = rng.integers(0, 2, 4000)
    s = np.round(rng.normal(size=4000) + 0.5 * y, decimals)
    k = M.ks(y, s)
    assert k.statistic == pytest.approx(ks_2samp(s[y == 1], s[y == 0]).statistic, abs=1e-12)
    # the threshold is where the CDFs differ by the statistic
    fb = np.mean(s[y == 1] <= k.score)
    fg = np.mean(s[y == 0] <= k.score)
    assert abs(fb - fg) == pytest.approx(k.statistic, abs=1e-12)
    assert (k.cum_bad, k.cum_good) == pytest.approx((fb, fg))


def test_ks_ties_grouped_not_row_walked():
    # all ties: a row-walking KS would report a positive value; the grouped KS is exactly 0
    y = np.array([1, 0, 1, 0, 1, 0])
    s = np.array([5.0, 5.0, 5.0, 5.0, 5.0, 5.0])
    assert M.ks(y, s).statistic == 0.0
    y2 = np.array([0, 1, 0, 1, 1, 0, 0, 0])
    s2 = np.array([1, 1, 2, 2, 2, 3, 3, 4], dtype=float)
    assert M.ks(y2, s2).statistic == pytest.approx(ks_2samp(s2[y2 == 1], s2[y2 == 0]).statistic)


def test_ks_on_german_credit(scored):
    y, p, _ = scored
    assert M.ks(y, p).statistic == pytest.approx(ks_2samp(p[y == 1], p[y == 0]).statistic, abs=1e-12)


def test_roc_curve_matches_sklearn(scored):
    y, p, _ = scored
    ours = M.roc_curve(y, p)
    fpr, tpr, _thr = sk_roc_curve(y, p, drop_intermediate=False)
    np.testing.assert_allclose(ours["fpr"], fpr, atol=1e-12)
    np.testing.assert_allclose(ours["tpr"], tpr, atol=1e-12)
    assert np.trapezoid(ours["tpr"], ours["fpr"]) == pytest.approx(roc_auc_score(y, p), abs=1e-12)


def test_lift_table_deciles_against_pandas(scored):
    y, p, _ = scored
    t = M.lift_table(y, p, 10, "quantile")
    edges = np.quantile(p, np.linspace(0, 1, 11)[1:-1])
    ref = pd.DataFrame({"y": y, "band": np.searchsorted(edges, p, side="left")})
    g = ref.groupby("band")["y"].agg(["count", "sum"]).sort_index(ascending=False)
    np.testing.assert_array_equal(t["count"], g["count"])
    np.testing.assert_array_equal(t["bad"], g["sum"])
    assert t["count"].sum() == len(y) and t["bad"].sum() == y.sum()
    assert t["gain"].iloc[-1] == pytest.approx(1.0)
    np.testing.assert_allclose(t["lift"], (g["sum"] / g["count"]).to_numpy() / y.mean())
    assert t["ks"].max() <= M.ks(y, p).statistic + 1e-12
    assert (t["min_score"].to_numpy()[:-1] >= t["max_score"].to_numpy()[1:]).all()  # riskiest first


def test_lift_table_equal_width_bands(scored):
    y, p, _ = scored
    t = M.lift_table(y, p, 5, "width")
    width = (p.max() - p.min()) / 5
    band = np.clip(np.ceil((p - p.min()) / width) - 1, 0, 4).astype(int)
    counts = np.bincount(band, minlength=5)[::-1]
    np.testing.assert_array_equal(t["count"], counts[counts > 0])
    with pytest.raises(InvalidInput, match="method"):
        M.lift_table(y, p, 5, "nope")


def test_approval_tradeoff_naive(scored):
    y, p, _ = scored
    t = M.approval_tradeoff(y, p, [0.2, 0.3, 0.5])
    for row in t.itertuples():
        approved = p < row.cutoff
        assert row.approved == approved.sum()
        assert row.approved_bad == y[approved].sum()
        assert row.approved_bad_rate == pytest.approx(y[approved].mean())
        assert row.rejected_bad_share == pytest.approx(y[~approved].sum() / y.sum())
    auto = M.approval_tradeoff(y, p, 10)
    assert auto["approval_rate"].iloc[-1] == 1.0
    assert auto["approval_rate"].is_monotonic_increasing


def test_confusion_at_cutoff(scored):
    y, p, _ = scored
    c = M.confusion_at(y, p, 0.35)
    pred = p >= 0.35
    assert c["tp"] == int((pred & (y == 1)).sum()) and c["tn"] == int((~pred & (y == 0)).sum())
    assert c["recall"] == pytest.approx(((pred) & (y == 1)).sum() / y.sum())
    assert c["approval_rate"] == pytest.approx((~pred).mean())


def test_psi_numeric_matches_naive_loop():
    rng = np.random.default_rng(7)
    e = rng.normal(size=3000)
    a = rng.normal(0.3, 1.2, size=2000)
    for n in (5, 10):
        assert M.psi(e, a, n) == pytest.approx(naive_psi(e, a, n), abs=1e-12)
    assert M.psi(e, e, 10) == pytest.approx(0.0, abs=1e-15)
    t = M.psi_table(e, a, 10)
    assert len(t) == 10 and t["expected_count"].sum() == 3000 and t["actual_count"].sum() == 2000
    assert t["expected_pct"].to_numpy() == pytest.approx(np.full(10, 0.1), abs=1e-3)


def test_psi_empty_bin_uses_epsilon():
    e = np.arange(100, dtype=float)
    a = np.full(50, 10.0)  # every actual value in one reference bin
    t = M.psi_table(e, a, 4)
    ref = sum((aa - ee) * math.log(aa / ee) for ee, aa in [(0.25, 1.0), (0.25, 1e-4), (0.25, 1e-4), (0.25, 1e-4)])
    assert t["psi"].sum() == pytest.approx(ref)
    assert M.psi(e, a, 4, eps=1e-3) != pytest.approx(ref)


def test_psi_categorical_and_missing():
    e = pd.Series(["a"] * 50 + ["b"] * 30 + [None] * 20, dtype=object)
    a = pd.Series(["a"] * 40 + ["b"] * 20 + ["c"] * 10 + [None] * 30, dtype=object)
    t = M.psi_table(e, a).set_index("bin")
    assert list(t.index) == ["a", "b", "__unseen__", "__missing__"]
    shares = {"a": (0.5, 0.4), "b": (0.3, 0.2), "__unseen__": (1e-4, 0.1), "__missing__": (0.2, 0.3)}
    ref = sum((aa - ee) * math.log(aa / ee) for ee, aa in shares.values())
    assert M.psi(e, a) == pytest.approx(ref)


def test_to_binary_target_labels_and_errors():
    assert M.to_binary_target(["good", "bad", "good"]).tolist() == [0, 1, 0]
    assert M.to_binary_target(np.array([True, False])).tolist() == [1, 0]
    assert M.to_binary_target(["y", "n", "n"], bad="y").tolist() == [1, 0, 0]
    with pytest.raises(InvalidInput, match="binary"):
        M.to_binary_target([0, 1, 2])
    with pytest.raises(InvalidInput, match="only one class"):
        M.to_binary_target([0, 0, 0])
    with pytest.raises(InvalidInput, match="missing"):
        M.to_binary_target([0, 1, None])
    with pytest.raises(InvalidInput, match="which value"):
        M.to_binary_target(["x", "z"])


def test_bad_scores_rejected():
    y = np.array([0, 1, 0, 1])
    with pytest.raises(InvalidInput, match="infinite") as exc:
        M.auc(y, [0.1, np.inf, 0.3, 0.4])
    assert exc.value.details["field"] == "score"
    with pytest.raises(InvalidInput, match="missing"):
        M.ks(y, [0.1, np.nan, 0.3, 0.4])
    with pytest.raises(InvalidInput, match="different lengths"):
        M.auc(y, [0.1, 0.2])
    with pytest.raises(InvalidInput, match="infinite"):
        M.psi([1.0, 2.0, np.inf], [1.0, 2.0])
