"""Bad input and faults: each fails with a clear error and leaves no partial state behind."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from shipyard.config import load_settings
from shipyard.errors import Conflict, IntegrityError, InvalidInput, NotFound, StoreUnavailable
from shipyard.models import save_model
from shipyard.store import MetadataStore
from shipyard.store.schema import model_versions, registered_models
from shipyard.workspace import Workspace


def copy_of(model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(model_dir, tmp_path / "copy"))


def assert_nothing_stored(ws: Workspace, name: str = "credit") -> None:
    with ws.store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(model_versions)).scalar() == 0
    assert ws.artifacts.list(f"models/{name}") == []


def test_missing_mlmodel_is_refused_at_register(workspace, model_dir, tmp_path):
    folder = copy_of(model_dir, tmp_path)
    (folder / "MLmodel").unlink()
    with pytest.raises(NotFound, match="no MLmodel file in .*save the model with"):
        workspace.registry.register(folder, "credit")
    assert_nothing_stored(workspace)
    assert workspace.registry.list_models() == []


def test_corrupt_mlmodel_is_refused_at_register(workspace, model_dir, tmp_path):
    folder = copy_of(model_dir, tmp_path)
    (folder / "MLmodel").write_text("flavors: [sklearn\n  : :")
    with pytest.raises(InvalidInput, match="MLmodel file .* is not valid YAML"):
        workspace.registry.register(folder, "credit")
    (folder / "MLmodel").write_text("artifact_path: model\n")
    with pytest.raises(InvalidInput, match="has no 'flavors' mapping"):
        workspace.registry.register(folder, "credit")
    assert_nothing_stored(workspace)


def test_unknown_flavor_is_refused_at_register(workspace, tmp_path):
    folder = tmp_path / "h2o"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"\x00" * 16)
    (folder / "MLmodel").write_text(
        "flavors:\n  h2o:\n    data: model.bin\n  python_function:\n    loader_module: h2o_loader\n")
    with pytest.raises(InvalidInput, match=r"flavor\(s\) \['h2o', 'python_function'\] and Shipyard loads none") as err:
        workspace.registry.register(folder, "credit")
    assert "sklearn" in err.value.details["known"]
    assert_nothing_stored(workspace)


def test_failed_upload_leaves_no_row_and_no_files(workspace, model_dir, monkeypatch):
    real_put = workspace.artifacts.put_file
    calls = {"n": 0}

    def flaky(path, local_file):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real_put(path, local_file)

    monkeypatch.setattr(workspace.artifacts, "put_file", flaky)
    with pytest.raises(OSError, match="disk full"):
        workspace.registry.register(model_dir, "credit")
    assert_nothing_stored(workspace)
    assert [e["kind"] for e in workspace.registry.history("credit")] == ["model.created"]
    monkeypatch.setattr(workspace.artifacts, "put_file", real_put)
    assert workspace.registry.register(model_dir, "credit").version == 1


def test_missing_artifact_at_load_names_the_file(workspace, model_dir):
    reg = workspace.registry
    reg.register(model_dir, "credit")
    workspace.artifacts.local_path("models/credit/1/MLmodel").unlink()
    with pytest.raises(NotFound, match="file 'models/credit/1/MLmodel' of model 'credit' version 1 is missing") as err:
        reg.load("credit", 1)
    assert err.value.details["path"] == "models/credit/1/MLmodel"


def test_tampered_file_fails_the_sha256_check(workspace, model_dir):
    reg = workspace.registry
    reg.register(model_dir, "credit")
    example = workspace.artifacts.local_path("models/credit/1/input_example.json")
    example.write_text(example.read_text().replace("]]", ", 0]]", 1))
    with pytest.raises(IntegrityError, match="does not match its recorded sha256"):
        reg.load("credit", 1)
    mv = reg.validate("credit", 1)
    assert mv.status == "failed" and "sha256" in mv.status_reason


def test_pickle_is_never_loaded_before_the_sha256_matches(workspace, fitted, tmp_path):
    clf, X = fitted
    folder = save_model(clf, tmp_path / "pkl", input_example=X.head(5), serialization_format="pickle")
    reg = workspace.registry
    reg.register(folder, "credit")
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.write_text, (marker, "ran"))

    stored = workspace.artifacts.local_path("models/credit/1")
    evil = pickle.dumps(Payload())
    (stored / "model.pkl").write_bytes(evil)
    # An attacker would also fix the per-file digest Shipyard writes at save time.
    record = json.loads((stored / "shipyard.json").read_text())
    record["files"]["model.pkl"] = hashlib.sha256(evil).hexdigest()
    (stored / "shipyard.json").write_text(json.dumps(record))
    with pytest.raises(IntegrityError):
        reg.load("credit", 1)
    assert not marker.exists()


def test_alias_to_a_failed_version_says_validate_or_force(workspace, model_dir, tmp_path):
    folder = copy_of(model_dir, tmp_path)
    record = json.loads((folder / "shipyard.json").read_text())
    recorded = record["expected_output"]["data"]
    recorded[3] = round(recorded[3] + 0.11, 6)
    (folder / "shipyard.json").write_text(json.dumps(record))
    reg = workspace.registry
    reg.create_model("credit", requires_approval=False)
    mv = reg.register(folder, "credit")
    assert mv.status == "failed"
    assert mv.status_reason.startswith("prediction on input example differs from recorded output at row 3: ")
    actual = float(mv.status_reason.split("row 3: ")[1].split(" vs ")[0])
    assert actual == pytest.approx(recorded[3] - 0.11, abs=1e-5)
    with pytest.raises(Conflict, match=r"it is failed \(prediction .*run validate\('credit', 1\) or pass force=True"):
        reg.set_alias("credit", "champion", 1)
    assert reg.list_aliases("credit") == {}
    assert reg.set_alias("credit", "champion", 1, force=True).aliases == ["champion"]


def test_registering_while_the_database_is_locked(tmp_path, model_dir):
    settings = load_settings(tmp_path / "project", user="alice", validation_subprocess=False,
                             validation_timing_calls=5)
    ws = Workspace(settings)
    ws.store = MetadataStore(settings.metadata_url, busy_timeout_s=0.2)
    ws.registry.create_model("credit")
    holder = sqlite3.connect(settings.metadata_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("PRAGMA busy_timeout=100")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreUnavailable, match="locked by another process"):
            ws.registry.register(model_dir, "credit")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert_nothing_stored(ws)
    assert ws.registry.register(model_dir, "credit").version == 1
    ws.close()


def test_a_database_from_the_previous_schema_is_migrated(metadata_url, tmp_path, model_dir):
    old = MetadataStore(metadata_url, migrate=False)
    old.upgrade("0001")
    assert old.current_revision() == "0001"
    with old.begin() as conn:
        conn.execute(registered_models.insert().values(
            name="legacy", description="from 0001", requires_approval=False, tags={"k": "v"},
            created_at=1, updated_at=1, created_by="carol"))
    old.dispose()
    settings = load_settings(tmp_path / "project", metadata_url=metadata_url, artifact_root=str(tmp_path / "a"),
                             user="alice", validation_subprocess=False, validation_timing_calls=5)
    ws = Workspace(settings)
    try:
        assert ws.store.current_revision() == ws.store.head_revision()
        model = ws.registry.get_model("legacy")
        assert (model.description, model.tags, model.created_by, model.requires_approval) == (
            "from 0001", {"k": "v"}, "carol", False)
        mv = ws.registry.register(model_dir, "legacy")
        assert mv.version == 1 and mv.status == "validated"
        assert ws.registry.set_alias("legacy", "champion", 1).aliases == ["champion"]
    finally:
        ws.close()
