"""The feature store's serving-side Python API as one typed interface, implemented in-process
(``ws.features``) and over HTTP (``sy.Client(url).features``); checked by a type checker in
tests/core/test_protocols.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pandas as pd

    from shipyard.features.materialize import MaterializeResult
    from shipyard.features.push import PushResult


@runtime_checkable
class FeaturesAPI(Protocol):
    def get_online_features(self, entity_rows: Any, features: Sequence[str] | None = None,
                            service: str | None = None, *,
                            full_feature_names: bool = False) -> dict[str, list[Any]]: ...

    def get_training_set(self, entity_df: pd.DataFrame, features: Sequence[str] | None = None,
                         service: str | None = None, *, timestamp_column: str | None = None,
                         full_feature_names: bool = False) -> pd.DataFrame: ...

    def push(self, view: str, rows: Any, *, to_offline: bool = True) -> PushResult: ...

    def materialize(self, start: Any, end: Any, views: Sequence[str] | None = None) -> list[MaterializeResult]: ...

    def materialize_incremental(self, end: Any = None,
                                views: Sequence[str] | None = None) -> list[MaterializeResult]: ...
