"""The demo runs the whole lifecycle and its served decision follows the scene's arithmetic."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from shipyard.demo.run import run_demo


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path) -> None:
    lines: list[str] = []
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
    assert lines[-3].startswith("[9/9] POST /v1/scenes/credit_apply/predict")
    daily = out["daily_report"]  # the demo ends with the scene's daily report of its own traffic
    assert daily["served"] == 300 and daily["rows"] == 301 and not daily["plugin_errors"]  # + the HTTP request
    assert lines[-1].startswith("      daily report of credit_apply")
    assert (tmp_path / "demo" / "reports" / "daily_report.html").stat().st_size > 10_000
    ws.close()
