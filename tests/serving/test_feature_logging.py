"""Served feature vectors reach the feature store's log: skew compares them with the offline values."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest

from shipyard.serving import ModelCatalog, PredictionLog, ServingEngine, compile_scene
from shipyard.serving import flow as F
from shipyard.serving.sources import StoreFeatures

DEFINITIONS = '''
from datetime import timedelta

from shipyard.features import Entity, FeatureService, FeatureView, Field, Float64, Int64, PushSource

customer = Entity("customer", ["customer_id"], value_types="int64")
spend = FeatureView("spend", [customer], [Field("amount", Float64), Field("visits", Int64)],
                    source=PushSource("spend_push"), ttl=timedelta(days=3))
risk = FeatureService("risk", [spend[["amount", "visits"]]])
'''

SCENE = {
    "name": "spend_score", "inputs": {"customer_id": "long"},
    "flow": [F.features("risk", {"customer_id": "customer_id"}), F.expr("score", "amount * 2 + visits")],
    "outputs": ["score"], "log": {"sample_rate": 1.0},
}


@pytest.fixture
def served(sqlite_workspace: Any) -> Any:
    ws = sqlite_workspace
    folder = Path(ws.settings.project_dir) / "features"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "definitions.py").write_text(DEFINITIONS)
    ws.features.apply(folder)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    offline = [{"customer_id": c, "event_timestamp": now - dt.timedelta(hours=h), "amount": c * 10.5 + h,
                "visits": c + h} for c in range(6) for h in (30, 5)]
    ws.features.offline_append("spend", offline)
    (result,) = ws.features.materialize(now - dt.timedelta(days=2), now + dt.timedelta(seconds=1), ["spend"])
    assert result.rows_written == 6
    features = StoreFeatures(ws)
    plog = PredictionLog(ws.artifacts, flush_interval=0.2)
    engine = ServingEngine(ws, models=ModelCatalog(), features=features, prediction_log=plog,
                           scenes=lambda n, v: (1, SCENE))
    engine.install_scene(compile_scene(SCENE, 1, models=engine.models, features=features))
    yield ws, engine, now
    engine.close()


def test_served_vectors_are_logged_and_skew_finds_a_changed_online_value(served: Any) -> None:
    ws, engine, now = served
    assert engine.prediction_log.feature_logger == engine.features.log_served
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    ids = []
    for c in [0, 1, 2, 3, 4, 5, 3, 99]:
        body = engine.predict_scene("spend_score", [{"customer_id": c}], single=True)
        ids.append(body["request_id"])
    batch = engine.predict_scene("spend_score", [{"customer_id": 1}, {"customer_id": 2}])
    engine.prediction_log.flush()
    from shipyard.features.logging import read_feature_logs

    logged = read_feature_logs(ws.features, start)
    assert sorted(logged["request_id"]) == sorted([*ids, f"{batch['request_id']}/0", f"{batch['request_id']}/1"])
    row = logged.set_index("request_id").loc[ids[2]]
    assert row["customer_id"] == 2 and row["amount"] == 2 * 10.5 + 5 and row["visits"] == 7
    report = ws.features.skew("risk", start)
    assert report.rows == 10  # customer 99's all-missing vector is compared too (missing offline as well)
    assert report.rows_with_mismatch == 0
    assert {f.feature: f.mismatches for f in report.features} == {"spend:amount": 0, "spend:visits": 0}
    assert all(f.compared == 10 for f in report.features)

    # an online-only write changes amount (visits keeps its offline value 4 + 5): only amount is skewed
    time.sleep(0.01)
    ws.features.push("spend", [{"customer_id": 4, "event_timestamp": now - dt.timedelta(hours=1),
                                "amount": 1234.5, "visits": 9}], to_offline=False)
    changed = [engine.predict_scene("spend_score", [{"customer_id": c}], single=True) for c in (4, 4, 5)]
    assert changed[0]["outputs"]["score"] == 1234.5 * 2 + 9
    engine.prediction_log.flush()
    report = ws.features.skew("risk", start)
    assert report.rows == 13 and report.rows_with_mismatch == 2
    amount, visits = report.feature("spend:amount"), report.feature("spend:visits")
    assert amount.mismatches == 2 and visits.mismatches == 0
    assert amount.max_abs_diff == pytest.approx(1234.5 - (4 * 10.5 + 5))
    assert {t["request_id"] for t in amount.top} == {changed[0]["request_id"], changed[1]["request_id"]}
    assert amount.top[0]["served"] == 1234.5 and amount.top[0]["offline"] == 4 * 10.5 + 5


def test_sampled_out_and_fallback_requests_log_no_vectors(served: Any) -> None:
    ws, engine, _now = served
    from shipyard.features.logging import read_feature_logs

    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    engine.prediction_log.sample_rate = 0.0
    cs = engine.scene("spend_score").compiled
    cs.sample_rate = 0.0
    for c in range(5):
        engine.predict_scene("spend_score", [{"customer_id": c}], single=True)
    engine.prediction_log.flush()
    assert read_feature_logs(ws.features, start).empty
