"""Pipelines: typed components in a DAG, cached runs with breakpoints, code generation, a scheduler.

    import shipyard as sy
    from shipyard.pipelines import Pipeline, component

    p = sy.pipelines.load("pipelines/credit_scorecard.yaml")
    result = sy.pipelines.run(p, params={"seed": 7})          # in the current workspace
    sy.pipelines.run(p, start="evaluate")                     # re-run evaluate and what follows

See docs/pipelines.md for the document format and the built-in components.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shipyard.pipelines.component import Component, Param, Port, builtins, component
from shipyard.pipelines.dag import Edge, Node, Pipeline, load_pipeline
from shipyard.pipelines.runs import NodeRecord, PipelineRunRecord


def load(source: str | Path | Mapping[str, Any], base_dir: str | Path | None = None) -> Pipeline:
    """A pipeline from a YAML/JSON/Python file or a document."""
    return load_pipeline(source, base_dir)


def run(source: str | Path | Mapping[str, Any] | Pipeline, **options: Any) -> PipelineRunRecord:
    """Run a pipeline in the current workspace (see ``Pipelines.run`` for the options)."""
    from shipyard.workspace import current

    return current().pipelines.run(source, **options)


__all__ = ["Component", "Edge", "Node", "NodeRecord", "Param", "Pipeline", "PipelineRunRecord", "Port", "builtins",
           "component", "load", "load_pipeline", "run"]
