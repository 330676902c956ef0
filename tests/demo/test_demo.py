"""The demo runs the whole lifecycle and its served decision follows the scene's arithmetic."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from shipyard.demo.run import run_demo


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path) -> None:
    lines: list[str] = []
    tmp_path = tmp_path / ".local"  # where the demo writes by default: under a hidden folder
    out = run_demo(tmp_path / "demo", say=lines.append)
    assert out["training_rows"] == 1000
    assert 0.70 < out["scorecard_auc"] < 0.95 and 0.3 < out["scorecard_ks"] < 0.8
    assert out["registry_matches_in_process"] is True
    assert sum(r.rows_written for r in out["materialized"]) == 2000  # 1,000 applicants × 2 views
    for name in ("data_quality", "scorecard_report"):
        assert (tmp_path / "demo" / "reports" / f"{name}.html").stat().st_size > 1000
        assert (tmp_path / "demo" / "reports" / f"{name}.json").exists()

    served = out["response"]["outputs"]
    # recompute the fusion and the policy from the two model outputs
    from shipyard.workspace import connect

    ws = connect(tmp_path / "demo")
    card = ws.registry.load("credit_scorecard", "champion").native
    # registered by the first admin, approved by a different, signed-in reviewer
    version = ws.registry.get_version("credit_scorecard", "champion")
    assert (version.created_by, version.approved_by) == ("admin", "reviewer")
    pd_card = 1 / (1 + math.exp((served["points"] - card.offset_) / card.factor_))
    assert served["pd"] == pytest.approx(0.5 * pd_card + 0.5 * served["pd_xgb"], rel=1e-12)
    expected = "reject" if served["pd"] > 0.5 else "review" if served["pd"] > 0.3 else "approve"
    assert served["decision"] == expected
    assert any(line.startswith("[9/9] POST /v1/scenes/credit_apply/predict") for line in lines)
    # it ends with a one-time login link to the web UI, for the first admin, on the demo's project
    assert lines[-1].strip() == out["login_link"] and "/#/link?token=shy_" in out["login_link"]
    assert ws_user_of_link(tmp_path / "demo", out["login_link"]) == "admin"
    _check_xgboost_quality(ws, tmp_path / "demo", out)
    report = (tmp_path / "demo" / "reports" / "scorecard_report.json").read_text()
    assert '"model": "credit_scorecard"' in report
    daily = out["daily_report"]  # the demo ends with the scene's daily report of its own traffic
    assert daily["served"] == 300 and daily["rows"] == 301 and not daily["plugin_errors"]  # + the HTTP request
    assert lines[-3].startswith("      daily report of credit_apply")  # then the UI's two lines
    assert (tmp_path / "demo" / "reports" / "daily_report.html").stat().st_size > 10_000
    ws.close()


def ws_user_of_link(project: Path, link: str) -> str:
    from urllib.parse import parse_qs, urlsplit

    from shipyard.auth.principal import SERVER
    from shipyard.config import load_settings
    from shipyard.workspace import Workspace

    query = parse_qs(urlsplit(link).fragment.partition("?")[2])
    assert query["project"] == ["default"]
    ws = Workspace(load_settings(project), principal=SERVER)
    try:
        return ws.auth.use_login_link(query["token"][0])
    finally:
        ws.close()


def _check_xgboost_quality(ws, project: Path, out: dict) -> None:
    """The registered XGBoost model scores the test split with the AUC the demo printed (computed
    again by scikit-learn), beats the old 8-numeric-feature model, and is as good as a plain
    scikit-learn reference (one-hot categories + logistic regression) on the same split."""
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from xgboost import XGBClassifier

    apps = pd.read_parquet(project / "data" / "applications.parquet")
    data = ws.features.get_training_set(apps, service="credit_scoring")
    features = [c for c in data.columns if c not in ("applicant_id", "event_timestamp", "bad")]
    train, test = train_test_split(data, test_size=0.3, random_state=7, stratify=data["bad"])
    y_train, y_test = train["bad"].to_numpy(), test["bad"].to_numpy()

    served = ws.registry.load("credit_xgb", "champion").predict(test[features])
    assert roc_auc_score(y_test, served) == pytest.approx(out["xgb_auc"], abs=1e-12)

    numeric = [c for c in features if pd.api.types.is_numeric_dtype(data[c])]
    categorical = [c for c in features if c not in numeric]
    assert len(categorical) >= 5  # the model uses the categorical features too
    old = XGBClassifier(n_estimators=200, max_depth=3, learning_rate=0.05, subsample=0.9, random_state=7)
    old_auc = roc_auc_score(y_test, old.fit(train[numeric].astype(float), y_train)
                            .predict_proba(test[numeric].astype(float))[:, 1])
    reference = make_pipeline(
        ColumnTransformer([("num", StandardScaler(), numeric),
                           ("cat", OneHotEncoder(handle_unknown="ignore"), categorical)]),
        LogisticRegression(max_iter=5000))
    ref_auc = roc_auc_score(y_test, reference.fit(train[features], y_train).predict_proba(test[features])[:, 1])
    assert out["xgb_auc"] > old_auc + 0.1
    assert out["xgb_auc"] >= ref_auc - 0.02
    assert np.isfinite(out["xgb_ks"]) and 0.3 < out["xgb_ks"] < 0.8


def test_demo_writes_to_the_user_data_folder_unless_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not into the current folder (a source checkout would get an untracked folder), and it says where."""
    from click.testing import CliRunner

    import shipyard.demo.run as demo_run
    from shipyard.cli import main

    called: list[Path] = []

    def fake_run(directory, say):  # noqa: ANN001, ANN202 - stands in for the minutes-long demo
        called.append(Path(directory))
        return {"project": str(Path(directory).resolve())}

    monkeypatch.setattr(demo_run, "run_demo", fake_run)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    (tmp_path / "checkout").mkdir()
    monkeypatch.chdir(tmp_path / "checkout")
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 0, result.output
    assert called == [tmp_path / "data" / "shipyard" / "demo"]
    assert f"The demo's project is {(tmp_path / 'data' / 'shipyard' / 'demo').resolve()}" in result.output
    assert list((tmp_path / "checkout").iterdir()) == []  # nothing written where it ran
    result = CliRunner().invoke(main, ["demo", "--path", str(tmp_path / "here")])
    assert result.exit_code == 0 and called[-1] == tmp_path / "here"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.delenv("LOCALAPPDATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert demo_run.default_demo_path() == tmp_path / "home" / ".local" / "share" / "shipyard" / "demo"
