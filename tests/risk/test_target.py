"""One target parser for the whole risk toolkit: every API reads the same labels, takes the same
``bad=``, and refuses the same bad targets with the same message."""

from __future__ import annotations

import json
import warnings

import click
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

from shipyard.data.profile import profile
from shipyard.errors import InvalidInput
from shipyard.risk import metrics as M
from shipyard.risk.binning import Binner
from shipyard.risk.report import ModelReport
from shipyard.risk.rules import Condition, Rule, rule_stats
from shipyard.risk.scorecard import Scorecard
from shipyard.risk.selection import select_variables
from shipyard.risk.target import binary_target

from .conftest import synthetic

# (good label, bad label) written the ways users write them; all read without bad=
RECOGNISED = [
    (0, 1), (0.0, 1.0), (False, True), ("good", "bad"), ("GOOD", "Bad"), ("N", "Y"), ("n", "y"),
    ("no", "yes"), (" No ", "YES"), ("0", "1"), ("false", "true"), ("False", "True"),
]


def _labels(y: np.ndarray, good: object, bad: object) -> np.ndarray:
    return np.array([bad if v else good for v in y], dtype=object if isinstance(good, str) else None)


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    X, y = synthetic(1500, seed=3)
    score = X["x0"].fillna(0).to_numpy() + 0.2 * X["x2"].to_numpy()
    return X, y, score


@pytest.fixture(scope="module")
def reference(data):
    X, y, score = data
    return {
        "spec": Binner(max_bins=5).fit(X, y).to_spec(),
        "auc": roc_auc_score(y, score),
        "selected": select_variables(X, y, stepwise=None).selected,
        "points": Scorecard(binner=Binner(max_bins=4)).fit(X, y).predict_score(X),
    }


def _every_api(X: pd.DataFrame, target: np.ndarray, score: np.ndarray, **bad: object) -> dict[str, object]:
    frame = X.assign(target=target, score=score)
    rule = Rule([Condition("x0", ">", 0.5)], name="x0_high")
    return {
        "parsed": binary_target(target, **bad).tolist(),
        "spec": Binner(max_bins=5, **bad).fit(X, target).to_spec(),
        "auc": M.auc(target, score, **bad),
        "ks": M.ks(target, score, **bad).statistic,
        "selected": select_variables(X, target, stepwise=None, **bad).selected,
        "points": Scorecard(binner=Binner(max_bins=4), **bad).fit(X, target).predict_score(X),
        "report_auc": ModelReport.from_frames(frame, target="target", score="score", **bad).summary["train"]["auc"],
        "report_direct": ModelReport({"train": (target, score)}, **bad).summary["train"]["auc"],
        "rules": rule_stats([rule], frame, target, **bad)["bad"].tolist(),
        "profile_bad_rate": profile(frame[["x0", "target"]], target="target", **bad).target_summary["bad_rate"],
    }


def _check_same(got: dict[str, object], y: np.ndarray, ref: dict[str, object]) -> None:
    assert got["parsed"] == y.tolist()
    assert got["spec"] == ref["spec"]
    assert got["auc"] == pytest.approx(ref["auc"], abs=1e-12)
    assert got["report_auc"] == pytest.approx(ref["auc"], abs=1e-12)
    assert got["report_direct"] == pytest.approx(ref["auc"], abs=1e-12)
    assert got["selected"] == ref["selected"]
    np.testing.assert_allclose(got["points"], ref["points"], rtol=1e-9)
    assert got["profile_bad_rate"] == pytest.approx(y.mean())


@pytest.mark.parametrize(("good", "bad"), RECOGNISED, ids=[f"{g}/{b}" for g, b in RECOGNISED])
def test_recognised_labels_read_alike_everywhere(data, reference, good, bad) -> None:
    X, y, score = data
    _check_same(_every_api(X, _labels(y, good, bad), score), y, reference)


@pytest.mark.parametrize(("good", "bad", "given"), [
    ("repaid", "default", "default"),   # any two labels with bad=
    ("repaid", "default", "DEFAULT"),   # matched ignoring case
    (1, 2, 2), (1, 2, "2"),             # the command line passes text
    ("A", "B", "B"),
])
def test_bad_argument_reads_alike_everywhere(data, reference, good, bad, given) -> None:
    X, y, score = data
    _check_same(_every_api(X, _labels(y, good, bad), score, bad=given), y, reference)


def test_bad_value_still_works_with_a_deprecation_warning(data, reference) -> None:
    X, y, _ = data
    target = _labels(y, "repaid", "default")
    with pytest.warns(DeprecationWarning, match="bad_value= is deprecated.*bad='default'"):
        spec = Binner(max_bins=5, bad_value="default").fit(X, target).to_spec()
    assert spec == reference["spec"]
    with pytest.warns(DeprecationWarning, match="bad_value"):
        card = Scorecard(binner=Binner(max_bins=4), bad_value="default").fit(X, target)
    np.testing.assert_allclose(card.predict_score(X), reference["points"], rtol=1e-9)
    with pytest.warns(DeprecationWarning, match="bad_value"):
        assert select_variables(X, target, stepwise=None, bad_value="default").selected == reference["selected"]
    with pytest.raises(InvalidInput, match="disagree"):
        Binner(bad="repaid", bad_value="default").fit(X, target)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # bad= alone does not warn
        Binner(max_bins=5, bad="default").fit(X, target)


@pytest.mark.parametrize(("target", "message"), [
    ([], r"('(train.)?target'|X) is empty \(0 rows"),
    (["good", "bad", "so-so"], r"must be binary .* 3 distinct values"),
    ([0, 1, 2], r"must be binary .* 3 distinct values"),
    ([1, 2, 1], r"not 0/1; recode it to 0/1 \(1 = bad\) or pass bad="),
    (["paid", "default"], r"cannot tell which value .* pass bad=.*good/bad, Y/N, yes/no, 1/0, True/False"),
    (["bad", "Y"], r"cannot tell which value"),
    (["good", None, "bad"], r"1 missing values; drop those rows"),
    (["good", "good"], r"only one class \(good\)"),
    (["Y", "Y"], r"only one class \(bad\)"),
])
def test_bad_targets_are_refused_alike_everywhere(target, message) -> None:
    n = len(target)
    X = pd.DataFrame({"x": np.arange(n, dtype=float)})
    score = np.arange(n, dtype=float)
    calls = {
        "parser": lambda: binary_target(target),
        "metrics": lambda: M.auc(target, score),
        "binner": lambda: Binner().fit(X, target),
        "scorecard": lambda: Scorecard().fit(X, target),
        "selection": lambda: select_variables(X, target),
        "report": lambda: ModelReport({"train": (target, score)}),
    }
    for name, call in calls.items():
        with pytest.raises(InvalidInput, match=message) as e:
            call()
        assert isinstance(e.value, ValueError), name
        assert e.value.details["field"] in ("target", "train.target", "X"), name


def test_bad_that_does_not_occur_names_the_values() -> None:
    with pytest.raises(InvalidInput, match=r"no value bad='default'; its values are \['bad', 'good'\]"):
        Binner(bad="default").fit(pd.DataFrame({"x": [1.0, 2.0]}), ["good", "bad"])
    with pytest.raises(InvalidInput, match="no value bad='default'"):
        M.ks(["good", "bad"], [0.1, 0.2], bad="default")


def test_an_empty_frame_says_it_is_empty() -> None:
    empty = pd.DataFrame({"x": pd.Series(dtype=float), "c": pd.Series(dtype=object)})
    for call in (lambda: Binner().fit(empty, []), lambda: Scorecard().fit(empty, []),
                 lambda: select_variables(empty, [])):
        with pytest.raises(InvalidInput, match=r"X is empty \(0 rows, 2 columns\)"):
            call()
    with pytest.raises(InvalidInput, match=r"0 feature\(s\) \(shape=\(3, 0\)\)"):
        Binner().fit(pd.DataFrame(index=range(3)), [0, 1, 0])


def _cli_root() -> click.Group:
    from shipyard.data.cli import register as register_data
    from shipyard.risk.cli import register as register_risk
    from shipyard.risk.report_cli import register as register_report

    root = click.Group("shipyard")
    for register in (register_risk, register_data, register_report):
        register(root)
    return root


def test_cli_takes_bad_everywhere_and_warns_on_bad_value(tmp_path, data, reference) -> None:
    X, y, score = data
    path = tmp_path / "d.csv"
    X.assign(outcome=np.where(y == 1, "default", "repaid"), score=score).to_csv(path, index=False)
    root = _cli_root()
    runner = CliRunner()
    res = runner.invoke(root, ["bin", str(path), "--target", "outcome", "--bad", "default", "--max-bins", "5",
                               "-o", str(tmp_path / "spec.json")])
    assert res.exit_code == 0, res.output
    spec = json.loads((tmp_path / "spec.json").read_text())
    assert {f["name"]: f["iv"] for f in spec["features"] if f["name"] != "score"} == pytest.approx(
        {f["name"]: f["iv"] for f in reference["spec"]["features"]}, abs=1e-12)
    old = runner.invoke(root, ["bin", str(path), "--target", "outcome", "--bad-value", "default"])
    assert old.exit_code == 0 and "--bad-value is deprecated" in old.output
    res = runner.invoke(root, ["evaluate", str(path), "--target", "outcome", "--score", "score", "--bad", "default",
                               "-o", str(tmp_path / "r.html"), "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert f"{reference['auc']:8.4f}" in res.output  # the AUC column of the summary line
    res = runner.invoke(root, ["profile", str(path), "--target", "outcome", "--bad", "DEFAULT",
                               "-o", str(tmp_path / "p.html"), "--json", str(tmp_path / "p.json")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "p.json").read_text())["target"]["bad_rate"] == pytest.approx(y.mean())
    no_bad = runner.invoke(root, ["bin", str(path), "--target", "outcome"])
    assert no_bad.exit_code != 0 and "pass bad=" in no_bad.output


def test_missing_columns_are_key_errors_like_pandas(data) -> None:
    from shipyard.errors import MissingColumn

    X, y, _ = data
    card = Scorecard(binner=Binner(max_bins=3)).fit(X, y)
    rule = Rule([Condition("nope", ">", 1.0)], name="r")
    calls = [lambda: card.predict_score(X.drop(columns=["x0"])), lambda: rule.mask(X),
             lambda: rule.matches({"x0": 1.0}), lambda: Binner(columns=["nope"]).fit(X, y)]
    for call in calls:
        with pytest.raises(KeyError) as e:
            call()
        assert isinstance(e.value, MissingColumn) and isinstance(e.value, ValueError)
