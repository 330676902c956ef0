"""The public surface is curated: this list changes only on purpose."""

from __future__ import annotations

import subprocess
import sys

import shipyard

EXPECTED = {
    "Client", "FeatureStore", "PythonModel", "Settings", "ShipyardError", "Workspace", "__version__",
    "active_run", "connect", "current", "errors", "init_project", "load_model", "load_settings",
    "log_model", "monitoring", "pipelines", "risk", "run_pipeline", "save_model", "start_run",
}


def test_all_is_the_curated_list() -> None:
    assert set(shipyard.__all__) == EXPECTED


def test_every_public_name_resolves() -> None:
    for name in shipyard.__all__:
        assert getattr(shipyard, name) is not None, name


def test_import_is_light() -> None:
    code = "import sys, shipyard; print(sorted(m for m in ('pandas','sklearn','sqlalchemy','fastapi') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
