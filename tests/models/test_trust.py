"""What a package runs when loaded (package_runs_code), skops trusted types, allow_pickle_models."""

from __future__ import annotations

import copy
import json
import textwrap
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb
import yaml
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from shipyard.config import load_settings
from shipyard.errors import Forbidden, NotFound
from shipyard.models import load_model, save_model
from shipyard.models.mlmodel import file_digests
from shipyard.models.python_model import PythonModel
from shipyard.models.trust import code_parts, package_runs_code
from shipyard.workspace import Workspace

pytest.importorskip("mlflow")
import mlflow.lightgbm  # noqa: E402
import mlflow.pyfunc  # noqa: E402
import mlflow.sklearn  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
REQS = ["scikit-learn"]


class Doubler(PythonModel):
    def predict(self, df):
        return df.sum(axis=1).to_numpy() * 2


@pytest.fixture(scope="module")
def fitted(credit_data):
    X, y = credit_data
    return X, y, {
        "lr": LogisticRegression(max_iter=500).fit(X, y),
        "forest": RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y),
        "xgb": xgb.XGBClassifier(n_estimators=5).fit(X, y),
        "lgb": lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y),
    }


def foreign(fitted):
    """A pipeline whose skops file names a function outside scikit-learn (copy.deepcopy)."""
    X, y, _ = fitted
    return make_pipeline(FunctionTransformer(copy.deepcopy), LogisticRegression(max_iter=500)).fit(X, y)


def packages(root: Path, fitted, monkeypatch) -> dict[str, tuple[Path, list[tuple[str, str]]]]:
    """name -> (package, the (path, kind) parts expected to run code)."""
    X, _, models = fitted
    head = X.head(3)
    module = root / "src" / "credit_models.py"
    module.parent.mkdir(parents=True)
    module.write_text(textwrap.dedent("""
        from shipyard.models.python_model import PythonModel

        class Summed(PythonModel):
            def predict(self, df):
                return df.sum(axis=1).to_numpy()
    """))
    monkeypatch.syspath_prepend(str(module.parent))
    out = {
        "skops_lr": (save_model(models["lr"], root / "skops_lr", input_example=head), []),
        "skops_forest": (save_model(models["forest"], root / "skops_forest", input_example=head), []),
        "pickle_lr": (save_model(models["lr"], root / "pickle_lr", input_example=head, serialization_format="pickle"),
                      [("model.pkl", "pickle")]),
        "cloudpickle_lr": (save_model(models["lr"], root / "cloudpickle_lr", input_example=head,
                                      serialization_format="cloudpickle"), [("model.pkl", "cloudpickle")]),
        "xgb": (save_model(models["xgb"], root / "xgb", input_example=head), []),
        "lgb": (save_model(models["lgb"], root / "lgb", input_example=head), []),
        "python_model": (save_model(Doubler(), root / "python_model", input_example=head),
                         [("python_model.pkl", "cloudpickle")]),
        "class_ref": (save_model("credit_models:Summed", root / "class_ref", input_example=head), []),
        "with_code": (save_model("credit_models:Summed", root / "with_code", input_example=head,
                                 code_paths=[module]), [("code", "python")]),
        "foreign_skops": (save_model(foreign(fitted), root / "foreign_skops", input_example=head),
                          [("model.skops", "skops")]),
    }
    mlflow.sklearn.save_model(models["lr"], str(root / "ml_skops"), pip_requirements=REQS)
    out["ml_skops"] = (root / "ml_skops", [])
    mlflow.sklearn.save_model(models["lr"], str(root / "ml_pickle"), serialization_format="pickle",
                              pip_requirements=REQS)
    out["ml_pickle"] = (root / "ml_pickle", [("model.pkl", "pickle")])
    # MLflow 3 writes a LightGBM scikit-learn wrapper with skops: its types are LightGBM's, not
    # scikit-learn's, so it counts as running code (conservatively: installed library code)
    mlflow.lightgbm.save_model(models["lgb"], str(root / "ml_lgb"), pip_requirements=["lightgbm"])
    out["ml_lgb"] = (root / "ml_lgb", [("model.skops", "skops")])

    class Custom(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    mlflow.pyfunc.save_model(str(root / "ml_pyfunc"), python_model=Custom(), pip_requirements=REQS)
    out["ml_pyfunc"] = (root / "ml_pyfunc", [("python_model.pkl", "cloudpickle")])
    stray = save_model(models["xgb"], root / "stray_py", input_example=head)
    (stray / "helpers.py").write_text("import os\n")
    out["stray_py"] = (stray, [("helpers.py", "python")])
    return out


def test_package_runs_code_names_what_would_execute(tmp_path, fitted, monkeypatch):
    for name, (folder, expected) in packages(tmp_path, fitted, monkeypatch).items():
        parts = code_parts(folder)
        assert [(p.path, p.kind) for p in parts] == expected, name
        assert package_runs_code(folder) is bool(expected), name
        # the loader agrees: what runs no code loads without trust; a pickle or foreign type does not
        if name in ("with_code", "class_ref", "stray_py"):
            continue
        if expected:
            with pytest.raises(Forbidden):
                load_model(folder)
        else:
            load_model(folder)


def test_skops_loads_only_the_recorded_types(tmp_path, fitted):
    X, _, models = fitted
    folder = save_model(models["forest"], tmp_path / "forest", input_example=X.head(3))
    section = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["sklearn"]
    assert section["serialization_format"] == "skops"
    assert section["skops_trusted_types"] == ["sklearn.tree._tree.Tree"]
    np.testing.assert_array_equal(load_model(folder).predict(X), models["forest"].predict_proba(X)[:, 1])
    # MLflow reads Shipyard's skops file with the same list (skops is one of its sklearn formats)
    assert section["serialization_format"] in mlflow.sklearn.SUPPORTED_SERIALIZATION_FORMATS
    np.testing.assert_array_equal(mlflow.sklearn.load_model(str(folder)).predict_proba(X),
                                  models["forest"].predict_proba(X))
    np.testing.assert_array_equal(mlflow.pyfunc.load_model(str(folder)).predict(X),
                                  models["forest"].predict_proba(X)[:, 1])
    # drop the recorded list: the same file is refused, trusted or not, naming the type
    doc = yaml.safe_load((folder / "MLmodel").read_text())
    doc["flavors"]["sklearn"]["skops_trusted_types"] = None
    (folder / "MLmodel").write_text(yaml.safe_dump(doc))
    for trusted in (False, True):
        with pytest.raises(Forbidden, match="sklearn.tree._tree.Tree"):
            load_model(folder, trusted=trusted, verify=False)


def test_skops_types_beyond_scikit_learn_need_trust(tmp_path, fitted):
    X = fitted[0]
    model = foreign(fitted)
    folder = save_model(model, tmp_path / "ft", input_example=X.head(3))
    with pytest.raises(Forbidden, match="copy.deepcopy"):
        load_model(folder)
    loaded = load_model(folder, trusted=True)
    np.testing.assert_allclose(loaded.predict(X), model.predict_proba(X)[:, 1], rtol=1e-12)


def _workspace(root: Path, allow: bool) -> Workspace:
    return Workspace(load_settings(root, user="alice", validation_subprocess=False, validation_timing_calls=5,
                                   allow_pickle_models=allow))


def test_allow_pickle_models_false_refuses_pickles_at_registration_and_load(tmp_path, fitted):
    X, _, models = fitted
    pickled = save_model(models["lr"], tmp_path / "pickled", input_example=X.head(3), serialization_format="pickle")
    python_model = save_model(Doubler(), tmp_path / "python_model", input_example=X.head(3))
    safe = save_model(models["lr"], tmp_path / "safe", input_example=X.head(3))
    project = tmp_path / "project"
    strict = _workspace(project, allow=False)
    try:
        for folder, file in ((pickled, "model.pkl"), (python_model, "python_model.pkl")):
            with pytest.raises(Forbidden, match="allow_pickle_models: false") as info:
                strict.registry.register(folder, "credit")
            assert info.value.details == {**info.value.details, "field": "allow_pickle_models", "file": file}
        with pytest.raises(NotFound):
            strict.registry.get_model("credit")  # nothing was created or stored
        assert strict.artifacts.list("models") == []
        assert strict.registry.register(safe, "credit").status == "validated"
    finally:
        strict.close()
    # pickles registered while allowed are refused once the setting turns false
    lenient = _workspace(project, allow=True)
    try:
        assert lenient.registry.register(pickled, "credit").status == "validated"
    finally:
        lenient.close()
    strict = _workspace(project, allow=False)
    try:
        with pytest.raises(Forbidden, match="allow_pickle_models"):
            strict.registry.load("credit", 2)
        mv = strict.registry.validate("credit", 2)
        assert mv.status == "failed" and "allow_pickle_models" in mv.status_reason
        assert strict.registry.load("credit", 1).predict(X.head(2)).shape == (2,)
    finally:
        strict.close()


def test_shipyard_json_digests_cover_the_pickle(tmp_path):
    """A package's own digests (shipyard.json) are the uploader's word; only the registry's recorded
    sha256 vouches for a version (see test_validation_sandbox)."""
    folder = save_model(Doubler(), tmp_path / "m")
    record = json.loads((folder / "shipyard.json").read_text())
    assert record["files"] == file_digests(folder)
