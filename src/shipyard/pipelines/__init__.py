"""Pipelines: typed components in a DAG, cached runs with breakpoints, code generation, a scheduler.

    import shipyard as sy
    from shipyard.pipelines import Pipeline, component

    p = sy.pipelines.load("pipelines/credit_scorecard.yaml")
    result = sy.run_pipeline(p, params={"seed": 7})           # in the current workspace
    sy.run_pipeline(p, start="evaluate")                      # re-run evaluate and what follows

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'shipyard.pipelines' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = sorted([*_LAZY, "load", "run"])
