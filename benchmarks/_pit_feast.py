"""Feast's side of bench_pit.py; runs inside Feast's own virtualenv as a subprocess.

usage: python _pit_feast.py DATA_DIR OUT_PARQUET duckdb|file
Prints one JSON line: {"seconds": ..., "rows": ..., "peak_mb": ...}. Its temporary folder is removed at the end.
"""

import json
import resource
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.repo_config import RepoConfig
from feast.types import Float64, Int64

data, out, kind = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
work = Path(tempfile.mkdtemp(prefix="feast-bench-"))
try:
    config = RepoConfig(project="bench", registry=str(work / "registry.db"), provider="local",
                        offline_store={"type": kind}, online_store={"type": "sqlite", "path": str(work / "online.db")},
                        entity_key_serialization_version=3, repo_path=str(work))
    store = FeatureStore(config=config)
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    view_a = FeatureView(name="view_a", entities=[user], ttl=timedelta(days=2),
                         schema=[Field(name=f"a{i}", dtype=Float64) for i in range(5)],
                         source=FileSource(path=str(data / "view_a.parquet"), timestamp_field="ts"))
    view_b = FeatureView(name="view_b", entities=[user], ttl=timedelta(days=30),
                         schema=[Field(name=f"b{i}", dtype=Int64) for i in range(5)],
                         source=FileSource(path=str(data / "view_b.parquet"), timestamp_field="ts"))
    store.apply([user, view_a, view_b])
    entity = pd.read_parquet(data / "entity.parquet")
    features = [f"view_a:a{i}" for i in range(5)] + [f"view_b:b{i}" for i in range(5)]
    start = time.perf_counter()
    result = store.get_historical_features(entity_df=entity, features=features).to_df()
    seconds = time.perf_counter() - start
    result[["row_id", *[f"a{i}" for i in range(5)], *[f"b{i}" for i in range(5)]]].to_parquet(out)
    print(json.dumps({"seconds": seconds, "rows": len(result),
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
finally:
    shutil.rmtree(work, ignore_errors=True)
