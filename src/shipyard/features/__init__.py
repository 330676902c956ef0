"""The feature store: definitions as code, plan/apply, point-in-time training sets, online serving.

    import shipyard as sy
    from shipyard.features import Entity, FeatureView, Field, FileSource, Float64

    store = sy.connect().features
    store.apply("features/")
    training = store.get_training_set(entity_df, service="credit_scoring")
"""

from shipyard.features.definitions import (
    Entity,
    FeatureSelection,
    FeatureService,
    FeatureView,
    OnDemandFeatureView,
    on_demand_feature_view,
)
from shipyard.features.plan import ApplyPlan, Change
from shipyard.features.sources import (
    DatasetSource,
    DuckDBSource,
    FileSource,
    PushSource,
    RequestSource,
    Source,
    SqlSource,
)
from shipyard.features.store import FeatureStore
from shipyard.features.types import Bool, Field, Float64, Int64, String, Timestamp

__all__ = [
    "ApplyPlan",
    "Bool",
    "Change",
    "DatasetSource",
    "DuckDBSource",
    "Entity",
    "FeatureSelection",
    "FeatureService",
    "FeatureStore",
    "FeatureView",
    "Field",
    "FileSource",
    "Float64",
    "Int64",
    "OnDemandFeatureView",
    "PushSource",
    "RequestSource",
    "Source",
    "SqlSource",
    "String",
    "Timestamp",
    "on_demand_feature_view",
]
