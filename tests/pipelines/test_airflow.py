"""The Airflow export runs under real Apache Airflow (its own virtualenv, ``airflow dags test``).

Enabled by SHIPYARD_TEST_AIRFLOW_PYTHON, the python of a virtualenv with apache-airflow installed.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from shipyard.config import init_project, load_settings
from shipyard.workspace import Workspace

AIRFLOW_PYTHON = os.environ.get("SHIPYARD_TEST_AIRFLOW_PYTHON", "")
SRC = Path(__file__).resolve().parents[2] / "src"

pytestmark = [
    pytest.mark.airflow,
    pytest.mark.skipif(not AIRFLOW_PYTHON, reason="set SHIPYARD_TEST_AIRFLOW_PYTHON to an Airflow virtualenv's python"),
]

COMPONENTS = '''
import pandas as pd

from shipyard.pipelines import component


def numbers(n: int = 10) -> pd.DataFrame:
    return pd.DataFrame({"x": range(n)})


@component(inputs={"data": "table"}, outputs={"total": "json"})
def total(data, fail: bool = False):
    if fail:
        raise RuntimeError("failing on purpose")
    return {"sum": int(data["x"].sum())}
'''

DOCUMENT = '''
name: airflow_demo
params: {n: 10, fail: false}
nodes:
  - {id: numbers, component: "comps.py:numbers", params: {n: "${n}"}}
  - {id: split, component: split, inputs: {data: numbers}, params: {target: x, method: random, seed: 1}}
  - {id: total, component: "comps.py:total", inputs: {data: split.train}, params: {fail: "${fail}"}}
  - {id: total_all, component: "comps.py:total", inputs: {data: numbers}, timeout_s: 120}
'''


def _airflow(home: Path, dags: Path, *args: str) -> subprocess.CompletedProcess:
    airflow = Path(AIRFLOW_PYTHON).parent / "airflow"
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PYTHONPATH": str(SRC)}
    return subprocess.run([str(airflow), *args], env=env, capture_output=True, text=True, timeout=900)


def test_exported_dag_runs_every_node_under_airflow(tmp_path: Path) -> None:
    project = init_project(tmp_path / "project")
    (project / "pipelines" / "comps.py").write_text(textwrap.dedent(COMPONENTS))
    document = project / "pipelines" / "airflow_demo.yaml"
    document.write_text(textwrap.dedent(DOCUMENT))
    ws = Workspace(load_settings(project, user="alice"))
    dags = tmp_path / "dags"
    dags.mkdir()
    text = ws.pipelines.export_airflow(document)
    (dags / "shipyard_airflow_demo.py").write_text(text)
    assert "execution_timeout=timedelta(seconds=120.0)" in text
    home = tmp_path / "airflow"
    migrate = _airflow(home, dags, "db", "migrate")
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    result = _airflow(home, dags, "dags", "test", "shipyard_airflow_demo")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    runs = ws.pipelines.runs("airflow_demo")
    assert len(runs) == 1
    run = runs[0]
    assert run.status == "succeeded" and run.external_id and run.external_id.startswith("manual__")
    assert {n.node_id: n.status for n in run.nodes} == {"numbers": "succeeded", "split": "succeeded",
                                                        "total": "succeeded", "total_all": "succeeded"}
    # each task ran in its own process, and the results flowed along the pipeline's edges
    from shipyard.pipelines.types import decode

    ref = run.node("total_all").outputs["total"]
    assert decode("json", ws.artifacts.get_bytes(ref["path"], expected_sha256=ref["sha256"])) == {"sum": 45}
    assert ws.tracking.get_run(run.tracking_run_id).info.status == "FINISHED"
    ws.close()
