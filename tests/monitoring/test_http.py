"""The server feeds the operational series: requests through the real app land in the series table."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression

from shipyard.models import load_model, save_model
from shipyard.server import create_app
from shipyard.serving import ServingEngine, apply_scene
from shipyard.serving import flow as F
from tests.conftest import auth_headers
from tests.serving.conftest import make_catalog, make_data, make_features


def test_served_requests_reach_the_series(workspace) -> None:
    X, y = make_data()
    folder = save_model(LogisticRegression(max_iter=300).fit(X, y), workspace.settings.project_dir / "m",
                        input_example=X.head(5))
    model = load_model(folder)
    catalog, features = make_catalog({"lr_a": model, "lr_b": model, "ridge": model}), make_features()
    apply_scene(workspace, {"name": "credit", "inputs": {"user_id": "string"},
                            "flow": [F.features("applicant", {"user_id": "user_id"}), F.model("credit", output="score")],
                            "outputs": ["score"]}, models=catalog, features=features)
    engine = ServingEngine(workspace, models=catalog, features=features)
    app = create_app(workspace, engine=engine, follow_interval=0)
    with TestClient(app, headers=auth_headers(workspace)) as client:
        for i in range(5):
            assert client.post("/v1/scenes/credit/predict", json={"user_id": f"u{i}"}).status_code == 200
        assert client.post("/v1/scenes/credit/predict", json={"user_id": 5}).status_code == 400
    total = workspace.monitoring.series("credit", since=time.time() - 600).total()
    assert (total.requests, total.errors) == (6, 1)
    assert sum(total.hists["total"].values()) == 5 and sum(total.hists["features"].values()) == 5
