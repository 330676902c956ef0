"""Drift statistics against scipy and a hand computation of PSI on the documented bins."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st
from scipy.spatial.distance import jensenshannon

import shipyard as sy
from shipyard.errors import InvalidInput
from shipyard.monitoring import Baseline, drift
from shipyard.monitoring import stats as S
from shipyard.risk.metrics import psi as risk_psi


def _frames(n_ref: int = 4000, n_cur: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame({"a": rng.normal(size=n_ref), "b": rng.exponential(2, n_ref),
                        "r": np.round(rng.normal(size=n_ref), 1),  # many ties
                        "c": rng.choice(list("xyz"), n_ref, p=[0.5, 0.3, 0.2])})
    cur = pd.DataFrame({"a": rng.normal(0.2, 1.1, n_cur), "b": rng.exponential(2.2, n_cur),
                        "r": np.round(rng.normal(0.1, 1, n_cur), 1),
                        "c": rng.choice(list("xyzw"), n_cur, p=[0.4, 0.3, 0.2, 0.1])})
    ref.loc[::11, "b"] = np.nan
    cur.loc[::7, "b"] = np.nan
    return ref, cur


def _hand_psi(ref: np.ndarray, cur: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    """PSI written out: quantile edges of the reference, right-closed bins, missing bin, eps for 0 shares."""
    r, c = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    edges = np.unique(np.quantile(r, [i / bins for i in range(1, bins)]))
    full = [-np.inf, *edges, np.inf]
    total = 0.0
    for lo, hi in zip(full[:-1], full[1:], strict=True):
        e = ((r > lo) & (r <= hi)).sum() / len(ref)
        a = ((c > lo) & (c <= hi)).sum() / len(cur)
        e, a = e or eps, a or eps
        total += (a - e) * np.log(a / e)
    e_m, a_m = np.isnan(ref).mean(), np.isnan(cur).mean()
    if e_m or a_m:
        e_m, a_m = e_m or eps, a_m or eps
        total += (a_m - e_m) * np.log(a_m / e_m)
    return float(total)


def test_statistics_equal_scipy_and_the_hand_computation() -> None:
    ref, cur = _frames()
    report = drift(ref, cur)
    assert report.exact
    for name in ("a", "b", "r"):
        col = report.column(name)
        r, c = ref[name].dropna().to_numpy(), cur[name].dropna().to_numpy()
        assert col.psi == pytest.approx(_hand_psi(ref[name].to_numpy(), cur[name].to_numpy()), abs=1e-9)
        assert col.psi == pytest.approx(risk_psi(ref[name], cur[name]), abs=1e-12)
        ks = st.ks_2samp(r, c)
        assert col.ks == pytest.approx(ks.statistic, abs=1e-9)
        assert col.ks_pvalue == pytest.approx(ks.pvalue, abs=1e-9)
        assert col.wasserstein == pytest.approx(st.wasserstein_distance(r, c) / max(np.std(r), 0.001), abs=1e-9)
        counts = [b["expected_count"] for b in col.bins], [b["actual_count"] for b in col.bins]
        assert col.js == pytest.approx(jensenshannon(counts[0], counts[1], base=2), abs=1e-9)
    cat = report.column("c")
    table = pd.crosstab(pd.concat([ref["c"], cur["c"]]).to_numpy(),
                        np.r_[np.zeros(len(ref)), np.ones(len(cur))]).T.to_numpy()
    chi = st.chi2_contingency(table)
    assert (cat.chi2, cat.chi2_pvalue, cat.chi2_dof) == (pytest.approx(chi.statistic, abs=1e-9),
                                                         pytest.approx(chi.pvalue, abs=1e-9), chi.dof)
    assert cat.psi == pytest.approx(risk_psi(ref["c"], cur["c"]), abs=1e-12)


def test_chi_square_with_two_categories_uses_yates_like_scipy() -> None:
    stat, p, dof = S.chi2_contingency(np.array([30, 12]), np.array([18, 20]))
    ref = st.chi2_contingency([[30, 12], [18, 20]])
    assert (stat, p, dof) == (pytest.approx(ref.statistic, abs=1e-12), pytest.approx(ref.pvalue, abs=1e-12), 1)


def test_small_samples_take_scipys_exact_p_value() -> None:
    rng = np.random.default_rng(3)
    ref, cur = pd.DataFrame({"a": rng.normal(size=60)}), pd.DataFrame({"a": rng.normal(0.5, 1, 45)})
    col = drift(ref, cur).column("a")
    exact = st.ks_2samp(ref["a"], cur["a"])
    assert col.ks_pvalue == pytest.approx(exact.pvalue, abs=1e-12)


def test_effect_sizes_decide_not_p_values_at_production_volume() -> None:
    rng = np.random.default_rng(7)
    n, k = 200_000, 5
    ref = pd.DataFrame(rng.normal(size=(n, k)), columns=[f"f{i}" for i in range(k)])
    small = pd.DataFrame(rng.normal(0.1, 1, size=(n, k)), columns=ref.columns)
    big = pd.DataFrame(rng.normal(1.0, 1, size=(n, k)), columns=ref.columns)
    report = drift(ref, small)
    assert all(c.ks_pvalue < 0.05 for c in report.columns)  # KS "flags" every column
    assert report.drifted == []                               # the effect sizes flag none
    assert set(drift(ref, big).drifted) == set(ref.columns)


def test_edge_columns_single_category_all_missing_and_bad_input() -> None:
    ref = pd.DataFrame({"one": ["k"] * 50, "gone": [np.nan] * 40 + [1.0] * 10, "x": np.arange(50.0)})
    cur = pd.DataFrame({"one": ["k"] * 30, "gone": [np.nan] * 30, "x": np.arange(30.0)})
    report = drift(ref, cur)
    one = report.column("one")
    assert one.psi == pytest.approx(0.0) and one.chi2_dof == 0 and one.chi2_pvalue == 1.0
    gone = report.column("gone")
    assert gone.missing_cur == 1.0 and gone.ks is None
    assert gone.psi == pytest.approx(_hand_psi(ref["gone"].to_numpy(), cur["gone"].to_numpy()), abs=1e-9)
    with pytest.raises(InvalidInput, match="not in the current") as err:
        drift(ref, cur.drop(columns=["x"]), columns=["x"])
    assert err.value.details["field"] == "columns"
    with pytest.raises(InvalidInput, match="no rows"):
        drift(ref, cur.iloc[:0])


def test_stored_baseline_gives_the_same_psi_and_close_ks(tmp_path) -> None:
    ref, cur = _frames(20_000, 20_000, seed=5)
    exact = drift(ref, cur)
    base = Baseline.from_dict(Baseline.from_frame(ref, "b").to_dict())  # round trip through JSON-able dict
    binned = drift(base, cur)
    assert not binned.exact
    for name in ("a", "b", "c"):
        assert binned.column(name).psi == pytest.approx(exact.column(name).psi, abs=1e-12)
    assert binned.column("a").ks == pytest.approx(exact.column("a").ks, abs=0.02)
    assert binned.column("a").wasserstein == pytest.approx(exact.column("a").wasserstein, rel=0.1)


def test_sy_monitoring_shell_report_files(tmp_path) -> None:
    ref, cur = _frames()
    ref.to_parquet(tmp_path / "ref.parquet")
    cur.to_csv(tmp_path / "cur.csv", index=False)
    report = sy.monitoring.drift(str(tmp_path / "ref.parquet"), str(tmp_path / "cur.csv"), columns=["a", "c"])
    data = report.to_dict()
    assert [c["column"] for c in data["columns"]] == ["a", "c"]
    html = report.save_html(tmp_path / "drift.html").read_text()
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert f"{report.column('a').psi:.4g}" in html


@pytest.mark.evidently
def test_same_numbers_as_evidently_where_definitions_agree(tmp_path) -> None:
    """Normed Wasserstein is Evidently's definition; its PSI (Sturges bins of both samples) equals
    ours on the same edges when no bin is empty. Evidently runs in its own interpreter
    (SHIPYARD_EVIDENTLY_PYTHON) because it does not import with pandas 3."""
    import json
    import os
    import subprocess
    from pathlib import Path

    python = os.environ.get("SHIPYARD_EVIDENTLY_PYTHON")
    if not python:
        pytest.skip("set SHIPYARD_EVIDENTLY_PYTHON to an interpreter with evidently installed")
    rng = np.random.default_rng(11)
    ref = pd.DataFrame({"a": rng.normal(size=3000), "b": rng.lognormal(size=3000)})
    cur = pd.DataFrame({"a": rng.normal(0.3, 1, 2500), "b": rng.lognormal(0.1, 1, 2500)})
    ref.to_parquet(tmp_path / "ref.parquet")
    cur.to_parquet(tmp_path / "cur.parquet")
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "_drift_evidently.py"
    subprocess.run([python, str(script), str(tmp_path / "ref.parquet"), str(tmp_path / "cur.parquet"),
                    str(tmp_path / "out.json")], check=True, capture_output=True)
    ev = json.loads((tmp_path / "out.json").read_text())
    report = drift(ref, cur)
    for c in ("a", "b"):
        assert report.column(c).wasserstein == pytest.approx(ev["wasserstein"][c], abs=1e-9)
        edges = np.histogram_bin_edges(np.concatenate([ref[c], cur[c]]), bins="sturges")[1:-1]
        e, _ = S.bin_counts(ref[c].to_numpy(), edges)
        a, _ = S.bin_counts(cur[c].to_numpy(), edges)
        if (e > 0).all() and (a > 0).all():
            assert float(S.psi_from_counts(e, a)) == pytest.approx(ev["psi"][c], abs=1e-9)


def test_decimal_columns_are_numeric() -> None:
    """SQL NUMERIC columns arrive as Python Decimals (object dtype); binned as numbers, not as
    thousands of categories."""
    from decimal import Decimal

    from shipyard.monitoring import drift
    from shipyard.risk.metrics import psi as risk_psi

    rng = np.random.default_rng(3)
    ref_values, cur_values = rng.normal(100, 10, 3000).round(2), rng.normal(108, 10, 2000).round(2)
    ref = pd.DataFrame({"amt": [Decimal(str(v)) for v in ref_values]})
    cur = pd.DataFrame({"amt": [Decimal(str(v)) for v in cur_values]})
    ref.loc[5, "amt"] = None
    column = drift(ref, cur).column("amt")
    assert column.kind == "numeric"
    expected = risk_psi(pd.Series(ref_values).where(ref.index != 5), pd.Series(cur_values))
    assert column.psi == pytest.approx(expected, abs=1e-12)
    base = drift(ref.astype({"amt": float}), cur.astype({"amt": float})).column("amt")
    assert column.wasserstein == pytest.approx(base.wasserstein, abs=1e-12)
