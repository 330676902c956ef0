"""Registry core and release workflow on every metadata backend (validation in-process)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from shipyard.artifacts import sha256_dir
from shipyard.errors import AlreadyExists, Conflict, Forbidden, InvalidInput, NotFound
from shipyard.models import save_model
from shipyard.models.python_model import PythonModel
from shipyard.workspace import Workspace
from tests.conftest import as_user as signed_in


def as_user(ws: Workspace, user: str, role: str = "reviewer") -> Workspace:
    """The same project seen by another user, signed in with a token of that user."""
    return signed_in(ws, user, role, "default")


def release(ws: Workspace, name: str, version: int) -> None:
    as_user(ws, "bob").registry.approve(name, version, comment="looks good")


def test_register_records_fingerprint_signature_and_validation(workspace, model_dir):
    reg = workspace.registry
    mv = reg.register(model_dir, "credit", metrics={"auc": 0.81}, tags={"team": "risk"},
                      lineage={"dataset_version": "german@3", "feature_views": ["applicant"]})
    expected_sha, expected_size = sha256_dir(model_dir)
    assert (mv.version, mv.flavor, mv.created_by) == (1, "sklearn", "alice")
    assert mv.sha256 == expected_sha and mv.size == expected_size
    assert [c["name"] for c in mv.signature["inputs"]] == ["age", "income", "debt_ratio", "late_payments", "tenure"]
    assert mv.metrics == {"auc": 0.81} and mv.tags == {"team": "risk"}
    assert mv.lineage == {"dataset_version": "german@3", "feature_views": ["applicant"]}
    assert mv.status == "validated", mv.status_reason
    assert mv.validation["checks"] == ["sha256", "load", "predict", "expected_output", "fast_path", "timing"]
    latency = mv.validation["latency_ms"]
    assert latency["calls"] == 20 and 0 < latency["p50"] <= latency["p99"] <= latency["max"]
    stored = workspace.artifacts.list("models/credit/1")
    assert sorted(p.split("/", 3)[3] for p in stored) == sorted(
        p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file())
    kinds = [e["kind"] for e in reg.history("credit")]
    assert kinds == ["model.version_validated", "model.validation_started", "model.version_registered",
                     "model.created"]


def test_versions_are_numbered_listed_and_resolved(workspace, model_dir):
    reg = workspace.registry
    reg.create_model("credit", "German credit PD model", requires_approval=False, tags={"domain": "risk"})
    with pytest.raises(AlreadyExists, match="already exists"):
        reg.create_model("credit")
    numbers = [reg.register(model_dir, "credit").version for _ in range(3)]
    assert numbers == [1, 2, 3]
    assert [v.version for v in reg.list_versions("credit")] == [1, 2, 3]
    assert reg.get_version("credit", "latest").version == 3
    assert reg.get_version("credit", "v2").version == 2
    model = reg.get_model("credit")
    assert (model.latest_version, model.requires_approval, model.description) == (3, False, "German credit PD model")
    assert [m.name for m in reg.list_models()] == ["credit"]
    with pytest.raises(NotFound, match=r"no version 7; its versions: \[1, 2, 3\]"):
        reg.get_version("credit", 7)
    with pytest.raises(NotFound, match="'nope' is not registered"):
        reg.list_versions("nope")


def test_approval_needs_a_different_reviewer_and_a_validated_version(workspace, model_dir):
    reg = workspace.registry
    reg.register(model_dir, "credit")
    events_before = len(reg.history("credit"))
    # without a token nobody can approve, whatever the user setting says
    with pytest.raises(Forbidden, match="needs an authenticated reviewer"):
        reg.approve("credit", 1)
    with pytest.raises(Forbidden, match="'alice' registered model 'credit' version 1 and cannot also approve"):
        as_user(workspace, "alice").registry.approve("credit", 1)
    with pytest.raises(Forbidden, match="needs the reviewer or admin role"):
        as_user(workspace, "dave", "modeler").registry.approve("credit", 1)
    assert len(reg.history("credit")) == events_before  # a refused change writes no event
    mv = as_user(workspace, "bob").registry.approve("credit", 1, comment="checked the report")
    assert mv.approved_by == "bob" and mv.approved_at >= mv.created_at
    with pytest.raises(Conflict, match="already approved by 'bob'"):
        as_user(workspace, "carol").registry.approve("credit", 1)
    event = reg.history("credit")[0]
    assert (event["kind"], event["actor"], event["details"]["comment"]) == (
        "model.version_approved", "bob", "checked the report")


def test_alias_needs_validation_and_approval_unless_forced(workspace, model_dir):
    reg = workspace.registry
    reg.register(model_dir, "credit")
    with pytest.raises(Conflict, match="requires approval and version 1 is not approved"):
        reg.set_alias("credit", "champion", 1)
    assert reg.list_aliases("credit") == {}
    forced = reg.set_alias("credit", "champion", 1, force=True)
    assert forced.aliases == ["champion"]
    (move,) = reg.alias_history("credit", "champion")
    assert (move.version, move.action, move.forced, move.moved_by) == (1, "set", True, "alice")
    assert reg.history("credit")[0]["details"]["forced"] is True
    reg.register(model_dir, "credit")
    release(workspace, "credit", 2)
    assert reg.set_alias("credit", "champion", 2).version == 2
    assert reg.get_alias("credit", "champion").version == 2
    assert reg.get_model("credit").aliases == {"champion": 2}


def test_rollback_walks_back_through_the_alias_history(workspace, model_dir):
    reg = workspace.registry
    reg.create_model("credit", requires_approval=False)
    for _ in range(3):
        reg.register(model_dir, "credit")
    for version in (1, 2, 3):
        reg.set_alias("credit", "champion", version)
    assert reg.rollback("credit", "champion").version == 2
    assert reg.rollback("credit", "champion").version == 1
    with pytest.raises(Conflict, match="no earlier version to roll back to.*`shipyard models alias`"):
        reg.rollback("credit", "champion")
    reg.set_alias("credit", "champion", 3)
    assert reg.rollback("credit", "champion").version == 1
    moves = [(m.action, m.version) for m in reg.alias_history("credit", "champion")]
    assert moves == [("set", 1), ("set", 2), ("set", 3), ("rollback", 2), ("rollback", 1), ("set", 3),
                     ("rollback", 1)]
    with pytest.raises(NotFound, match="no alias 'challenger'"):
        reg.rollback("credit", "challenger")
    with pytest.raises(NotFound, match="no alias 'challenger'.*set one with `shipyard models alias`"):
        reg.load("credit", "challenger")


def test_delete_version_refused_while_an_alias_points_at_it(workspace, model_dir):
    reg = workspace.registry
    reg.create_model("credit", requires_approval=False)
    reg.register(model_dir, "credit")
    reg.register(model_dir, "credit")
    reg.set_alias("credit", "champion", 1)
    with pytest.raises(Conflict, match="alias 'champion' points at it") as err:
        reg.delete_version("credit", 1)
    assert err.value.details["aliases"] == ["champion"]
    reg.set_alias("credit", "champion", 2)
    reg.delete_version("credit", 1)
    assert workspace.artifacts.list("models/credit/1") == []
    with pytest.raises(NotFound):
        reg.get_version("credit", 1)
    assert reg.register(model_dir, "credit").version == 3  # numbers are never reused
    assert [v.version for v in reg.list_versions("credit")] == [2, 3]


def test_load_checks_resolves_aliases_caches_and_predicts(workspace, model_dir, fitted):
    clf, X = fitted
    reg = workspace.registry
    reg.create_model("credit", requires_approval=False)
    reg.register(model_dir, "credit")
    reg.set_alias("credit", "champion", 1)
    model = reg.load("credit", "champion")
    assert reg.load("credit", 1) is model
    expected = clf.predict_proba(X.head(50))[:, 1]
    np.testing.assert_allclose(model.predict(X.head(50)), expected, rtol=1e-12)
    np.testing.assert_allclose(model.predict_array(X.head(50).to_numpy()), expected, rtol=1e-12)


def test_reject_blocks_alias_and_revalidation(workspace, model_dir):
    reg = workspace.registry
    reg.register(model_dir, "credit")
    mv = as_user(workspace, "bob").registry.reject("credit", 1, comment="uses a protected attribute")
    assert (mv.status, mv.status_reason) == ("rejected", "rejected by bob: uses a protected attribute")
    with pytest.raises(Conflict, match="it is rejected"):
        reg.set_alias("credit", "champion", 1)
    with pytest.raises(Conflict, match="not validated again"):
        reg.validate("credit", 1)
    with pytest.raises(Conflict, match="only validated versions can be approved"):
        as_user(workspace, "carol").registry.approve("credit", 1)


def test_validate_reruns_with_a_new_attempt(workspace, model_dir):
    reg = workspace.registry
    first = reg.register(model_dir, "credit")
    again = reg.validate("credit", 1)
    assert again.status == "validated"
    assert again.validation["attempt"] != first.validation["attempt"]
    kinds = [e["kind"] for e in reg.history("credit")][:2]
    assert kinds == ["model.version_validated", "model.validation_started"]


def test_download_copies_verified_files(workspace, model_dir, tmp_path):
    reg = workspace.registry
    reg.register(model_dir, "credit")
    out = reg.download("credit", 1, tmp_path / "copy")
    assert sha256_dir(out) == sha256_dir(model_dir)
    with pytest.raises(InvalidInput, match="not an empty folder"):
        reg.download("credit", 1, tmp_path / "copy")


@pytest.mark.parametrize("bad", ["bad/name", "../up", "", "a" * 200, "-leading"])
def test_bad_model_names_are_refused_with_the_rule(workspace, model_dir, bad):
    with pytest.raises(InvalidInput, match="model name .* is not valid: use 1-128 letters"):
        workspace.registry.register(model_dir, bad)


@pytest.mark.parametrize("bad", ["123", "latest", "has space", ""])
def test_bad_alias_names_are_refused(workspace, model_dir, bad):
    workspace.registry.register(model_dir, "credit")
    with pytest.raises(InvalidInput, match="alias"):
        workspace.registry.set_alias("credit", bad, 1, force=True)


def test_bad_metadata_is_refused_before_anything_is_stored(workspace, model_dir):
    reg = workspace.registry
    with pytest.raises(InvalidInput, match="metric 'auc' has value 'high'"):
        reg.register(model_dir, "credit", metrics={"auc": "high"})
    with pytest.raises(InvalidInput, match=r"lineage key\(s\) \['dataset'\] are not known"):
        reg.register(model_dir, "credit", lineage={"dataset": "x"})
    assert reg.list_models() == []


def test_model_without_input_example_is_validated_from_its_signature(workspace, fitted, tmp_path):
    clf, X = fitted
    folder = save_model(clf, tmp_path / "bare")  # signature from the fitted feature names, no example
    mv = workspace.registry.register(folder, "bare")
    assert mv.status == "validated", mv.status_reason
    assert mv.validation["example"] == "generated from the signature"
    assert mv.validation["example_rows"] == 5 and "timing" in mv.validation["checks"]
    generated = pd.DataFrame({c: [float(i) for i in range(5)] for c in X.columns})
    np.testing.assert_allclose(mv.validation["baseline_output"], clf.predict_proba(generated)[:, 1], rtol=1e-12)
    shutil.rmtree(folder)


class NoSignature(PythonModel):
    def predict(self, df):
        return df.sum(axis=1).to_numpy()


def test_model_without_example_or_signature_fails_validation_with_the_fix(workspace, tmp_path):
    folder = save_model(NoSignature(), tmp_path / "bare")
    mv = workspace.registry.register(folder, "bare")
    assert mv.status == "failed"
    assert "neither an input example nor a signature" in mv.status_reason and "input_example=" in mv.status_reason


def test_register_from_a_run_artifact_records_the_run(workspace, model_dir):
    run = workspace.tracking.create_run("credit", name="lr")
    workspace.tracking.log_artifacts(run.id, model_dir, "model")
    mv = workspace.registry.register(f"runs:/{run.id}/model", "credit", lineage={"dataset_version": "german@1"})
    assert (mv.version, mv.source_run_id, mv.status) == (1, run.id, "validated")
    assert mv.sha256 == sha256_dir(model_dir)[0]
    with pytest.raises(NotFound, match="has no artifact 'nope'"):
        workspace.registry.register(f"runs:/{run.id}/nope", "credit")
    with pytest.raises(InvalidInput, match="must look like runs:/<run_id>/<artifact path>"):
        workspace.registry.register(f"runs:/{run.id}", "credit")
    assert [v.version for v in workspace.registry.list_versions("credit")] == [1]


def test_release_check_figures_are_recorded_on_the_version(workspace, model_dir):
    reg = workspace.registry
    reg.register(model_dir, "credit")
    figures = {"target_rate": 200.0, "achieved_rate": 198.5, "count": 400, "errors": 0, "p99_ms": 2.5}
    mv = reg.record_stress_test("credit", 1, figures)
    assert {k: mv.validation["stress_test"][k] for k in figures} == figures
    assert mv.validation["latency_ms"]["calls"] == 20  # validation figures are kept
    event = reg.history("credit")[0]
    assert (event["kind"], event["details"]["p99_ms"]) == ("model.stress_tested", 2.5)


def test_the_registry_is_composed_not_mixed_in(workspace) -> None:
    # the release workflow is a part with its own dependencies, not a base class with placeholders
    from shipyard.models.registry import ModelRegistry
    from shipyard.models.registry.release import ReleaseWorkflow

    registry = workspace.registry
    assert ReleaseWorkflow not in ModelRegistry.__mro__
    assert isinstance(registry.release, ReleaseWorkflow) and registry.release.versions is registry
