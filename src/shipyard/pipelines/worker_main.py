"""A worker process: ``python -m shipyard.pipelines.worker_main`` (``pool.py`` starts them).

It reads one JSON request per line on stdin, runs the node (``worker.execute_node``) and answers one
JSON line on the stdout it had at start. Workers are started without the secret key in their
environment, and exit when their stdin closes (the process that started them went away). A
component asking for ``ctx.workspace`` gets one opened here, acting as the run's actor; this entry
point sits above the workspace, which the node-running code below it never imports.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shipyard.pipelines.worker import execute_node

if TYPE_CHECKING:
    from shipyard.workspace import Workspace

_workspaces: dict[str, Workspace] = {}


def workspace_factory(settings: dict[str, Any], actor: str) -> Callable[[], Workspace]:
    def open_workspace() -> Workspace:
        from shipyard.auth.principal import Principal
        from shipyard.config import load_settings
        from shipyard.workspace import Workspace

        key = json.dumps([settings, actor], sort_keys=True, default=str)
        if key not in _workspaces:
            values = {k: v for k, v in settings.items() if k != "project_dir"}
            values["user"] = actor
            # the run's actor acts here; no token is looked up (none is in reach of user code)
            _workspaces[key] = Workspace(load_settings(settings["project_dir"], **values),
                                         principal=Principal(name=actor, kind="local"))
        return _workspaces[key]

    return open_workspace


def main() -> None:
    channel = io.TextIOWrapper(os.fdopen(os.dup(1), "wb", buffering=0), encoding="utf-8", write_through=True)
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)  # nothing but replies goes to the channel
    os.close(quiet)
    import numpy  # noqa: F401 - warm up the imports every node needs before the first request
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    channel.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        reply = execute_node(request, workspace=workspace_factory(request["settings"], request["actor"]))
        channel.write(json.dumps(reply, default=str) + "\n")


if __name__ == "__main__":
    main()
