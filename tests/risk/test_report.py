"""Model report and shared report rendering: HTML is self-contained, JSON twin holds the same numbers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.stats import ks_2samp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from shipyard.errors import InvalidInput
from shipyard.reports import (
    Chart,
    Metrics,
    Section,
    Table,
    Text,
    bar_chart,
    histogram,
    line_chart,
    render_report,
    report_dict,
)
from shipyard.risk import metrics as M
from shipyard.risk.report import ModelReport

GERMAN_CSV = Path(__file__).resolve().parents[2] / "src" / "shipyard" / "demo" / "germancredit.csv"


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    df = pd.read_csv(GERMAN_CSV)
    y = (df["creditability"] == "bad").astype(int)
    X = df[["duration_in_month", "credit_amount", "age_in_years"]]
    model = LogisticRegression(max_iter=2000).fit(X[:600], y[:600])
    df["pd"] = model.predict_proba(X)[:, 1]
    df["points"] = 600 - 50 / np.log(2) * np.log(df["pd"] / (1 - df["pd"]))
    return df[:600].reset_index(drop=True), df[600:800].reset_index(drop=True), df[800:].reset_index(drop=True)


def _self_contained(html: str) -> None:
    assert "<script" not in html
    assert not re.search(r"(src|href)=\"https?://", html)
    assert "<link" not in html
    assert html.count("<svg") >= 1


def test_report_numbers_match_references(frames, tmp_path):
    train, test, oot = frames
    rep = ModelReport.from_frames(train, target="creditability", score="pd", test=test, oot=oot,
                                  feature_columns=["age_in_years", "purpose"])
    for name, df in (("train", train), ("test", test), ("oot", oot)):
        y = (df["creditability"] == "bad").to_numpy(dtype=int)
        s = rep.summary[name]
        assert s["auc"] == pytest.approx(roc_auc_score(y, df["pd"]), abs=1e-12)
        assert s["ks"] == pytest.approx(ks_2samp(df["pd"][y == 1], df["pd"][y == 0]).statistic, abs=1e-12)
        assert s["gini"] == pytest.approx(2 * s["auc"] - 1)
    assert rep.summary["oot"]["psi_vs_train"] == pytest.approx(M.psi(train["pd"], oot["pd"], 10))
    fpsi = rep.feature_psi.set_index("feature")
    assert fpsi.loc["purpose", "psi_test"] == pytest.approx(M.psi(train["purpose"], test["purpose"]))

    paths = rep.write(tmp_path)
    html = paths["html"].read_text()
    data = json.loads(paths["json"].read_text())
    _self_contained(html)
    assert "ROC" in html and "Stability (PSI)" in html
    blocks = {b.get("name"): b for s in data["sections"] for b in s["blocks"] if b["type"] == "table"}
    summary_rows = {r["dataset"]: r for r in blocks["summary"]["rows"]}
    assert summary_rows["test"]["ks"] == pytest.approx(rep.summary["test"]["ks"], abs=0)
    assert f"{rep.summary['train']['auc']:.4g}" in html  # the HTML shows the JSON's number
    dec = [b for s in data["sections"] for sub in s["subsections"] for b in sub["blocks"]
           if b.get("name") == "lift_deciles"][0]
    assert sum(r["count"] for r in dec["rows"]) == len(train)


def test_higher_is_good_scores_report_original_scale(frames):
    train, test, _ = frames
    a = ModelReport.from_frames(train, target="creditability", score="pd", test=test)
    b = ModelReport.from_frames(train, target="creditability", score="points", test=test, higher_is_bad=False)
    for name in ("train", "test"):
        assert b.summary[name]["auc"] == pytest.approx(a.summary[name]["auc"], abs=1e-12)
        assert b.summary[name]["ks"] == pytest.approx(a.summary[name]["ks"], abs=1e-12)
    y = (train["creditability"] == "bad").to_numpy()
    conf = b.confusion["train"]
    pred_bad = train["points"].to_numpy() <= b.cutoff
    assert conf["tp"] == int((pred_bad & y).sum())
    t = b.lift["train"]
    assert (t["min_score"] <= t["max_score"]).all()
    assert t["bad_rate"].iloc[0] >= t["bad_rate"].iloc[-1]  # riskiest band = lowest points first


def test_report_bad_input(frames):
    train, _, _ = frames
    with pytest.raises(InvalidInput, match="nope"):
        ModelReport.from_frames(train, target="nope", score="pd")
    bad = train.assign(pd=train["pd"].where(train.index != 3, np.inf))
    with pytest.raises(InvalidInput, match="infinite"):
        ModelReport.from_frames(bad, target="creditability", score="pd")
    with pytest.raises(InvalidInput, match="one class"):
        ModelReport({"train": (np.zeros(5), np.arange(5.0))})
    with pytest.raises(InvalidInput, match="lengths"):
        ModelReport({"train": (np.array([0, 1, 0]), np.arange(5.0))})


def test_render_report_blocks_and_json_twin():
    svg_line = line_chart({"a": ([0, 1, 2], [0, 0.5, 1]), "b": ([0, 2], [1, np.nan])}, title="t <x>", diagonal=True)
    svg_bar = bar_chart(["x", "y", "z"], {"g1": [1, 2, 3], "g2": [3, 2, 1]}, line=[0.1, 0.2, np.nan])
    svg_hist = histogram(np.r_[np.random.default_rng(0).normal(size=500), np.inf], bins=10)
    for svg in (svg_line, svg_bar, svg_hist):
        assert svg.startswith("<svg") and svg.endswith("</svg>") and "NaN" not in svg and "nan" not in svg
    assert "t &lt;x&gt;" in svg_line
    assert svg_hist.count("<rect") == 10
    sections = [Section("One", [Text("<b>escaped</b>"), Metrics({"auc": 0.123456, "n": 1234567}),
                                Table.from_frame(pd.DataFrame({"a": [1, 2], "b": [0.5, None]}), "tbl", "t1"),
                                Chart(svg_line, "c", {"x": [1, 2]})]),
                Section("Two", subsections=[Section("Nested", [Text("deep")], collapsed=True)])]
    html = render_report("Title & co", sections, meta={"rows": 10})
    _self_contained(html)
    assert "&lt;b&gt;escaped&lt;/b&gt;" in html and "Title &amp; co" in html
    assert "1,234,567" in html and "0.1235" in html and "<details" in html
    d = report_dict("Title & co", sections)
    assert d["sections"][0]["blocks"][1]["values"] == {"auc": 0.123456, "n": 1234567}
    assert d["sections"][0]["blocks"][2]["rows"] == [{"a": 1, "b": 0.5}, {"a": 2, "b": None}]
    assert d["sections"][0]["blocks"][3]["data"] == {"x": [1, 2]}
    json.dumps(d)


def test_evaluate_cli(frames, tmp_path):
    import click

    from shipyard.risk.report_cli import register

    train, test, oot = frames
    train.to_csv(tmp_path / "train.csv", index=False)
    oot.to_parquet(tmp_path / "oot.parquet")
    group = click.Group("shipyard")
    register(group)
    out = tmp_path / "r.html"
    res = CliRunner().invoke(group, ["evaluate", str(tmp_path / "train.csv"), "--target", "creditability",
                                     "--score", "pd", "--oot", str(tmp_path / "oot.parquet"), "-o", str(out),
                                     "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert out.exists() and "oot" in res.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["meta"]["datasets"] == "train, oot"


def test_report_shows_the_model_name(frames, tmp_path):
    import click

    from shipyard.risk.report_cli import register

    train, _, _ = frames
    train.to_csv(tmp_path / "train.csv", index=False)
    group = click.Group("shipyard")
    register(group)
    res = CliRunner().invoke(group, ["evaluate", str(tmp_path / "train.csv"), "--target", "creditability",
                                     "--score", "pd", "--model", "credit_xgb", "-o", str(tmp_path / "r.html"),
                                     "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "r.json").read_text())["meta"]["model"] == "credit_xgb"
    assert "credit_xgb" in (tmp_path / "r.html").read_text()
