"""Export a pipeline as an Apache Airflow DAG file: one ``BashOperator`` task per node, wired like the
pipeline, plus a last ``shipyard_finish`` task; every task runs ``python -m shipyard.pipelines.airflow``
(see that module for what a task does)."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime
from pathlib import Path

from shipyard.pipelines.dag import BoundPipeline

TEMPLATE = '''"""Airflow DAG for the Shipyard pipeline {name!r} (exported {when} UTC, document sha256 {sha}).

Each task runs one pipeline node in the Shipyard project {project!r}; set SHIPYARD_PYTHON to the
Python interpreter that has Shipyard installed.
"""

from __future__ import annotations

import os
import shlex
from datetime import datetime, timedelta

from airflow import DAG

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:  # Airflow 2
    from airflow.operators.bash import BashOperator

SHIPYARD_PYTHON = os.environ.get("SHIPYARD_PYTHON", {python!r})
PROJECT = {project!r}
PIPELINE = {document!r}


def shipyard(command: str) -> str:
    return (f"{{shlex.quote(SHIPYARD_PYTHON)}} -m shipyard.pipelines.airflow {{command}} --project {{shlex.quote(PROJECT)}} "
            f"--pipeline {{shlex.quote(PIPELINE)}} --run-id '{{{{{{{{ run_id }}}}}}}}'")


with DAG(
    dag_id={dag_id!r},
    description={description!r},
    start_date=datetime(2024, 1, 1),
    schedule={schedule!r},
    catchup=False,
    tags=["shipyard"],
) as dag:
{tasks}
    shipyard_finish = BashOperator(task_id="shipyard_finish", bash_command=shipyard("finish"),
                                   trigger_rule="all_done")
{edges}
'''


def _task_name(node_id: str) -> str:
    return "t_" + re.sub(r"\W", "_", node_id)


def export_airflow(bound: BoundPipeline, *, document: Path, project: Path, python: str | None = None,
                   dag_id: str | None = None, schedule: str | None = None) -> str:
    """The text of an Airflow DAG file running ``bound``'s nodes as tasks."""
    pipeline = bound.pipeline
    tasks, edges = [], []
    for node_id in bound.order:
        node = bound.nodes[node_id]
        timeout = f", execution_timeout=timedelta(seconds={node.timeout_s!r})" if node.timeout_s else ""
        tasks.append(f"    {_task_name(node_id)} = BashOperator(task_id={node_id!r}, "
                     f"bash_command=shipyard('run-node --node {node_id}'){timeout})")
    for node_id in bound.order:
        sources = sorted({src for src, _ in bound.nodes[node_id].inputs.values()}, key=bound.order.index)
        if sources:
            edges.append(f"    [{', '.join(_task_name(s) for s in sources)}] >> {_task_name(node_id)}")
    edges.append(f"    [{', '.join(_task_name(n) for n in bound.order)}] >> shipyard_finish")
    return TEMPLATE.format(
        name=pipeline.name, when=f"{datetime.now(UTC):%Y-%m-%d %H:%M}", sha=pipeline.sha256()[:12],
        project=str(project.resolve()), python=python or sys.executable, document=str(document.resolve()),
        dag_id=dag_id or f"shipyard_{re.sub(r'[^A-Za-z0-9_]', '_', pipeline.name)}",
        description=pipeline.description or f"Shipyard pipeline {pipeline.name}", schedule=schedule,
        tasks="\n".join(tasks), edges="\n".join(edges))
