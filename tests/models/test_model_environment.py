"""Models served from their own environment: requirements, keys, the worker protocol and its error
boundary. The end-to-end run with a really different scikit-learn is in test_model_environment_e2e.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shipyard.errors import InvalidInput, ModelError, Overloaded, SchemaMismatch
from shipyard.models.env_model import EnvModel
from shipyard.models.environment import (
    ModelEnvironment,
    environment_key,
    environment_requirements,
    model_requirements,
)
from shipyard.models.package import load_model, save_model

MODEL_CODE = '''
import os
import time

import numpy as np

from shipyard.models.python_model import PythonModel


class Tricky(PythonModel):
    """A logistic curve that sleeps, dies or raises on chosen inputs."""

    classes = [0, 1]

    def predict(self, df):
        x = df["x"].to_numpy(dtype=float)
        if (x == 13).any():
            raise ZeroDivisionError("unlucky thirteen")
        if (x > 1e6).any():
            time.sleep(60)
        if (x < -1e6).any():
            print("about to die")
            os._exit(3)
        print("scored", len(x))  # stray output must not break the protocol
        return 1 / (1 + np.exp(-(x - df["y"].to_numpy(dtype=float))))
'''


def test_requirements_drop_shipyard_and_add_what_the_worker_needs(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("scikit-learn==1.5.2\nshipyard-ml==0.1.0\n# comment\nnumpy==2.1.0\n")
    assert model_requirements(tmp_path) == ["scikit-learn==1.5.2", "shipyard-ml==0.1.0", "numpy==2.1.0"]
    assert environment_requirements(tmp_path) == ["numpy==2.1.0", "pandas", "pyyaml", "scikit-learn==1.5.2"]
    key = environment_key(environment_requirements(tmp_path), "3.11.7")
    assert key == environment_key(environment_requirements(tmp_path), "3.11.2")  # patch releases share one
    assert key != environment_key(environment_requirements(tmp_path), "3.12.1")
    (tmp_path / "requirements.txt").write_text("scikit-learn==1.5.1\n")
    assert environment_key(environment_requirements(tmp_path), "3.11.7") != key


def test_requirements_refuse_pip_options_naming_the_line(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("--index-url http://elsewhere/simple\nnumpy\n")
    with pytest.raises(InvalidInput, match="option line '--index-url") as err:
        model_requirements(tmp_path)
    assert err.value.details["field"] == "requirements.txt"


def test_save_model_records_the_requirements(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    path = save_model(LogisticRegression().fit(X, [0, 0, 1, 1]), tmp_path / "m", input_example=X)
    import sklearn

    reqs = model_requirements(path)
    assert f"scikit-learn=={sklearn.__version__}" in reqs and any(r.startswith("shipyard-ml") for r in reqs)
    assert (path / "conda.yaml").is_file() and (path / "python_env.yaml").is_file()


@pytest.fixture
def tricky_dir(tmp_path: Path) -> Path:
    code = tmp_path / "tricky_model.py"
    code.write_text(MODEL_CODE)
    spec = importlib.util.spec_from_file_location("tricky_model", code)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["tricky_model"] = module
    spec.loader.exec_module(module)
    try:
        example = pd.DataFrame({"x": [0.5, 2.0], "y": [1.0, 0.0]})
        return save_model(module.Tricky(), tmp_path / "model", input_example=example, code_paths=[code])
    finally:
        sys.modules.pop("tricky_model", None)


def _this_interpreter(tmp_path: Path) -> ModelEnvironment:
    """An 'environment' that is this interpreter: the protocol without a build."""
    folder = tmp_path / "env"
    folder.mkdir()
    return ModelEnvironment(key="local", path=str(folder), python=sys.executable,
                            python_version=sys.version.split()[0], requirements=[], builder="none",
                            built_at=0.0, build_seconds=0.0)


@pytest.fixture
def proxy(tricky_dir: Path, tmp_path: Path):
    model = EnvModel(tricky_dir, _this_interpreter(tmp_path), log_path=tmp_path / "worker.log",
                     label="model 'tricky' version 1", timeout_s=2.0)
    yield model
    model.close()


def test_worker_answers_as_the_model_does_in_process(proxy: EnvModel, tricky_dir: Path) -> None:
    local = load_model(tricky_dir, trusted=True)
    frame = pd.DataFrame({"x": np.linspace(-3, 3, 25), "y": np.linspace(1, -1, 25)})
    records = frame.to_dict("records")
    assert np.array_equal(proxy.predict(records), local.predict(records))
    assert np.array_equal(proxy.predict(frame, labels=True), local.predict(frame, labels=True))
    assert np.array_equal(proxy.predict_array(frame.to_numpy()), local.predict_array(frame.to_numpy()))
    assert np.array_equal(np.asarray(proxy.predict_pyfunc(records)), np.asarray(local.predict_pyfunc(records)))
    assert proxy.input_names == ["x", "y"] and proxy.classes == [0, 1] and proxy.flavor == local.flavor
    assert np.array_equal(proxy.expected_output, local.expected_output)
    assert proxy.input_example.equals(local.input_example)
    assert "scored 25" in (proxy.worker.log_path.read_text())


def test_bad_input_crosses_as_the_same_error_naming_the_field(proxy: EnvModel) -> None:
    with pytest.raises(SchemaMismatch) as err:
        proxy.predict([{"x": 1.0}])
    assert err.value.details.get("field") == "y"
    with pytest.raises(ModelError, match="ZeroDivisionError: unlucky thirteen") as err:
        proxy.predict([{"x": 13.0, "y": 0.0}])
    assert err.value.details["exception"] == "ZeroDivisionError"
    assert proxy.predict([{"x": 0.0, "y": 0.0}]).tolist() == [0.5]  # the worker is still the same one
    assert proxy.worker.starts == 1


def test_a_stuck_worker_times_out_and_is_replaced(proxy: EnvModel) -> None:
    first = proxy.worker.pid
    with pytest.raises(Overloaded, match="did not answer within 2 s") as err:
        proxy.predict([{"x": 1e7, "y": 0.0}])
    assert err.value.status == 503 and err.value.details["retry_after"] == 1
    assert proxy.predict([{"x": 0.0, "y": 0.0}]).tolist() == [0.5]
    assert proxy.worker.pid not in (None, first) and proxy.worker.starts == 2


def test_a_dead_worker_is_reported_and_started_again(proxy: EnvModel) -> None:
    first = proxy.worker.pid
    with pytest.raises(ModelError, match="exited with code 3.*about to die") as err:
        proxy.predict([{"x": -1e7, "y": 0.0}])
    assert err.value.details["exception"] == "WorkerExited"
    assert proxy.predict([{"x": 0.0, "y": 0.0}]).tolist() == [0.5]
    assert proxy.worker.pid not in (None, first)


def test_a_model_that_cannot_load_says_so(tricky_dir: Path, tmp_path: Path) -> None:
    (tricky_dir / "code" / "tricky_model.py").write_text("raise ImportError('broken on purpose')\n")
    with pytest.raises(Exception, match="could not be loaded in its environment"):
        EnvModel(tricky_dir, _this_interpreter(tmp_path), log_path=tmp_path / "w.log", label="model 't' version 1")


def test_serving_refuses_an_unbuilt_environment_naming_the_command(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    from shipyard.config import load_settings
    from shipyard.serving import ServingEngine
    from shipyard.workspace import Workspace

    ws = Workspace(load_settings(tmp_path / "p", validation_subprocess=False, validation_timing_calls=5,
                                 model_env_build_on_load=False))
    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0]})
    path = save_model(LogisticRegression().fit(X, [0, 0, 1, 1]), tmp_path / "m", input_example=X)
    for name in ("own", "plain"):  # served by version number: no approval needed for these
        ws.registry.create_model(name, requires_approval=False)
    ws.registry.register(str(path), "own", tags={"serve_env": "own"})
    ws.registry.register(str(path), "plain")
    engine = ServingEngine(ws)
    try:
        with pytest.raises(ModelError, match=r"run `shipyard models build-env own@1`"):
            engine.model("own", "1")
        assert engine.model("plain", "1").model.__class__.__name__ == "LoadedModel"  # unmarked: in process
    finally:
        engine.close()
        ws.close()
