"""The monitoring step of ``shipyard demo``: serve the scene, then its daily report.

The scene's decisions on the training applicants (scored in-process, not logged) become the
baseline; the test applicants are then served through the serving engine with the prediction log
and the operational series on, and the day's report is built from that traffic.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from shipyard.monitoring.service import Monitoring

if TYPE_CHECKING:
    from shipyard.workspace import Workspace


Say = Callable[[str], None]


def _serve(engine: Any, scene: str, entity: str, ids: list[int]) -> pd.DataFrame:
    rows = []
    for key in ids:
        body = engine.predict_scene(scene, [{entity: int(key)}], single=True)
        rows.append({entity: int(key), **body["outputs"]})
    return pd.DataFrame(rows)


def daily_report_step(ws: Workspace, scene: str, train: pd.DataFrame, test: pd.DataFrame, features: list[str],
                      reports: Path, say: Say, *, entity: str = "applicant_id", score: str = "pd",
                      decision: str = "decision") -> dict[str, Any]:
    """Baseline from ``train``, traffic from ``test``, today's daily report into ``reports``."""
    from shipyard.serving import PredictionLog, ServingEngine
    from shipyard.serving.metrics import ServingMetrics

    monitoring: Monitoring = ws.monitoring
    reference_engine = ServingEngine(ws)
    try:
        outputs = _serve(reference_engine, scene, entity, train[entity].tolist())
    finally:
        reference_engine.close()
    baseline = train[[entity, *features]].merge(outputs, on=entity).drop(columns=[entity])
    monitoring.create_baseline(f"{scene}-training", baseline, ws.user, scene=scene,
                               source={"kind": "training_set", "scene": scene, "rows": len(baseline)})
    monitoring.configure(scene, ws.user, baseline=f"{scene}-training", score=score, decision=decision, entity=entity)

    metrics = ServingMetrics()
    metrics.series = monitoring.recorder()
    engine = ServingEngine(ws, prediction_log=PredictionLog(ws.artifacts), metrics=metrics)
    try:
        served = _serve(engine, scene, entity, test[entity].tolist())
    finally:
        engine.close()  # writes the prediction log
        metrics.series.close()
    day = dt.datetime.now(dt.UTC).date().isoformat()
    report = monitoring.daily_report(scene, day, ws.user)
    html = report.save_html(reports / "daily_report.html")
    report.save_json(reports / "daily_report.json")
    s = report.data["day_stats"]["summary"]
    say(f"      daily report of {scene} for {day}: {report.rows} served decisions, approval rate "
        f"{s['approval_rate']:.1%}, score PSI vs training {s['score_psi']:.3f}, {s['drifted'] or 0:.0f} input(s) "
        f"drifted → {html}")
    return {"day": day, "rows": report.rows, "served": len(served), "summary": s, "html": str(html),
            "plugin_errors": report.plugin_errors}
