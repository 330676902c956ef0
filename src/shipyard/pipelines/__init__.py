"""Pipelines: typed components in a DAG, cached runs with breakpoints, code generation, a scheduler.

    import shipyard as sy
    from shipyard.pipelines import Pipeline, component

    p = sy.pipelines.load("pipelines/credit_scorecard.yaml")
    result = sy.pipelines.run(p, params={"seed": 7})          # in the current workspace
    sy.pipelines.run(p, start="evaluate")                     # re-run evaluate and what follows

See docs/pipelines.md for the document format and the built-in components. Names are imported on
first use, so worker and job processes start light.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipyard.pipelines.dag import Pipeline
    from shipyard.pipelines.runs import PipelineRunRecord

_LAZY = {
    "Component": "shipyard.pipelines.components",
    "Param": "shipyard.pipelines.components",
    "Port": "shipyard.pipelines.components",
    "builtins": "shipyard.pipelines.components",
    "component": "shipyard.pipelines.components",
    "Edge": "shipyard.pipelines.dag",
    "PipelineNode": "shipyard.pipelines.dag",
    "Pipeline": "shipyard.pipelines.dag",
    "load_pipeline": "shipyard.pipelines.dag",
    "NodeRecord": "shipyard.pipelines.runs",
    "PipelineRunRecord": "shipyard.pipelines.runs",
    "Scheduler": "shipyard.pipelines.scheduler",
    "register_job_kind": "shipyard.pipelines.jobs",
}


def load(source: str | Path | Mapping[str, Any], base_dir: str | Path | None = None) -> Pipeline:
    """A pipeline from a YAML/JSON/Python file or a document."""
    from shipyard.pipelines.dag import load_pipeline

    return load_pipeline(source, base_dir)


def run(source: str | Path | Mapping[str, Any] | Pipeline, **options: Any) -> PipelineRunRecord:
    """Run a pipeline in the current workspace (see ``Pipelines.run`` for the options)."""
    # ``sy.pipelines`` is this package, so ``sy.pipelines.run`` cannot live above the workspace: the
    # one loop back into it that the layering test allows
    from shipyard.workspace import current

    return current().pipelines.run(source, **options)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'shipyard.pipelines' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = sorted([*_LAZY, "load", "run"])
