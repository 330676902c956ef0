"""End to end: a model trained with an older scikit-learn than the server's, served from its own
virtual environment behind the server's prediction endpoints, answering exactly what that
scikit-learn answers there. Builds a real environment (pip; wheels come from the local cache or
index after the first run), so it is marked slow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sklearn
from click.testing import CliRunner
from fastapi.testclient import TestClient

from shipyard.cli import main
from shipyard.config import load_settings
from shipyard.models.env_model import EnvModel
from shipyard.models.environment import build_environment, environment_key, environment_requirements
from shipyard.server import create_app
from shipyard.workspace import Workspace
from tests.conftest import auth_headers

OLD_SKLEARN = "1.5.2"
REQUIREMENTS = [f"scikit-learn=={OLD_SKLEARN}", "numpy", "pandas", "pyyaml"]

TRAIN = '''
import json, sys
import numpy as np, pandas as pd, sklearn
from sklearn.linear_model import LogisticRegression
from shipyard.models.package import save_model

out, ref, reqs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
rng = np.random.default_rng(7)
X = pd.DataFrame(rng.normal(size=(300, 3)), columns=["income", "debt", "age"])
y = ((X.income - X.debt + 0.3 * rng.normal(size=300)) > 0).astype(int)
model = LogisticRegression(C=0.5).fit(X, y)
save_model(model, out, input_example=X.head(5), pip_requirements=reqs, serialization_format="pickle")
test = X.tail(30)
# rows as a client sends them, in a C-ordered matrix (a frame's own array is column-major, and BLAS
# may round the last bit differently)
matrix = np.ascontiguousarray(test.to_numpy())
json.dump({"sklearn": sklearn.__version__, "rows": test.to_dict("records"),
           "proba": model.predict_proba(matrix)[:, 1].tolist(), "labels": model.predict(matrix).tolist(),
           "first": float(model.predict_proba(matrix[:1])[0, 1])},
          open(ref, "w"))
'''


@pytest.mark.slow
def test_a_model_with_another_scikit_learn_serves_from_its_own_environment(tmp_path: Path) -> None:
    assert sklearn.__version__ != OLD_SKLEARN, "the server must run another scikit-learn for this test to mean much"
    project = tmp_path / "project"
    settings = load_settings(project, validation_subprocess=False, validation_timing_calls=5)
    envs = settings.state_dir / "envs"

    # 1. the environment, built from the requirements alone (as the data scientist's machine would)
    seed = tmp_path / "requirements-only"
    seed.mkdir()
    (seed / "requirements.txt").write_text("\n".join(REQUIREMENTS) + "\n")
    env = build_environment(seed, envs, builder="venv")
    assert env.builder == "venv" and not env.reused and Path(env.python).is_file()

    # 2. a model trained and saved inside it, with its own scikit-learn
    model_dir, ref_file = tmp_path / "model", tmp_path / "reference.json"
    trained = subprocess.run([env.python, "-c", TRAIN, str(model_dir), str(ref_file), json.dumps(REQUIREMENTS)],
                             env={"PYTHONPATH": str(env.runtime_dir), "PATH": "/usr/bin:/bin"},
                             capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr[-3000:]
    reference = json.loads(ref_file.read_text())
    assert reference["sklearn"] == OLD_SKLEARN

    # 3. registered, marked to serve from its own environment; the same requirements reuse the build
    ws = Workspace(settings)
    # served by version number below: a model that requires no approval serves any validated version
    ws.registry.create_model("credit_old", requires_approval=False)
    mv = ws.registry.register(str(model_dir), "credit_old", tags={"serve_env": "own"})
    assert environment_key(environment_requirements(model_dir), sys.version) == env.key
    built = CliRunner().invoke(main, ["--project", str(project), "models", "build-env", f"credit_old@{mv.version}"])
    assert built.exit_code == 0, built.output
    assert f"environment {env.key} for credit_old@{mv.version} (existing, reused" in built.output

    # 4. a scene that uses it; validating the scene at apply starts a worker and stops it again
    from shipyard.serving import apply_scene

    before = _workers(env.python)
    apply_scene(ws, {"name": "old_credit", "inputs": {"income": "double", "debt": "double", "age": "double"},
                     "flow": [{"type": "model", "model": "credit_old", "ref": str(mv.version), "output": "pd"}],
                     "outputs": ["pd"]})
    assert _workers(env.python) == before

    # 5. served through the server's endpoints by a worker on the old scikit-learn
    try:
        with TestClient(create_app(ws), headers=auth_headers(ws)) as client:  # runs the app's shutdown at exit
            served = _score_and_check(client, mv.version, reference)
    finally:
        ws.close()
    assert served.worker.pid is None  # the server's shutdown stopped the worker


def _score_and_check(client: TestClient, version: int, reference: dict) -> EnvModel:
    rows = reference["rows"]
    scored = client.post(f"/v1/models/credit_old/{version}/predict", json=rows)
    assert scored.status_code == 200, scored.text
    assert scored.json()["predictions"] == reference["proba"]  # exactly what sklearn 1.5.2 computed
    one = client.post(f"/v1/models/credit_old/{version}/predict", json=rows[0])
    assert one.json()["predictions"] == reference["first"]  # a one-row call, as sklearn scores one row
    mlflow = client.post(f"/v1/models/credit_old/{version}/invocations", json={"dataframe_records": rows})
    assert mlflow.status_code == 200, mlflow.text
    assert mlflow.json()["predictions"] == reference["proba"]
    scene = client.post("/v1/scenes/old_credit/predict", json=rows)
    assert scene.status_code == 200, scene.text
    assert [o["pd"] for o in scene.json()["outputs"]] == reference["proba"]
    bad = client.post(f"/v1/models/credit_old/{version}/predict", json={"income": 1.0, "debt": 2.0})
    assert bad.status_code == 400 and bad.json()["error"]["details"]["field"] == "age"
    served = client.app.state.serving.engine.model("credit_old", str(version)).model
    assert isinstance(served, EnvModel)
    assert served.packages["scikit-learn"] == OLD_SKLEARN
    assert served.worker.pid is not None
    return served


def _workers(python: str) -> int:
    """Live worker processes started from this environment's interpreter."""
    count = 0
    for status in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = status.read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].decode(errors="replace") == python and b"shipyard.models.env_worker" in args:
            count += 1
    return count
