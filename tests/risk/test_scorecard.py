"""Scorecard scaling, JSON round trip, model flavor; variable selection; the bin command."""

from __future__ import annotations

import json
import math

import click
import numpy as np
import pytest
from click.testing import CliRunner

from shipyard.errors import InvalidInput
from shipyard.risk import Binner, Scorecard, select_variables
from shipyard.risk.scorecard import scaling
from shipyard.risk.selection import logit_loglik


@pytest.fixture(scope="module")
def card(german):
    X, y = german
    return Scorecard(binner=Binner(max_bins=6), pdo=20, base_score=600, base_odds=50).fit(X, y)


def test_scaling_constants():
    factor, offset = scaling(20, 600, 50)
    assert factor == pytest.approx(20 / math.log(2))
    assert offset == pytest.approx(600 - 20 / math.log(2) * math.log(50))


def test_points_equal_offset_plus_factor_log_odds(card, german):
    X, _ = german
    s = card.predict_score(X)
    p = card.predict_proba(X)[:, 1]
    np.testing.assert_allclose(s, card.offset_ + card.factor_ * np.log((1 - p) / p), rtol=0, atol=1e-9)
    # and p is the logistic regression's own probability on the WOE features
    W = card.binner_.transform(X)
    eta = card.intercept_ + W @ np.array(list(card.coef_.values()))
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-eta)), atol=1e-12)
    # sum of the points table rows picked by each record's bins
    t = card.points_table()
    assert t.loc[0, "points"] == pytest.approx(card.base_points_)
    row0 = card.base_points_ + sum(card.points_[n][card.binner_.bins_[n].bin_index(
        card.binner_._column_values(card.binner_.bins_[n], X[n].head(1)))[0]] for n in card.points_)
    assert s[0] == pytest.approx(row0, abs=1e-9)


def test_base_odds_give_base_score(card):
    # odds of 50:1 good:bad <=> p = 1/51 maps to the base score; doubling odds adds PDO
    assert card.offset_ + card.factor_ * math.log(50) == pytest.approx(600)
    assert card.offset_ + card.factor_ * math.log(100) == pytest.approx(620)


def test_auc_is_sensible(card, german):
    from sklearn.metrics import roc_auc_score

    X, y = german
    assert roc_auc_score(y, card.predict_proba(X)[:, 1]) > 0.78
    assert roc_auc_score(y, -card.predict_score(X)) == pytest.approx(roc_auc_score(y, card.predict_proba(X)[:, 1]))


def test_spec_round_trip_keeps_scaling(card, german):
    X, _ = german
    spec = json.loads(json.dumps(card.to_spec()))
    again = Scorecard.from_spec(spec)
    assert (again.pdo, again.base_score, again.base_odds) == (20, 600, 50)
    assert again.factor_ == card.factor_ and again.offset_ == card.offset_
    np.testing.assert_array_equal(again.predict_score(X), card.predict_score(X))
    assert again.to_spec() == card.to_spec()


def test_rounded_points(german):
    X, y = german
    c = Scorecard(round_points=True).fit(X, y)
    assert all(np.all(p == np.round(p)) for p in c.points_.values())
    assert np.all(c.predict_score(X) == np.round(c.predict_score(X)))


def test_string_target_with_bad(german):
    X, y = german
    labels = np.where(y == 1, "default", "repaid")
    c = Scorecard(binner=Binner(max_bins=4), bad="default").fit(X, labels)
    ref = Scorecard(binner=Binner(max_bins=4)).fit(X, y)
    np.testing.assert_allclose(c.predict_score(X), ref.predict_score(X))
    res = select_variables(X, labels, bad="default", stepwise=None)
    assert res.selected == select_variables(X, y, stepwise=None).selected


def test_bad_scaling():
    with pytest.raises(InvalidInput, match="pdo"):
        scaling(0, 600, 50)
    with pytest.raises(InvalidInput, match="base_odds"):
        scaling(20, 600, -1)


def test_scorecard_flavor_scores_identically(card, german, tmp_path):
    from shipyard.models import load_model, save_model

    X, _ = german
    path = save_model(card, tmp_path / "card", input_example=X.head(3))
    model = load_model(path)
    assert model.flavor == "scorecard"
    np.testing.assert_array_equal(model.predict(X.head(50)), card.predict_score(X.head(50)))
    rec = X.iloc[7].to_dict()
    assert model.predict(rec)[0] == card.predict_score(X.iloc[[7]])[0]
    arr = X[model.input_names].head(20).to_numpy(dtype=object)
    np.testing.assert_array_equal(model.predict_array(arr), card.predict_score(X.head(20)))


def test_selection_table(german):
    X, y = german
    res = select_variables(X, y, min_iv=0.02, max_corr=0.7, max_vif=10)
    t = res.table.set_index("variable")
    assert set(res.selected) == set(t.index[t["kept"]])
    assert (t.loc[t["step"] == "iv", "iv"] < 0.02).all()
    assert (t.loc[res.selected, "iv"] >= 0.02).all()
    assert t["reason"].str.len().gt(0).all()
    assert "status_of_existing_checking_account" in res.selected
    # forced correlation drop: a copy of a variable is dropped for correlation with the original
    X2 = X.assign(duration_copy=X["duration_in_month"] + 0.0)
    t2 = select_variables(X2, y, stepwise=None).table.set_index("variable")
    dropped = t2.loc[["duration_in_month", "duration_copy"], "step"].tolist()
    assert sorted(dropped) == ["", "correlation"]


def test_logit_loglik_matches_sklearn():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = (rng.random(400) < 1 / (1 + np.exp(-X @ [1.0, -0.5, 0.2]))).astype(float)
    lr = LogisticRegression(C=1e10, tol=1e-12, max_iter=10000).fit(X, y)
    p = lr.predict_proba(X)[:, 1]
    ref = float(np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)))
    assert logit_loglik(X, y) == pytest.approx(ref, abs=1e-6)


def test_bin_command(tmp_path):
    from shipyard.risk.cli import register
    from tests.risk.conftest import GERMAN

    @click.group()
    def root() -> None:
        pass

    register(root)
    out = tmp_path / "spec.json"
    res = CliRunner().invoke(root, ["bin", str(GERMAN), "--target", "creditability", "--method", "chimerge",
                                    "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "status_of_existing_checking_account" in res.output and "total" in res.output
    spec = json.loads(out.read_text())
    assert spec["format"] == "shipyard.binning" and len(spec["features"]) == 20
    b = Binner.from_spec(spec)
    total = float(res.output.split("total")[1].split()[0])
    assert total == pytest.approx(b.iv_table()["iv"].sum(), abs=1e-4)
    bad = CliRunner().invoke(root, ["bin", str(GERMAN), "--target", "nope"])
    assert bad.exit_code != 0 and "target column 'nope'" in bad.output
