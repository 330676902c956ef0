"""Data-quality profile against pandas (describe, quantile, corr, value_counts) and a naive IV."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shipyard.data.profile import profile
from shipyard.errors import InvalidInput, NotFound

GERMAN_CSV = Path(__file__).resolve().parents[2] / "src" / "shipyard" / "demo" / "germancredit.csv"


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    df = pd.read_csv(GERMAN_CSV)
    rng = np.random.default_rng(0)
    df["age_in_years"] = df["age_in_years"].astype(float)
    df.loc[rng.random(len(df)) < 0.1, "age_in_years"] = np.nan
    df["amount_twice"] = df["credit_amount"] * 2.0 + 1
    df["empty"] = np.nan
    df["constant"] = 7
    df["mostly_zero"] = np.where(rng.random(len(df)) < 0.97, 0.0, rng.normal(size=len(df)))
    df["ident"] = [f"id{i}" for i in range(len(df))]
    df["flag"] = rng.random(len(df)) < 0.3
    return df


@pytest.fixture(scope="module")
def prof(frame):
    return profile(frame, target="creditability", corr_threshold=0.9)


def naive_iv(x: pd.Series, y: np.ndarray, nbins: int = 10) -> float:
    """Quantile bins on non-missing x, a missing bin, WOE = ln(bad%/good%); an empty class count of a
    bin is replaced by 0.5 (docs/risk-metrics.md, "WOE and IV")."""
    B, G = y.sum(), len(y) - y.sum()
    edges = np.unique(np.quantile(x.dropna(), np.arange(1, nbins) / nbins))
    groups: dict[object, list[int]] = {}
    for v, t in zip(x, y, strict=True):
        key = "missing" if pd.isna(v) else int(np.searchsorted(edges, v, side="left"))
        groups.setdefault(key, []).append(int(t))
    iv = 0.0
    for ys in groups.values():
        b, g = sum(ys), len(ys) - sum(ys)
        b, g = (b or 0.5), (g or 0.5)
        iv += (b / B - g / G) * math.log((b / B) / (g / G))
    return iv


def test_numeric_stats_match_pandas(frame, prof):
    for col in ("duration_in_month", "credit_amount", "age_in_years", "mostly_zero"):
        s = frame[col]
        c = prof.columns[col]
        d = s.describe()
        assert c.missing == s.isna().sum()
        assert c.distinct == s.nunique()
        assert c.stats["mean"] == pytest.approx(d["mean"], rel=1e-12)
        assert c.stats["std"] == pytest.approx(d["std"], rel=1e-10)
        assert c.stats["min"] == d["min"] and c.stats["max"] == d["max"]
        for q in (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99):
            assert c.stats[f"p{int(round(q * 100))}"] == pytest.approx(s.quantile(q), rel=1e-12)
        assert c.stats["zeros"] == (s == 0).sum()
        q1, q3 = s.quantile(0.25), s.quantile(0.75)
        out = ((s < q1 - 1.5 * (q3 - q1)) | (s > q3 + 1.5 * (q3 - q1))).sum()
        assert c.stats["outliers_iqr"] == out
        vc = s.value_counts()
        assert c.top_values[0]["count"] == vc.iloc[0]
        assert sum(c.histogram["counts"]) == s.notna().sum()


def test_categorical_stats_match_pandas(frame, prof):
    s = frame["purpose"]
    c = prof.columns["purpose"]
    vc = s.value_counts()
    assert c.kind == "categorical" and c.distinct == s.nunique()
    assert [t["value"] for t in c.top_values[:3]] == list(vc.index[:3])
    assert [t["count"] for t in c.top_values[:3]] == list(vc.iloc[:3])


def test_flags(prof):
    assert prof.columns["empty"].flags == ["all_missing"]
    assert "constant" in prof.columns["constant"].flags
    assert "near_constant" in prof.columns["mostly_zero"].flags
    assert "unique" in prof.columns["ident"].flags and "high_cardinality" in prof.columns["ident"].flags
    assert prof.columns["flag"].kind == "boolean"
    pairs = {(p["column_a"], p["column_b"]) for p in prof.high_corr}
    assert ("credit_amount", "amount_twice") in pairs


def test_correlation_matches_pandas_pairwise(frame, prof):
    cols = prof.corr_columns
    ref = frame[cols].astype(float).corr().to_numpy()
    np.testing.assert_allclose(prof.corr, ref, atol=1e-10)


def test_target_iv_and_rates(frame, prof):
    y = (frame["creditability"] == "bad").to_numpy(dtype=int)
    for col in ("duration_in_month", "age_in_years", "credit_amount"):
        assert prof.columns[col].target["iv"] == pytest.approx(naive_iv(frame[col], y), rel=1e-10)
    bins = prof.columns["status_of_existing_checking_account"].target["bins"]
    rates = frame.groupby("status_of_existing_checking_account")["creditability"].apply(lambda s: (s == "bad").mean())
    for b in bins:
        assert b["bad_rate"] == pytest.approx(rates[b["bin"]])
        assert b["woe"] == pytest.approx(
            math.log((b["bad"] / y.sum()) / ((b["count"] - b["bad"]) / (len(y) - y.sum())))
        )
    assert prof.iv_table()["column"].iloc[0] == "status_of_existing_checking_account"
    assert prof.target_summary["bad_rate"] == pytest.approx(0.3)


def test_outputs_and_file_formats(frame, prof, tmp_path):
    paths = prof.write(tmp_path)
    html = paths["html"].read_text()
    data = json.loads(paths["json"].read_text())
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert data["columns"]["credit_amount"]["stats"]["mean"] == prof.columns["credit_amount"].stats["mean"]
    assert data["overview"]["rows"] == len(frame)
    assert data["iv"][0]["column"] == "status_of_existing_checking_account"
    small = frame[["duration_in_month", "purpose", "creditability"]]
    small.to_parquet(tmp_path / "d.parquet")
    small.to_csv(tmp_path / "d.csv", index=False)
    small.to_excel(tmp_path / "d.xlsx", index=False)
    ivs = [profile(tmp_path / f"d.{ext}", target="creditability").columns["purpose"].target["iv"]
           for ext in ("parquet", "csv", "xlsx")]
    assert ivs == pytest.approx([prof.columns["purpose"].target["iv"]] * 3)


def test_missing_target_rows_are_left_out(frame):
    df = frame[["duration_in_month", "purpose", "creditability"]].copy()
    df.loc[df.index[:50], "creditability"] = None
    p = profile(df, target="creditability")
    ref = profile(df.iloc[50:], target="creditability")
    assert p.target_summary["missing"] == 50
    assert p.columns["duration_in_month"].target["iv"] == pytest.approx(ref.columns["duration_in_month"].target["iv"])
    assert p.columns["purpose"].target["iv"] == pytest.approx(ref.columns["purpose"].target["iv"])
    assert p.columns["duration_in_month"].n == len(df)


def test_infinities_counted_not_crashing():
    df = pd.DataFrame({"x": [1.0, 2.0, np.inf, -np.inf, np.nan, 3.0], "y": [0, 1, 0, 1, 0, 1]})
    p = profile(df, target="y")
    c = p.columns["x"]
    assert c.stats["infinite"] == 2 and "has_infinite" in c.flags
    assert c.stats["max"] == 3.0 and c.stats["mean"] == pytest.approx(2.0)


def test_bad_input(frame, tmp_path):
    with pytest.raises(InvalidInput, match="binary"):
        profile(frame, target="duration_in_month")
    with pytest.raises(InvalidInput, match="only one class"):
        profile(frame.assign(t=1), target="t")
    with pytest.raises(InvalidInput, match="nope"):
        profile(frame, target="nope")
    with pytest.raises(InvalidInput, match="mix types"):
        profile(pd.DataFrame({"m": pd.Series([1, "a", 2.5], dtype=object)}))
    with pytest.raises(NotFound):
        profile(tmp_path / "missing.csv")
    with pytest.raises(InvalidInput, match="unsupported"):
        (tmp_path / "x.json").write_text("{}")
        profile(tmp_path / "x.json")


def test_profile_cli(tmp_path):
    import click
    from click.testing import CliRunner

    from shipyard.data.cli import register

    group = click.Group("shipyard")
    register(group)
    res = CliRunner().invoke(group, ["profile", str(GERMAN_CSV), "--target", "creditability",
                                     "-o", str(tmp_path / "p.html"), "--json", str(tmp_path / "p.json")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "p.html").exists() and "status_of_existing_checking_account" in res.output
    assert json.loads((tmp_path / "p.json").read_text())["overview"]["columns"] == 20


def test_profile_and_binner_give_one_iv_for_the_same_bins():
    """`shipyard profile` and `shipyard bin` share one WOE/IV definition: with one bin per category
    (a category without bads among them) both give the IV of a naive implementation of the rule."""
    from shipyard.risk.binning import Binner

    rng = np.random.default_rng(5)
    n = 2000
    cat = rng.choice(["a", "b", "c", "d"], size=n, p=[0.4, 0.3, 0.2, 0.1])
    y = (rng.random(n) < np.select([cat == "a", cat == "b", cat == "c"], [0.1, 0.3, 0.5], 0.0)).astype(int)
    assert y[cat == "d"].sum() == 0  # one bin has no bads: the smoothing decides its WOE
    frame = pd.DataFrame({"cat": cat, "y": y})
    prof_iv = profile(frame, target="y").columns["cat"].target["iv"]
    binner = Binner(cuts={"cat": [["a"], ["b"], ["c"], ["d"]]}).fit(frame[["cat"]], y)
    B, G = y.sum(), n - y.sum()
    naive = 0.0
    for c in "abcd":
        b = int(y[cat == c].sum())
        g = int((cat == c).sum()) - b
        b, g = (b or 0.5), (g or 0.5)
        naive += (b / B - g / G) * math.log((b / B) / (g / G))
    assert binner.bins_["cat"].iv == pytest.approx(naive, rel=1e-12)
    assert prof_iv == pytest.approx(naive, rel=1e-12)
