"""The feature store's serving-side Python API as one typed interface, implemented in-process
(``ws.features``) and over HTTP (``sy.Client(url).features``); checked by a type checker in
tests/core/test_protocols.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

if TYPE_CHECKING:
    import datetime as dt

    import pandas as pd
    import pyarrow as pa

    from shipyard.features.materialize import MaterializeResult
    from shipyard.features.push import PushResult

EntityRows: TypeAlias = "Mapping[str, Any] | Sequence[Mapping[str, Any]] | pd.DataFrame"
"""Entity rows: a dict of key columns (a single value is one row), a list of row dicts, or a DataFrame."""
FeatureRows: TypeAlias = "Mapping[str, Any] | Sequence[Mapping[str, Any]] | pd.DataFrame | pa.Table | pa.RecordBatch"
"""Rows of feature values: as ``EntityRows``, or an Arrow table or record batch."""
TimePoint: TypeAlias = "dt.datetime | dt.date | pd.Timestamp | str | float"
"""A point in time: a datetime (naive ones are UTC), a date, ISO 8601 text or epoch seconds."""


@runtime_checkable
class FeaturesAPI(Protocol):
    def get_online_features(self, entity_rows: EntityRows, features: Sequence[str] | None = None,
                            service: str | None = None, *,
                            full_feature_names: bool = False) -> dict[str, list[Any]]: ...

    def get_training_set(self, entity_df: pd.DataFrame, features: Sequence[str] | None = None,
                         service: str | None = None, *, timestamp_column: str | None = None,
                         full_feature_names: bool = False) -> pd.DataFrame: ...

    def push(self, view: str, rows: FeatureRows, *, to_offline: bool = True) -> PushResult: ...

    def materialize(self, start: TimePoint, end: TimePoint,
                    views: Sequence[str] | None = None) -> list[MaterializeResult]: ...

    def materialize_incremental(self, end: TimePoint | None = None,
                                views: Sequence[str] | None = None) -> list[MaterializeResult]: ...
