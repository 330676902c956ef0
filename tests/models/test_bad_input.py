"""Broken model directories and bad requests fail with errors that name the problem."""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
import yaml
from sklearn.linear_model import LogisticRegression

from shipyard.errors import AlreadyExists, IntegrityError, InvalidInput, NotFound, SchemaMismatch
from shipyard.models import load_model, read_mlmodel, save_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory, credit_data) -> Path:
    X, y = credit_data
    path = tmp_path_factory.mktemp("bad") / "m"
    save_model(LogisticRegression(max_iter=1000).fit(X, y), path, input_example=X.head(2))
    return path


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_missing_mlmodel(tmp_path: Path, saved: Path) -> None:
    m = _copy(saved, tmp_path / "m")
    (m / "MLmodel").unlink()
    with pytest.raises(NotFound, match="no MLmodel file"):
        load_model(m)
    with pytest.raises(NotFound, match="does not exist"):
        load_model(tmp_path / "nowhere")


def test_corrupt_mlmodel_yaml(tmp_path: Path, saved: Path) -> None:
    m = _copy(saved, tmp_path / "m")
    (m / "MLmodel").write_text("flavors: [unclosed\n  : :")
    with pytest.raises(InvalidInput, match="not valid YAML.*corrupt"):
        read_mlmodel(m)
    (m / "MLmodel").write_text("just a string\n")
    with pytest.raises(InvalidInput, match="no 'flavors' mapping"):
        load_model(m, verify=False)


def test_unknown_flavor(tmp_path: Path, saved: Path) -> None:
    m = _copy(saved, tmp_path / "m")
    (m / "shipyard.json").unlink()
    doc = yaml.safe_load((m / "MLmodel").read_text())
    doc["flavors"] = {"h2o": {"data": "model.h2o"}}
    (m / "MLmodel").write_text(yaml.safe_dump(doc))
    with pytest.raises(InvalidInput, match=r"flavors \['h2o'\], none of which Shipyard can load") as e:
        load_model(m)
    assert e.value.details["flavors"] == ["h2o"]
    with pytest.raises(InvalidInput, match="unknown model flavor 'h2o'"):
        save_model(object(), tmp_path / "x", flavor="h2o")
    with pytest.raises(InvalidInput, match="cannot tell which flavor saves a builtins.object"):
        save_model(object(), tmp_path / "y")
    assert not (tmp_path / "y").exists()


def test_missing_model_file(tmp_path: Path, saved: Path) -> None:
    m = _copy(saved, tmp_path / "m")
    (m / "model.skops").unlink()
    with pytest.raises(NotFound, match="'model.skops' is missing"):
        load_model(m)
    with pytest.raises(NotFound, match="'model.skops' named in MLmodel is missing"):
        load_model(m, verify=False)


def test_modified_model_file_fails_integrity(tmp_path: Path, saved: Path) -> None:
    m = _copy(saved, tmp_path / "m")
    with (m / "model.skops").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(IntegrityError, match="does not match the sha256") as e:
        load_model(m)
    assert e.value.details["file"] == "model.skops"


def test_existing_target_is_not_overwritten(saved: Path, credit_data) -> None:
    X, y = credit_data
    before = (saved / "MLmodel").read_text()
    with pytest.raises(AlreadyExists, match="overwrite=True"):
        save_model(LogisticRegression(max_iter=1000).fit(X, y), saved)
    assert (saved / "MLmodel").read_text() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["m"]  # no temporary left behind


def test_schema_mismatch_names_field(saved: Path, credit_data) -> None:
    X, _ = credit_data
    model = load_model(saved)
    rec = X.iloc[0].to_dict()
    with pytest.raises(SchemaMismatch, match="missing field 'tenure'"):
        model.predict({k: v for k, v in rec.items() if k != "tenure"})
    with pytest.raises(SchemaMismatch, match="unexpected field 'zip'"):
        model.predict({**rec, "zip": 1.0})
    with pytest.raises(SchemaMismatch, match="'income'.*expects double, got str"):
        model.predict({**rec, "income": "4200"})
    with pytest.raises(SchemaMismatch, match="does not match the 5 input columns"):
        model.predict(np.ones((1, 4)))


def test_stored_files_are_mlflow_shaped(saved: Path) -> None:
    doc = read_mlmodel(saved)
    assert doc["flavors"]["python_function"]["loader_module"] == "shipyard.models.pyfunc_loader"
    assert doc["saved_input_example_info"]["pandas_orient"] == "split"
    example = json.loads((saved / "input_example.json").read_text())
    assert example["columns"] == ["age", "income", "debt_ratio", "late_payments", "tenure"]
    assert any(line.startswith("scikit-learn==") for line in (saved / "requirements.txt").read_text().splitlines())
    assert yaml.safe_load((saved / "python_env.yaml").read_text())["dependencies"] == ["-r requirements.txt"]


def test_lightgbm_text_model_is_not_pickle(tmp_path: Path, credit_data) -> None:
    X, y = credit_data
    clf = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y)
    save_model(clf, tmp_path / "m")
    assert load_model(tmp_path / "m", trusted=False).classes == [0, 1]


def test_input_errors_raised_inside_a_model_stay_input_errors(tmp_path: Path, credit_data) -> None:
    """A scorecard refusing text in a numeric column is the caller's mistake (400), not a model
    failure (500), although input errors are also ``ValueError``."""
    from shipyard.errors import ModelError
    from shipyard.risk.binning import Binner
    from shipyard.risk.scorecard import Scorecard

    X, y = credit_data
    card = Scorecard(binner=Binner(max_bins=4)).fit(X, y)
    save_model(card, tmp_path / "card", input_example=X.head(2))
    loaded = load_model(tmp_path / "card")
    row = np.array([["forty", 1000.0, 0.5, 1.0, 5.0]], dtype=object)
    with pytest.raises(SchemaMismatch, match="'age' must be numeric") as e:
        loaded.predict_array(row)
    assert not isinstance(e.value, ModelError) and e.value.status == 400
