"""Run artifacts on local storage (every metadata backend) and on S3."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from shipyard.config import load_settings
from shipyard.errors import IntegrityError, InvalidInput, NotFound
from shipyard.workspace import Workspace


def _exercise(ws: Workspace, tmp_path: Path) -> None:
    tracking = ws.tracking
    src = tmp_path / "src"
    (src / "plots").mkdir(parents=True)
    (src / "report.html").write_text("<h1>KS 0.41</h1>")
    (src / "plots" / "roc.csv").write_text("fpr,tpr\n0,0\n1,1\n")
    with tracking.start_run(experiment="credit") as run:
        one = run.log_artifact(src / "report.html")
        run.log_artifact(src / "report.html", artifact_path="reports/v1")
        many = run.log_artifacts(src, artifact_path="bundle")
        run.log_dict({"auc": 0.78}, "metrics/summary.json")
        run.log_dict({"depth": 6}, "config.yaml")
        run.log_text("notes", "notes.txt")
    assert one.path == "report.html"
    assert one.sha256 == hashlib.sha256(b"<h1>KS 0.41</h1>").hexdigest() and one.size == 16
    assert [a.path for a in many] == ["bundle/plots/roc.csv", "bundle/report.html"]
    listed = tracking.list_artifacts(run.id)
    assert [a.path for a in listed] == [
        "bundle/plots/roc.csv", "bundle/report.html", "config.yaml", "metrics/summary.json", "notes.txt",
        "report.html", "reports/v1/report.html",
    ]
    assert [a.path for a in tracking.list_artifacts(run.id, "bundle")] == ["bundle/plots/roc.csv", "bundle/report.html"]
    assert all(f"runs/{run.id}/artifacts/" in a.uri for a in listed)
    assert json.loads(tracking.read_artifact(run.id, "metrics/summary.json")) == {"auc": 0.78}
    assert tracking.read_artifact(run.id, "config.yaml") == b"depth: 6\n"

    out = tracking.download_artifacts(run.id, "report.html", tmp_path / "dl1")
    assert out == tmp_path / "dl1" / "report.html" and out.read_text() == "<h1>KS 0.41</h1>"
    folder = tracking.download_artifacts(run.id, "bundle", tmp_path / "dl2")
    assert (folder / "plots" / "roc.csv").read_text() == "fpr,tpr\n0,0\n1,1\n"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "plots/roc.csv", "report.html"
    ]
    with pytest.raises(NotFound, match="no artifact 'missing.txt'"):
        tracking.download_artifacts(run.id, "missing.txt", tmp_path / "dl3")
    with pytest.raises(InvalidInput, match=r"'\.\.'"):
        run.log_text("x", "../escape.txt")
    with pytest.raises(NotFound, match="local file"):
        run.log_artifact(tmp_path / "nope.bin")

    # bytes changed behind the store's back are caught on download
    ws.artifacts.put_bytes(f"runs/{run.id}/artifacts/notes.txt", b"tampered")
    with pytest.raises(IntegrityError, match="sha256"):
        tracking.read_artifact(run.id, "notes.txt")


def test_artifacts_local(workspace, tmp_path: Path) -> None:
    _exercise(workspace, tmp_path)


@pytest.mark.s3
def test_artifacts_on_s3(s3_bucket, tmp_path: Path) -> None:
    root, options = s3_bucket
    settings = load_settings(tmp_path / "project", artifact_root=root, artifact_options=options, user="alice")
    ws = Workspace(settings)
    try:
        _exercise(ws, tmp_path)
        assert ws.tracking.list_artifacts(ws.tracking.search_runs()[0].id)[0].uri.startswith("s3://")
    finally:
        ws.close()
