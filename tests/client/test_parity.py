"""One suite, two sides: the same calls on a local Workspace and on ``sy.Client`` against a live server
return the same objects and values, and fail with the same error classes.

Values are checked against independent references: sha256 of the bytes written, scikit-learn's own
predictions, and a point-in-time lookup done by hand on the source rows.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shipyard.artifacts import sha256_dir
from shipyard.errors import AlreadyExists, Conflict, Forbidden, InvalidInput, NotFound
from shipyard.features.materialize import MaterializeResult
from shipyard.features.protocol import FeaturesAPI
from shipyard.features.push import PushResult
from shipyard.models.loaded import LoadedModel
from shipyard.models.registry.protocol import RegistryAPI
from shipyard.models.registry.records import AliasMove, ModelVersion, RegisteredModel
from shipyard.tracking.entities import Metric, RunArtifact, RunRecord
from shipyard.tracking.protocol import TrackingAPI
from shipyard.tracking.run import RunLogger
from tests.client.conftest import as_reviewer, model_folder
from tests.features.pit_support import T0


def _files(root: Path) -> dict[str, bytes]:
    files = {"a.txt": b"alpha\n", "sub/b.bin": bytes(range(256)) * 40, "sub/deeper/c.csv": b"x,y\n1,2\n"}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def test_both_sides_implement_the_interfaces(side) -> None:
    _kind, session = side
    assert isinstance(session.registry, RegistryAPI)
    assert isinstance(session.tracking, TrackingAPI)
    assert isinstance(session.features, FeaturesAPI)


def test_tracking(side, tmp_path: Path) -> None:
    kind, session = side
    tracking = session.tracking
    experiment = f"parity_{kind}"
    files = _files(tmp_path / "out")
    single = tmp_path / "report.html"
    single.write_text("<p>report</p>")
    with tracking.start_run(experiment=experiment, name="first", tags={"team": "risk"}) as run:
        assert isinstance(run, RunLogger)
        run.log_params({"C": 1.0, "penalty": "l2"})
        run.log_metrics({"auc": 0.71}, step=1)
        run.log_metrics({"auc": 0.74}, step=2)
        logged = run.log_artifacts(tmp_path / "out", "files")
        one = run.log_artifact(single)
        run.log_text("précis\n", "notes/summary.txt")
        run.log_dict({"depth": 3, "features": ["a", "b"]}, "notes/config.yaml")
    assert all(isinstance(a, RunArtifact) for a in [*logged, one])
    record = tracking.get_run(run.id)
    assert isinstance(record, RunRecord)
    assert record.params == {"C": "1.0", "penalty": "l2"} and record.tags["team"] == "risk"
    assert record.metrics == {"auc": 0.74}
    assert record.info.status == "FINISHED" and record.info.user == "admin"
    history = tracking.metric_history(run.id, "auc")
    assert all(isinstance(m, Metric) for m in history)
    assert [(m.step, m.value) for m in history] == [(1, 0.71), (2, 0.74)]
    listed = {a.path: a for a in tracking.list_artifacts(run.id)}
    expected = {f"files/{rel}": data for rel, data in files.items()} | {"report.html": single.read_bytes()} | {
        "notes/summary.txt": "précis\n".encode(), "notes/config.yaml": b"depth: 3\nfeatures:\n- a\n- b\n"}
    assert sorted(listed) == sorted(expected)
    for path, data in expected.items():
        assert listed[path].size == len(data) and listed[path].sha256 == hashlib.sha256(data).hexdigest()
        assert tracking.read_artifact(run.id, path) == data
    assert [a.path for a in run.list_artifacts("notes")] == ["notes/config.yaml", "notes/summary.txt"]
    copied = tracking.download_artifacts(run.id, "files", tmp_path / "copy")
    assert {p.relative_to(copied).as_posix(): p.read_bytes() for p in copied.rglob("*") if p.is_file()} == files
    assert [r.id for r in tracking.search_runs(experiment)] == [run.id]
    assert all(isinstance(r, RunRecord) for r in tracking.search_runs(experiment))
    # the same errors on both sides, and nothing changed by them
    with pytest.raises(NotFound):
        tracking.get_run("0" * 32)
    with pytest.raises(Conflict):
        tracking.end_run(run.id)
    with pytest.raises(InvalidInput):
        tracking.log_metrics(run.id, {"auc": float("nan")})
    with pytest.raises(Conflict):  # a file cannot take the place of a folder of artifacts
        tracking.log_artifact(run.id, single, "files/a.txt")
    assert tracking.get_run(run.id).metrics == {"auc": 0.74}


def test_registry(side, served, tmp_path: Path) -> None:
    kind, session = side
    registry = session.registry
    name = f"credit_{kind}"
    folder, model, X = model_folder(tmp_path)
    created = registry.create_model(name, description="parity")
    assert isinstance(created, RegisteredModel) and registry.get(name) == registry.get_model(name)
    first = registry.register(folder, name, await_validation=True, tags={"source": kind})
    assert isinstance(first, ModelVersion) and first.status == "validated" and first.version == 1
    assert first.created_by == "admin" and first.tags == {"source": kind}
    with pytest.raises(Forbidden):  # four eyes: the registrant may not approve
        registry.approve(name, first.version)
    reviewer = as_reviewer(served, kind)
    approved = reviewer.registry.approve(name, first.version, comment="checked")
    assert approved.approved_by == "bob"
    second = registry.register(folder, name, await_validation=True)
    reviewer.registry.approve(name, second.version)
    assert [v.version for v in registry.list_versions(name)] == [1, 2]
    assert registry.set_alias(name, "champion", first.version).version == 1
    assert registry.set_alias(name, "champion", second.version).version == 2
    assert registry.list_aliases(name) == {"champion": 2}
    assert registry.rollback(name, "champion").version == 1
    moves = registry.alias_history(name, "champion")
    assert all(isinstance(m, AliasMove) for m in moves)
    assert [m.version for m in moves][-1] == 1
    loaded = registry.load(name, "champion")
    assert isinstance(loaded, LoadedModel)
    np.testing.assert_allclose(np.asarray(loaded.predict(X.head(25))), model.predict_proba(X.head(25))[:, 1])
    target = registry.download(name, 2, tmp_path / "dl")
    assert sha256_dir(target)[0] == registry.get_version(name, 2).sha256
    with pytest.raises(NotFound):
        registry.get_model("ghost")
    with pytest.raises(NotFound):
        registry.get_version(name, 99)
    with pytest.raises(InvalidInput):
        registry.create_model("not a name!")
    with pytest.raises(AlreadyExists):
        registry.create_model(name)
    assert [v.version for v in registry.list_versions(name)] == [1, 2]


def _naive_point_in_time(stats: pd.DataFrame, entity: pd.DataFrame, ttl: timedelta) -> list[float | None]:
    """For each entity row: the newest stats row of that user at or before its time, within the ttl."""
    out: list[float | None] = []
    for _, row in entity.iterrows():
        seen = stats[(stats.user_id == row.user_id) & (stats.ts <= row.event_timestamp)
                     & (stats.ts > row.event_timestamp - ttl)]
        out.append(float(seen.sort_values("ts").x.iloc[-1]) if len(seen) else None)
    return out


def test_features(side, served) -> None:
    kind, session = side
    features = session.features
    stats = pd.read_parquet(served.ws.settings.project_dir / "stats.parquet")
    entity = pd.DataFrame({"user_id": [1, 2, 1, 2],
                           "event_timestamp": [T0 + timedelta(hours=1), T0 + timedelta(hours=1),
                                               T0 + timedelta(hours=3), T0 + timedelta(days=3)]})
    frame = features.get_training_set(entity, features=["stats:x", "stats:n"])
    assert isinstance(frame, pd.DataFrame)
    got = [None if pd.isna(v) else float(v) for v in frame["x"]]
    assert got == _naive_point_in_time(stats, entity, timedelta(hours=24)) == [1.5, 2.5, 3.5, None]
    assert pd.api.types.is_datetime64_any_dtype(frame["event_timestamp"])
    end = datetime.now(UTC).replace(microsecond=0)
    results = features.materialize(T0 - timedelta(days=1), end, views=["stats"])
    assert [type(r) for r in results] == [MaterializeResult] and results[0].view == "stats"
    assert results[0].end == end
    user = 30 if kind == "local" else 40
    now = datetime.now(UTC).replace(microsecond=0)
    pushed = features.push("stats", [{"user_id": user, "ts": now, "created": now, "x": 9.25, "n": 7}])
    assert isinstance(pushed, PushResult) and pushed.rows == 1 and pushed.written == 1
    online = features.get_online_features({"user_id": [user, 999]}, features=["stats:x", "stats:n"])
    assert online == {"user_id": [user, 999], "x": [9.25, None], "n": [7, None]}
    with pytest.raises(NotFound):
        features.get_online_features({"user_id": [1]}, features=["ghost:x"])
    with pytest.raises(InvalidInput):
        features.get_training_set(entity, features=["stats:nope"])
