from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import shipyard as sy
from shipyard.errors import InvalidInput
from shipyard.workspace import Workspace


def test_log_model_into_run_and_register(sqlite_workspace: Workspace) -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    y = (X["a"] + 0.5 * X["b"] > 0).astype(int)
    clf = LogisticRegression().fit(X, y)
    with sqlite_workspace.tracking.start_run(experiment="credit") as run:
        logged = sy.log_model(clf, "model", input_example=X.head(3), registered_model_name="credit_lr",
                              await_validation=True)
    assert logged.model_uri == f"runs:/{run.id}/model"
    paths = [a.path for a in sqlite_workspace.tracking.list_artifacts(run.id)]
    assert any(p.endswith("MLmodel") for p in paths)
    version = logged.registered_version
    assert version.version == 1 and version.status == "validated"
    assert version.source_run_id == run.id
    loaded = sqlite_workspace.registry.load("credit_lr", 1)
    np.testing.assert_allclose(loaded.predict(X.head(5)), clf.predict_proba(X.head(5))[:, 1], rtol=1e-12)


def test_log_model_without_run_is_a_clear_error(sqlite_workspace: Workspace) -> None:
    with pytest.raises(InvalidInput, match="start_run"):
        sy.log_model(LogisticRegression(), "model")
