"""The demo's pipeline step: German credit as a versioned dataset, then the credit-scorecard pipeline.

``run_credit_pipeline(ws, project)`` copies the pipeline document into ``<project>/pipelines/``, adds a
file source and the ``german_credit`` dataset (refreshed into a version with its profile), runs the
pipeline (dataset → split → profile → binning/WOE → selection → scorecard and XGBoost → evaluation →
registration) and returns what it did.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, cast

from shipyard.workspace import Workspace

PIPELINE_FILE = "credit_scorecard.yaml"
SOURCE, DATASET = "german_credit_files", "german_credit"


def _copy(package_file: str, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    with resources.as_file(resources.files("shipyard.demo").joinpath(package_file)) as src:
        shutil.copyfile(src, target)
    return target


def run_credit_pipeline(ws: Workspace, project: str | Path, say: Callable[[str], None] = print,
                        workers: int = 2) -> dict[str, Any]:
    """Set up the dataset and run the credit-scorecard pipeline; returns the run and the registered model."""
    project = Path(project)
    document = _copy(f"pipelines/{PIPELINE_FILE}", project / "pipelines" / PIPELINE_FILE)
    _copy("germancredit.csv", project / "data" / "raw" / "germancredit.csv")
    ws.data.add_source(SOURCE, "file", {"root": str(project / "data" / "raw")}, actor=ws.user, replace=True,
                       description="German credit files")
    ws.data.create_dataset(DATASET, SOURCE, {"path": "germancredit.csv",
                                             "profile": {"target": "creditability", "bad_value": "bad"}},
                           actor=ws.user, replace=True, description="Statlog German credit, 1,000 applicants")
    refreshed = ws.data.refresh(DATASET, actor=ws.user)
    version = refreshed.version
    say(f"      dataset {DATASET} v{version.version}: {version.rows} rows, {len(version.schema)} columns, "
        f"{len(version.profile.get('flags', {}))} flagged by the profile")
    record = ws.pipelines.run(document, workers=workers)
    counts = ", ".join(f"{n} {s}" for s, n in record.counts().items())
    say(f"      pipeline {record.pipeline} run {record.id[:8]}: {record.status} ({counts})")
    if record.status != "succeeded":
        raise RuntimeError(f"the credit pipeline failed: {record.error}")
    registered = record.node("register")
    metrics = record.node("evaluate").metrics
    challenger = record.node("evaluate_xgboost").metrics
    out = {"pipeline_run": record.id, "status": record.status, "dataset_version": version.version,
           "test_auc": metrics["test_auc"], "test_ks": metrics["test_ks"], "xgb_test_auc": challenger["test_auc"],
           "document": str(document)}
    from shipyard.pipelines.types import decode

    ref = registered.outputs["version"]
    # the register node's "version" output is JSON: the version's name, number and status
    data = ws.artifacts.get_bytes(ref["path"], expected_sha256=ref["sha256"])
    info = cast(dict[str, Any], decode(ref["type"], data))
    out["model"] = {"name": info["name"], "version": info["version"], "status": info["status"]}
    say(f"      scorecard test AUC {metrics['test_auc']:.3f} (XGBoost {challenger['test_auc']:.3f}); "
        f"registered {info['name']} v{info['version']} ({info['status']})")
    return out
