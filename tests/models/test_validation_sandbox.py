"""The validation process: it loads only files that match the sha256 the registry recorded at
upload, and it holds no secret of the registry process (environment, metadata URL, settings).

The attacker's package is a pickle that, when unpickled, describes the process that ran it (pid,
environment, command line, the parent's environment) on stdout — which the validation process
sends to the version's validation log — and in a marker file when it may write one (a confined
validation process may not)."""

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
            "seen = {'pid': os.getpid(), 'cwd': os.getcwd(), 'environ': dict(os.environ),\n"
            "        'cmdline': _read('/proc/self/cmdline'),\n"
            "        'parent_environ': _read('/proc/%d/environ' % os.getppid())}\n"
            "print('MARKER ' + json.dumps(seen), flush=True)\n"
            "try:\n"
            f"    json.dump(seen, open({self.marker!r}, 'w'))\n"
            "except OSError:\n"
            "    pass\n"
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


def _log(project: Path, name: str = "evil", version: int = 1) -> Path:
    return project / ".shipyard" / "logs" / f"validation-{name}-{version}.log"


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


def _ran(marker: Path, log: Path) -> str | None:
    """What the attacker's code recorded (the marker file, else its line in the validation log)."""
    if marker.exists():
        return marker.read_text()
    if log.exists() and "MARKER " in log.read_text():
        return log.read_text().split("MARKER ", 1)[1].splitlines()[0]
    return None


def _assert_clean(marker: Path, secrets: list[str], project: Path, log: Path) -> dict:
    text = _ran(marker, log)
    assert text is not None, "the attacker's code did not run"
    for secret in secrets:
        assert secret not in text and secret not in log.read_text()
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
    _assert_clean(marker, [*secrets, token], tmp_path / "project", _log(tmp_path / "project"))


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
    _assert_clean(marker, [*secrets, password], tmp_path / "project", _log(tmp_path / "project"))
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
    assert _ran(marker, _log(tmp_path / "project", "credit")) is None


def test_pickles_refused_by_setting_never_run(tmp_path, credit_data):
    marker = tmp_path / "marker.json"
    folder = crafted_package(tmp_path / "pkg", marker, credit_data)
    ws = _workspace(tmp_path / "project", allow_pickle_models=False)
    try:
        with pytest.raises(Exception, match="allow_pickle_models"):
            ws.registry.register(folder, "evil")
    finally:
        ws.close()
    assert _ran(marker, _log(tmp_path / "project")) is None


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


# -- confinement (Landlock) ------------------------------------------------------------------------
def _normal_models(credit_data):
    import lightgbm as lgb
    import xgboost as xgb
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    X, y = credit_data
    return {
        "sklearn": LogisticRegression(max_iter=500).fit(X, y),
        "sklearn_forest": RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y),
        "lightgbm": lgb.LGBMClassifier(n_estimators=20, verbose=-1, random_state=0).fit(X, y),
        "lightgbm_booster": lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X, y), 10),
        "xgboost": xgb.XGBClassifier(n_estimators=20, max_depth=3).fit(X, y),
        "pyfunc": doubler(),
    }


def test_normal_models_validate_in_the_confined_process(tmp_path, credit_data):
    from shipyard.models.confine import landlock_abi

    X, _ = credit_data
    ws = _workspace(tmp_path / "project")
    try:
        for name, model in _normal_models(credit_data).items():
            folder = save_model(model, tmp_path / name, input_example=X.head(5))
            mv = ws.registry.register(folder, name, await_validation=True, validation_timeout=180)
            assert mv.status == "validated", (name, mv.status_reason)
            if landlock_abi() > 0:
                assert mv.validation["confinement"].startswith("landlock"), name
    finally:
        ws.close()


def _fingerprint(folder: Path) -> str:
    """The artifact store's sha256 of a folder (what the registry records at upload)."""
    import hashlib

    lines = [f"{p.relative_to(folder).as_posix()}\t{hashlib.sha256(p.read_bytes()).hexdigest()}\n"
             for p in sorted(q for q in folder.rglob("*") if q.is_file())]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def test_without_confinement_packages_that_run_code_are_refused_unless_allowed(tmp_path, credit_data, model_dir):
    """Where the kernel cannot confine the validation process, a package that runs code when
    loaded is refused before it is loaded; one that runs none validates; the setting allows both."""
    from shipyard.models.validation import ValidationJob, check_package

    marker = tmp_path / "marker.json"
    evil = crafted_package(tmp_path / "evil", marker, credit_data)

    def job(folder: Path, unconfined_code: bool) -> ValidationJob:
        return ValidationJob(folder=str(folder), sha256=_fingerprint(folder), tolerance=1e-6,
                             timing_calls=2, unconfined_code=unconfined_code)

    refused = check_package(job(evil, False), confinement="")
    assert not refused.ok and "allow_unconfined_validation" in refused.reason
    assert refused.report["confinement"] == "none"
    assert not marker.exists()
    plain = check_package(job(model_dir, False), confinement="")  # scikit-learn in skops: no code
    assert plain.ok, plain.reason
    allowed = check_package(job(evil, True), confinement="")
    assert not allowed.ok and marker.exists()  # it ran: the setting accepted the risk


def test_confine_keeps_private_files_and_other_processes_out_of_reach(tmp_path):
    """A confined process reads allowed folders and writes its work folder; it cannot read a
    private folder, a folder it was not given, or another process's environment."""
    import subprocess
    import sys

    from shipyard.models.confine import landlock_abi

    if landlock_abi() == 0:
        pytest.skip("this kernel has no Landlock")
    private = tmp_path / "project" / ".shipyard"
    private.mkdir(parents=True)
    (private / "credentials").write_text("token-canary")
    model, work, elsewhere = tmp_path / "model", tmp_path / "work", tmp_path / "elsewhere"
    for folder in (model, work, elsewhere):
        folder.mkdir()
    (model / "MLmodel").write_text("flavors: {}")
    (elsewhere / "file").write_text("x")
    script = f"""
import json, os, sys
from shipyard.models.confine import confine, validation_rules
read, write, left_out = validation_rules({str(model)!r}, {str(work)!r}, [{str(private)!r}])
applied = confine(read=read, write=write)
out = {{}}
def attempt(label, fn):
    try:
        fn()
        out[label] = "ok"
    except OSError as exc:
        out[label] = type(exc).__name__
attempt("model", lambda: open({str(model / "MLmodel")!r}).read())
attempt("work", lambda: open({str(work / "out")!r}, "w").write("x"))
attempt("credentials", lambda: open({str(private / "credentials")!r}).read())
attempt("elsewhere", lambda: open({str(elsewhere / "file")!r}).read())
attempt("parent_environ", lambda: open("/proc/%d/environ" % os.getppid()).read())
attempt("etc_shadow", lambda: open("/etc/shadow").read())
import numpy, sklearn  # the libraries still import
print(json.dumps(out))
"""
    env = {**os.environ, "SHIPYARD_CANARY": "environ-canary"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["model"] == seen["work"] == "ok"
    denied = {"credentials", "elsewhere", "parent_environ", "etc_shadow"}
    assert all(seen[k] in ("PermissionError", "FileNotFoundError") for k in denied), seen
    assert "token-canary" not in done.stdout and "environ-canary" not in done.stdout


def test_a_read_root_containing_a_private_path_is_left_out(tmp_path, monkeypatch):
    import sys

    from shipyard.models.confine import validation_rules

    project = tmp_path / "project"
    (project / ".shipyard").mkdir(parents=True)
    monkeypatch.setattr(sys, "path", [*sys.path, str(project)])  # e.g. PYTHONPATH=<project>
    read, write, left_out = validation_rules(tmp_path / "model", tmp_path / "work", [project / ".shipyard"])
    assert str(project) in left_out and str(project.resolve()) not in read
