"""Offline engines: point-in-time joins over a view's source data and offline log.

``get_engine`` lives here, above the engines, so that the interface (``engine.py``) and the engines
that implement it never import each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shipyard.errors import ConfigError
from shipyard.features.offline.engine import ROW, TS, OfflineEngine, ViewRequest

if TYPE_CHECKING:
    from shipyard.artifacts import ArtifactStore


def get_engine(name: str, artifacts: ArtifactStore, log_prefix: str) -> OfflineEngine:
    """The offline engine called ``name`` (``duckdb`` or ``spark``; Spark is imported only when chosen)."""
    if name == "duckdb":
        from shipyard.features.offline.duckdb_engine import DuckDBEngine

        return DuckDBEngine(artifacts, log_prefix)
    if name == "spark":
        from shipyard.features.offline.spark_engine import SparkEngine

        return SparkEngine(artifacts, log_prefix)
    raise ConfigError(f"offline engine {name!r} is not known; use 'duckdb' or 'spark'", {"field": "offline_engine"})


__all__ = ["ROW", "TS", "OfflineEngine", "ViewRequest", "get_engine"]
