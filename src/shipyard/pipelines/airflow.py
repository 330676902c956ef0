"""The command each task of an exported Apache Airflow DAG runs (``airflow_export.py`` writes the DAG).

The DAG has one ``BashOperator`` task per node, wired like the pipeline, plus a last ``shipyard_finish``
task (trigger rule ``all_done``). Every task runs::

    <shipyard python> -m shipyard.pipelines.airflow run-node --project P --pipeline FILE --run-id RUN --node N

which executes that one node inside the Shipyard run belonging to Airflow's ``run_id`` (created by the
first task to arrive), taking its inputs from the nodes of the same run; the node's timeout becomes
the task's ``execution_timeout``. Airflow needs no Shipyard install: the DAG calls the Python named by
``SHIPYARD_PYTHON`` (default: the interpreter that exported it). Caching, tracking and lineage work
as in ``shipyard pipelines run``.

This command opens the workspace, so it sits above it: ``ws.pipelines`` imports only the export.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the exported tasks: ``run-node`` (one node) or ``finish`` (close the run)."""
    parser = argparse.ArgumentParser(prog="python -m shipyard.pipelines.airflow")
    parser.add_argument("command", choices=["run-node", "finish"])
    parser.add_argument("--project", required=True)
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--node")
    args = parser.parse_args(argv)
    # the node's code runs in this process: keep the secret key and the token out of its environment
    from shipyard.config import TOKEN_ENV
    from shipyard.secrets.keys import SECRET_ENV_VARS
    from shipyard.workspace import Workspace, connect

    token = os.environ.get(TOKEN_ENV)
    for name in SECRET_ENV_VARS:
        os.environ.pop(name, None)
    ws = connect(args.project, token=token)
    if not isinstance(ws, Workspace):
        parser.error(f"--project must be a project folder, not a server ({args.project})")
    try:
        if args.command == "finish":
            record = ws.pipelines.finish_external(args.pipeline, args.run_id)
            print(f"pipeline run {record.id}: {record.status} {record.error}".rstrip())
            return 0 if record.status == "succeeded" else 1
        if not args.node:
            parser.error("run-node needs --node")
        record = ws.pipelines.run(args.pipeline, only=[args.node], external_id=args.run_id, workers=0)
        node = record.node(args.node)
        print(f"node {args.node}: {node.status}" + (f" — {node.error}" if node.error else ""))
        return 0 if node.status in ("succeeded", "cached") else 1
    finally:
        ws.close()


if __name__ == "__main__":
    sys.exit(main())
