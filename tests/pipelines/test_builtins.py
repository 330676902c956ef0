"""Built-in modelling components called directly, each checked against an independent computation
(scikit-learn, LightGBM or a naive formula)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_score

from shipyard.pipelines.builtins import data as b_data
from shipyard.pipelines.builtins import modelling as b_model
from shipyard.pipelines.context import NodeContext


def _ctx(tmp_path: Path, name: str = "n") -> NodeContext:
    return NodeContext(name, run_id=None, pipeline_run_id="t", resolved={}, out_dir=tmp_path / name)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(42)
    n = 1500
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    grade = rng.choice(["A", "B", "C"], n)
    logit = -1.2 + 1.1 * x1 - 0.7 * x2 + np.where(grade == "C", 0.8, 0.0)
    return pd.DataFrame({"x1": x1, "x2": x2, "noise": rng.normal(size=n), "grade": grade,
                         "month": rng.integers(1, 13, n), "bad": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)})


def test_split_methods(frame: pd.DataFrame, tmp_path: Path) -> None:
    parts = b_data.split(_ctx(tmp_path), frame, target="bad", method="stratified", test_size=0.25, seed=3)
    assert len(parts["train"]) + len(parts["test"]) == len(frame) and len(parts["test"]) == 375
    assert parts["test"]["bad"].mean() == pytest.approx(frame["bad"].mean(), abs=0.005)
    oot = b_data.split(_ctx(tmp_path), frame, target="bad", method="oot", time_column="month", cutoff=9)
    assert oot["train"]["month"].max() == 9 and oot["test"]["month"].min() == 10
    assert len(oot["test"]) == int((frame["month"] > 9).sum())


def test_woe_models_match_scikit_learn_on_the_woe_matrix(frame: pd.DataFrame, tmp_path: Path) -> None:
    train = frame.drop(columns=["month"])
    binner = b_model.bin_woe(_ctx(tmp_path), train, target="bad", max_bins=5)
    features = ["x1", "x2", "grade"]
    lr = b_model.train_model(_ctx(tmp_path), train, target="bad", features=features, binner=binner,
                             algorithm="lr", params={"C": 0.5})
    woe = b_model._subset_binner(binner, features, train, train["bad"].to_numpy()).transform(train[features])
    reference = LogisticRegression(C=0.5, max_iter=1000).fit(woe, train["bad"])
    np.testing.assert_allclose(lr.predict_proba(train[features])[:, 1], reference.predict_proba(woe)[:, 1],
                               rtol=1e-10)
    from lightgbm import LGBMClassifier

    gbm = b_model.train_model(_ctx(tmp_path), train, target="bad", features=["x1", "x2", "noise"],
                              algorithm="lightgbm", seed=5, params={"n_estimators": 50})
    direct = LGBMClassifier(n_estimators=50, num_leaves=15, learning_rate=0.05, n_jobs=1, deterministic=True,
                            random_state=5, verbose=-1).fit(train[["x1", "x2", "noise"]], train["bad"])
    np.testing.assert_array_equal(gbm.predict_proba(train[["x1", "x2", "noise"]]),
                                  direct.predict_proba(train[["x1", "x2", "noise"]]))
    tree = b_model.train_model(_ctx(tmp_path), train, target="bad", features=["x1", "x2"], algorithm="tree")
    assert roc_auc_score(train["bad"], tree.predict_proba(train[["x1", "x2"]])[:, 1]) > 0.65
    with pytest.raises(ValueError, match="not numeric"):
        b_model.train_model(_ctx(tmp_path), train, target="bad", algorithm="xgboost")


def test_tune_reports_the_cross_validated_auc_of_its_best_point(frame: pd.DataFrame, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    cols = ["x1", "x2", "noise"]
    out = b_model.tune(ctx, frame[[*cols, "bad"]], target="bad", algorithm="lr", n_trials=8, folds=3, seed=1,
                       space={"C": [0.001, 10.0]})
    c = out["params"]["C"]
    assert 0.001 <= c <= 10.0
    folds = StratifiedKFold(3, shuffle=True, random_state=1)
    expected = cross_val_score(LogisticRegression(C=c, max_iter=1000), frame[cols], frame["bad"], cv=folds,
                               scoring="roc_auc").mean()
    assert ctx.metrics["cv_auc"] == pytest.approx(expected, rel=1e-9)
    assert ctx.metrics["trials"] == 8 and 0 <= ctx.metrics["pruned"] < 8
    refit = LogisticRegression(C=c, max_iter=1000).fit(frame[cols], frame["bad"])
    np.testing.assert_allclose(out["model"].predict_proba(frame[cols]), refit.predict_proba(frame[cols]), rtol=1e-9)


def test_rule_mining_stays_within_its_hit_rate_budget(frame: pd.DataFrame, tmp_path: Path) -> None:
    from shipyard.risk.rules import RuleSet

    spec = b_model.rule_mining(_ctx(tmp_path), frame, target="bad", features=["x1", "x2", "grade"],
                               max_hit_rate=0.15, min_lift=1.2)
    rules = RuleSet.from_spec(spec)
    assert rules.rules
    hits = rules.evaluate(frame)
    assert hits.mean() <= 0.15 + 1e-12
    assert frame.loc[hits, "bad"].mean() > frame["bad"].mean()  # the flagged rows are riskier


def _naive_psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)[1:-1]))
    bounds = [-np.inf, *edges, np.inf]
    total = 0.0
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        e = max(np.mean((expected > lo) & (expected <= hi)), eps)
        a = max(np.mean((actual > lo) & (actual <= hi)), eps)
        total += (a - e) * np.log(a / e)
    return total


def test_daily_report_score_psi_and_auc(frame: pd.DataFrame, tmp_path: Path) -> None:
    cols = ["x1", "x2"]
    model = LogisticRegression().fit(frame[cols], frame["bad"])
    reference, current = frame.iloc[:700], frame.iloc[700:].assign(x1=lambda d: d["x1"] + 0.5)
    ctx = _ctx(tmp_path)
    metrics = b_model.daily_report(ctx, model, current, reference, target="bad")
    ref_score, cur_score = model.predict_proba(reference[cols])[:, 1], model.predict_proba(current[cols])[:, 1]
    assert metrics["score_psi"] == pytest.approx(_naive_psi(ref_score, cur_score), rel=1e-9)
    assert metrics["psi_x1"] == pytest.approx(_naive_psi(reference["x1"].to_numpy(), current["x1"].to_numpy()),
                                              rel=1e-9)
    assert metrics["auc"] == pytest.approx(roc_auc_score(current["bad"], cur_score), rel=1e-12)
    assert (tmp_path / "n" / "report.html").exists()
