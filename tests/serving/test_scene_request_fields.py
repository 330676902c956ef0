"""A scene passes the request fields of a feature service's on-demand views with `request:`.

`scenes apply` refuses a features step whose service needs a request field the step does not
pass (naming the field, the view and the fix), and a request that still fails that way (the
service gained an on-demand view after the scene was applied) counts as an error of its arm.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from shipyard.cli import main
from shipyard.errors import InvalidInput, ModelError
from shipyard.serving import ModelCatalog, ServingEngine, apply_scene, compile_scene
from shipyard.serving import flow as F
from shipyard.serving.release import scene_status
from shipyard.serving.sources import StoreFeatures

VIEWS = '''
from datetime import timedelta

import pandas as pd

from shipyard.features import (Entity, FeatureService, FeatureView, Field, Float64, PushSource, RequestSource,
                               on_demand_feature_view)

customer = Entity("customer", ["customer_id"], value_types="int64")
spend = FeatureView("spend", [customer], [Field("avg_amount", Float64)], source=PushSource("spend_push"),
                    ttl=timedelta(days=3))
application = RequestSource("application", [Field("amount", Float64)])


@on_demand_feature_view(sources=[spend[["avg_amount"]], application], fields=[Field("amount_ratio", Float64)])
def ratios(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"amount_ratio": df["amount"] / df["avg_amount"]})

'''
WITH_RATIO = VIEWS + 'risk = FeatureService("risk", [spend[["avg_amount"]], ratios])\n'
WITHOUT_RATIO = VIEWS + 'risk = FeatureService("risk", [spend[["avg_amount"]]])\n'

INPUTS = {"customer_id": "long", "requested": "double"}


def scene(**request: str) -> dict[str, Any]:
    step = F.features("risk", {"customer_id": "customer_id"}, id="lookup")
    if request:
        step["request"] = request
    return {"name": "ratio", "inputs": INPUTS, "outputs": ["avg_amount"],
            "flow": [step, F.expr("score", "avg_amount * 2")]}


def apply_features(ws: Any, source: str) -> None:
    folder = Path(ws.settings.project_dir) / "features"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "definitions.py").write_text(source)
    ws.features.apply(folder, allow_breaking=True)


@pytest.fixture
def ws(sqlite_workspace: Any) -> Any:
    apply_features(sqlite_workspace, WITH_RATIO)
    now = dt.datetime.now(dt.UTC)
    sqlite_workspace.features.push("spend", [{"customer_id": 1, "event_timestamp": now, "avg_amount": 100.0}])
    return sqlite_workspace


def test_apply_refuses_a_scene_that_does_not_pass_a_request_field(ws: Any) -> None:
    with pytest.raises(InvalidInput) as refused:
        apply_scene(ws, scene(), models=ModelCatalog())
    message = refused.value.message
    assert "'amount'" in message and "'ratios'" in message and "request: {amount:" in message
    assert refused.value.details["field"] == "amount" and refused.value.details["step"] == "lookup"


def test_cli_apply_names_the_field_and_the_fix(ws: Any, tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "ratio.yaml"
    path.write_text(yaml.safe_dump(scene()))
    result = CliRunner().invoke(main, ["--project", str(ws.settings.project_dir), "scenes", "apply", str(path)])
    assert result.exit_code == 1, result.output
    assert "request field 'amount'" in result.output and "request: {amount:" in result.output


def test_request_fields_reach_the_on_demand_view(ws: Any) -> None:
    applied = apply_scene(ws, {**scene(amount="requested"), "outputs": ["avg_amount", "amount_ratio"]},
                          models=ModelCatalog())
    features = StoreFeatures(ws)
    engine = ServingEngine(ws, models=ModelCatalog(), features=features, scenes=lambda n, v: (1, applied.spec))
    try:
        engine.install_scene(compile_scene(applied.spec, 1, models=engine.models, features=features))
        body = engine.predict_scene("ratio", [{"customer_id": 1, "requested": 250.0}], single=True)
        assert body["outputs"] == {"avg_amount": 100.0, "amount_ratio": 2.5}
        # independent reference: the feature store read with the request field under its own name
        direct = ws.features.get_online_features([{"customer_id": 1, "amount": 250.0}], service="risk")
        assert direct["amount_ratio"] == [body["outputs"]["amount_ratio"]]
    finally:
        engine.close()


def test_a_request_failing_on_a_missing_request_field_is_an_error_of_its_arm(ws: Any) -> None:
    # applied while the service had no on-demand view; the view is added to the service afterwards
    apply_features(ws, WITHOUT_RATIO)
    applied = apply_scene(ws, scene(), models=ModelCatalog())
    features = StoreFeatures(ws)
    engine = ServingEngine(ws, models=ModelCatalog(), features=features, scenes=lambda n, v: (1, applied.spec))
    try:
        engine.install_scene(compile_scene(applied.spec, 1, models=engine.models, features=features))
        apply_features(ws, WITH_RATIO)
        for _ in range(3):
            with pytest.raises(ModelError) as failed:
                engine.predict_scene("ratio", [{"customer_id": 1, "requested": 250.0}], single=True)
        assert failed.value.status == 500 and failed.value.details["step"] == "lookup"
        assert "request field 'amount'" in failed.value.message and "request:" in failed.value.message
        control = scene_status(engine, "ratio")["arms"]["control"]
        assert control["count"] == 3 and control["errors"] == 3
        assert control["failed_steps"] == {"lookup": 3}
    finally:
        engine.close()


def test_rest_apply_refuses_it_too(ws: Any) -> None:
    from fastapi.testclient import TestClient

    from shipyard.server import create_app
    from tests.conftest import auth_headers

    with TestClient(create_app(ws, follow_interval=0)) as client:
        refused = client.post("/api/v1/scenes", json=scene(), headers=auth_headers(ws))
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["code"] == "invalid_input" and error["details"]["field"] == "amount"
        assert "request: {amount:" in error["message"]
        accepted = client.post("/api/v1/scenes", json=scene(amount="requested"), headers=auth_headers(ws))
        assert accepted.status_code == 200, accepted.text
