"""The shipped Grafana dashboard and Prometheus rules parse and name only metrics /metrics exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from shipyard.serving.metrics import ServingMetrics

ROOT = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
NAME = re.compile(r"\bshipyard_[a-z_]+")


GROUPING = re.compile(r"\bby \(([^)]*)\)")
LABELS = re.compile(r'([a-z_]+)="')


def _exposition() -> str:
    m = ServingMetrics()
    m.observe("s", "1", "control", 0.01, 0.002, 0.005, fallback=True)
    m.error("s", "1", "control", "model_error", 500)
    m.step_failure("s", "1", "control", "model", "fallback")
    m.log_dropped.inc()
    return m.render().decode()


def _exposed() -> set[str]:
    text = _exposition()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def _exprs() -> list[str]:
    dashboard = json.loads((ROOT / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    rules = yaml.safe_load((ROOT / "prometheus-alerts.yaml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    return exprs


def test_dashboard_and_rules_name_existing_metrics() -> None:
    exposed = _exposed()
    dashboard = json.loads((ROOT / "grafana-dashboard.json").read_text())
    exprs = _exprs()
    used = {n for e in exprs for n in NAME.findall(e)}
    assert used and used <= exposed, f"not exposed: {sorted(used - exposed)}"
    rules = yaml.safe_load((ROOT / "prometheus-alerts.yaml").read_text())
    assert len(dashboard["panels"]) >= 6 and all(r["alert"] for g in rules["groups"] for r in g["rules"])


def test_dashboard_and_rules_group_by_exposed_labels_and_keep_projects_apart() -> None:
    """Every label grouped by is one /metrics exposes, and a grouping by scene also groups by
    project (hosted projects may have scenes of the same name)."""
    labels = set(LABELS.findall(_exposition()))
    assert {"project", "scene"} <= labels
    groupings = [[g.strip() for g in found.split(",")] for e in _exprs() for found in GROUPING.findall(e)]
    assert groupings
    for grouping in groupings:
        assert set(grouping) <= labels, grouping
        assert "scene" not in grouping or "project" in grouping, grouping
