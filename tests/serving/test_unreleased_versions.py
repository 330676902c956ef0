"""Serving by version number (or ``latest``) answers only for versions released for serving:
validated, not rejected, approved when the model requires approval. A version that failed
validation is never loaded into the server; one rejected after it was served is withdrawn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression

from shipyard.config import load_settings
from shipyard.models import save_model
from shipyard.models.python_model import PythonModel
from shipyard.server import create_app
from shipyard.serving.hotswap import Follower
from shipyard.workspace import Workspace
from tests.conftest import as_user, auth_headers

ROW = {"income": 4.0, "debt": 2.0, "age": 40.0}


class Broken(PythonModel):
    def predict(self, df):  # noqa: ANN001, ANN201
        raise RuntimeError("broken on purpose")


@pytest.fixture
def served(tmp_path):
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"income": rng.normal(5, 2, 200), "debt": rng.normal(2, 1, 200), "age": rng.normal(40, 9, 200)})
    y = (X.debt - X.income * 0.4 > 0).astype(int)
    good = save_model(LogisticRegression().fit(X, y), tmp_path / "good", input_example=X.head(3))
    signed = {"inputs": '[{"type": "double", "name": "income"}, {"type": "double", "name": "debt"}, '
                        '{"type": "double", "name": "age"}]'}
    broken = save_model(Broken(), tmp_path / "broken", signature=signed)
    ws = Workspace(load_settings(tmp_path / "project", user="alice", validation_subprocess=False,
                                 validation_timing_calls=5))
    ws.registry.create_model("free", requires_approval=False)
    for name, folder in (("m", good), ("m", broken), ("free", good)):
        ws.registry.register(folder, name)
    app = create_app(ws, follow_interval=0)
    with TestClient(app, raise_server_exceptions=False, headers=auth_headers(ws)) as client:
        yield client, ws, app
    ws.close()


def _call(client, name: str, ref: str, route: str = "invocations"):
    return client.post(f"/v1/models/{name}/{ref}/{route}", json={"dataframe_records": [ROW]})


def test_a_version_that_failed_validation_is_refused_and_never_loaded(served):
    client, ws, app = served
    assert ws.registry.get_version("m", 2).status == "failed"
    for route in ("invocations", "predict"):
        answer = _call(client, "m", "2", route)
        assert answer.status_code == 409, answer.text
        error = answer.json()["error"]
        assert error["details"]["status"] == "failed" and "failed" in error["message"]
        assert "register a new version" in error["message"]
    assert _call(client, "m", "latest").status_code == 409  # latest is version 2
    assert ("m", "2") not in app.state.serving.engine.served_models()


def test_an_unapproved_version_is_refused_until_a_reviewer_approves_it(served):
    client, ws, _ = served
    answer = _call(client, "m", "1")
    assert answer.status_code == 409
    assert "requires approval" in answer.json()["error"]["message"]
    assert answer.json()["error"]["details"]["approved"] is False
    reviewer = as_user(ws, "rita", "reviewer")
    try:
        reviewer.registry.approve("m", 1)
    finally:
        reviewer.close()
    assert _call(client, "m", "1").status_code == 200
    # a model that does not require approval serves any validated version
    assert _call(client, "free", "1").status_code == 200


def test_a_rejected_version_is_refused_and_withdrawn_when_it_was_being_served(served):
    client, ws, app = served
    reviewer = as_user(ws, "rita", "reviewer")
    try:
        reviewer.registry.approve("m", 1)
        assert _call(client, "m", "1").status_code == 200  # loaded and served
        reviewer.registry.reject("m", 1, "leaks the target")
    finally:
        reviewer.close()
    engine = app.state.serving.engine
    withdrawn = Follower(engine, interval=1).check()  # what the server's follower does every poll
    assert [w["name"] for w in withdrawn] == ["m"] and withdrawn[0]["to"] is None
    answer = _call(client, "m", "1")
    assert answer.status_code == 409
    assert answer.json()["error"]["details"]["status"] == "rejected"
    assert "rejected" in answer.json()["error"]["message"] and "leaks the target" in answer.json()["error"]["message"]


def test_an_alias_serves_what_an_operator_pointed_it_at(served):
    client, ws, _ = served
    ws.registry.set_alias("m", "champion", 1, force=True)  # recorded as forced: the operator's decision
    assert _call(client, "m", "champion").status_code == 200
