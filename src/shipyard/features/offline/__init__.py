"""Offline engines: point-in-time joins over a view's source data and offline log."""

from shipyard.features.offline.engine import ROW, TS, OfflineEngine, ViewRequest, get_engine

__all__ = ["ROW", "TS", "OfflineEngine", "ViewRequest", "get_engine"]
