"""The shipped Grafana dashboard and Prometheus rules parse and name only metrics /metrics exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from shipyard.serving.metrics import ServingMetrics

ROOT = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
NAME = re.compile(r"\bshipyard_[a-z_]+")


def _exposed() -> set[str]:
    m = ServingMetrics()
    m.observe("s", "1", "control", 0.01, 0.002, 0.005, fallback=True)
    m.error("s", "1", "control", "model_error", 500)
    m.log_dropped.inc()
    text = m.render().decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_dashboard_and_rules_name_existing_metrics() -> None:
    exposed = _exposed()
    dashboard = json.loads((ROOT / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs.append(dashboard["templating"]["list"][1]["query"]["query"])
    rules = yaml.safe_load((ROOT / "prometheus-alerts.yaml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = {n for e in exprs for n in NAME.findall(e)}
    assert used and used <= exposed, f"not exposed: {sorted(used - exposed)}"
    assert len(dashboard["panels"]) >= 6 and all(r["alert"] for g in rules["groups"] for r in g["rules"])
