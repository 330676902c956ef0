"""The validation process: it loads only files that match the sha256 the registry recorded at
upload, and it holds no secret of the registry process (environment, metadata URL, settings).

The attacker's package is a pickle that, when unpickled, writes a marker file describing the
process that ran it (pid, environment, command line, the parent's environment)."""

from __future__ import annotations

import json
import os
import pickle
import uuid
from pathlib import Path

import pytest

from shipyard.config import load_settings
from shipyard.errors import IntegrityError
from shipyard.models import save_model
from shipyard.models.mlmodel import file_digests
from shipyard.models.python_model import PythonModel
from shipyard.models.validator import KEPT_VARIABLES
from shipyard.workspace import Workspace


def doubler() -> PythonModel:
    class Doubler(PythonModel):  # defined here: cloudpickle stores it by value, loadable in any process
        def predict(self, df):
            return df.sum(axis=1).to_numpy() * 2

    return Doubler()


class Crafted:
    """Unpickling this runs ``exec``: it records who ran it in ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        code = (
            "import json, os, sys\n"
            "def _read(p):\n"
            "    try:\n"
            "        return open(p, 'rb').read().replace(b'\\0', b' ').decode('utf-8', 'replace')\n"
            "    except OSError as exc:\n"
            "        return str(exc)\n"
            "json.dump({'pid': os.getpid(), 'cwd': os.getcwd(), 'environ': dict(os.environ),\n"
            "           'cmdline': _read('/proc/self/cmdline'),\n"
            "           'parent_environ': _read('/proc/%d/environ' % os.getppid())},\n"
            f"          open({self.marker!r}, 'w'))\n"
        )
        return (exec, (code,))


def crafted_package(root: Path, marker: Path, credit_data) -> Path:
    """A python_model package whose pickle is the attacker's (its own shipyard.json updated to match)."""
    X, _ = credit_data
    folder = save_model(doubler(), root, input_example=X.head(3))
    (folder / "python_model.pkl").write_bytes(pickle.dumps(Crafted(marker)))
    record = json.loads((folder / "shipyard.json").read_text())
    record["files"] = file_digests(folder)
    (folder / "shipyard.json").write_text(json.dumps(record))
    return folder


def _workspace(root: Path, subprocess: bool = True, **overrides) -> Workspace:
    return Workspace(load_settings(root, user="alice", validation_subprocess=subprocess, validation_timing_calls=5,
                                   **overrides))


@pytest.fixture
def secrets(monkeypatch) -> list[str]:
    """Known secrets in the registry process's environment: the secrets store's key, a cloud
    credential and another variable named like a secret."""
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    values = [key, f"canary-{uuid.uuid4().hex}", f"canary-{uuid.uuid4().hex}"]
    monkeypatch.setenv("SHIPYARD_SECRET_KEY", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", values[1])
    monkeypatch.setenv("SHIPYARD_DATABASE_PASSWORD", values[2])
    return values


def _assert_clean(marker: Path, secrets: list[str], project: Path) -> dict:
    text = marker.read_text()
    for secret in secrets:
        assert secret not in text
    seen = json.loads(text)
    assert seen["pid"] != os.getpid()
    # the validator's own variables, and two that scikit-learn sets for OpenMP when imported
    allowed = set(KEPT_VARIABLES) | {"PYTHONPATH", "HOME", "TMPDIR", "PYTHONDONTWRITEBYTECODE",
                                     "KMP_DUPLICATE_LIB_OK", "KMP_INIT_AT_FORK"}
    assert set(seen["environ"]) <= allowed, sorted(set(seen["environ"]) - allowed)
    assert not any(k.startswith(("SHIPYARD_", "AWS_")) for k in seen["environ"])
    assert "SHIPYARD_" not in seen["parent_environ"] and "AWS_" not in seen["parent_environ"]
    assert str(project) not in seen["cmdline"] and str(project) not in seen["cwd"]
    return seen


def test_uploaded_pickle_runs_only_in_a_clean_process(tmp_path, credit_data, secrets, monkeypatch):
    from tests.conftest import user_token

    marker = tmp_path / "marker.json"
    folder = crafted_package(tmp_path / "pkg", marker, credit_data)
    first = _workspace(tmp_path / "project")
    token = user_token(first, "alice", "admin")
    first.close()
    monkeypatch.setenv("SHIPYARD_TOKEN", token)  # the registry process acts with a real token
    ws = _workspace(tmp_path / "project")
    try:
        assert ws.principal.name == "alice"
        mv = ws.registry.register(folder, "evil", await_validation=True, validation_timeout=120)
    finally:
        ws.close()
    # the package's files matched what was uploaded, so the validator loaded them: in its own
    # process, with none of the registry's secrets (the version fails: the pickle is no model)
    assert mv.status == "failed"
    assert marker.exists()
    _assert_clean(marker, [*secrets, token], tmp_path / "project")


@pytest.mark.postgres
def test_metadata_password_never_reaches_the_validator(tmp_path, credit_data, postgres_url, secrets):
    import sqlalchemy as sa

    password = f"pw-{uuid.uuid4().hex}"
    url = sa.make_url(postgres_url).set(password=password).render_as_string(hide_password=False)
    marker = tmp_path / "marker.json"
    folder = crafted_package(tmp_path / "pkg", marker, credit_data)
    ws = _workspace(tmp_path / "project", metadata_url=url)
    try:
        mv = ws.registry.register(folder, "evil", await_validation=True, validation_timeout=120)
        assert mv.status == "failed"
        validation = json.dumps(mv.validation)
    finally:
        ws.close()
    _assert_clean(marker, [*secrets, password], tmp_path / "project")
    assert password not in validation


@pytest.mark.parametrize("subprocess", [True, False])
def test_files_changed_after_registration_are_refused_before_loading(tmp_path, credit_data, subprocess):
    X, _ = credit_data
    marker = tmp_path / "marker.json"
    folder = save_model(doubler(), tmp_path / "pkg", input_example=X.head(3))
    ws = _workspace(tmp_path / "project", subprocess=subprocess)
    try:
        mv = ws.registry.register(folder, "credit", await_validation=True, validation_timeout=120)
        assert mv.status == "validated", mv.status_reason
        stored = ws.artifacts.local_path(mv.artifact_path)
        crafted = crafted_package(tmp_path / "evil", marker, credit_data)
        for name in ("python_model.pkl", "shipyard.json"):  # swapped in the artifact store
            (stored / name).write_bytes((crafted / name).read_bytes())
        again = ws.registry.validate("credit", 1, timeout=120)
        assert again.status == "failed"
        assert "do not match the sha256 the registry recorded" in again.status_reason
        with pytest.raises(IntegrityError):
            ws.registry.load("credit", 1)
    finally:
        ws.close()
    assert not marker.exists()


def test_pickles_refused_by_setting_never_run(tmp_path, credit_data):
    marker = tmp_path / "marker.json"
    folder = crafted_package(tmp_path / "pkg", marker, credit_data)
    ws = _workspace(tmp_path / "project", allow_pickle_models=False)
    try:
        with pytest.raises(Exception, match="allow_pickle_models"):
            ws.registry.register(folder, "evil")
    finally:
        ws.close()
    assert not marker.exists()


def test_each_version_runs_in_a_fresh_process(tmp_path, credit_data):
    X, _ = credit_data
    folder = save_model(doubler(), tmp_path / "pkg", input_example=X.head(3))
    ws = _workspace(tmp_path / "project")
    try:
        first = ws.registry.register(folder, "credit", await_validation=True, validation_timeout=120)
        second = ws.registry.register(folder, "credit", await_validation=True, validation_timeout=120)
    finally:
        ws.close()
    assert first.status == second.status == "validated", (first.status_reason, second.status_reason)
    pids = {first.validation["pid"], second.validation["pid"], os.getpid()}
    assert len(pids) == 3


def test_mlflow_pyfunc_with_a_signature_and_no_example_is_validated(tmp_path, credit_data):
    mlflow_pyfunc = pytest.importorskip("mlflow.pyfunc")
    from mlflow.models import infer_signature

    X, _ = credit_data

    def build():
        class Ratio(mlflow_pyfunc.PythonModel):  # defined here: pickled by value, loadable anywhere
            def predict(self, context, model_input, params=None):
                return (model_input["debt_ratio"] * model_input["income"]).to_numpy()

        return Ratio()

    path = tmp_path / "ratio"
    mlflow_pyfunc.save_model(str(path), python_model=build(), signature=infer_signature(X.head(5)),
                             pip_requirements=["pandas"])
    ws = _workspace(tmp_path / "project")
    try:
        mv = ws.registry.register(path, "ratio", await_validation=True, validation_timeout=180)
    finally:
        ws.close()
    assert mv.status == "validated", mv.status_reason
    assert mv.validation["example"] == "generated from the signature"
    assert mv.validation["baseline_output"] == [float(i) * float(i) for i in range(5)]
