"""The German credit example applies and builds its training set point-in-time (no future snapshot leaks)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from shipyard.workspace import Workspace

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "german_credit"


def test_german_credit_training_set(sqlite_workspace: Workspace, tmp_path: Path) -> None:
    root = tmp_path / "german_credit"
    shutil.copytree(EXAMPLE / "features", root / "features", ignore=shutil.ignore_patterns("__pycache__"))
    plan = sqlite_workspace.features.apply(root)
    assert {c.name for c in plan.added} >= {"applicant", "applicant_profile", "applicant_account", "monthly",
                                            "credit_scoring"}
    apps = pd.read_parquet(root / "data" / "applications.parquet")
    got = sqlite_workspace.features.get_training_set(apps, service="credit_scoring")
    assert len(got) == 1000 and got["bad"].sum() == 300
    raw = pd.read_csv(Path(__file__).resolve().parents[2] / "src/shipyard/demo/germancredit.csv")
    assert got["credit_amount"].tolist() == raw["credit_amount"].tolist()  # never the later (x10) snapshot
    assert (got["purpose"] == raw["purpose"]).all()
    assert got["monthly_amount"].round(6).tolist() == (raw["credit_amount"] / raw["duration_in_month"]).round(6).tolist()
