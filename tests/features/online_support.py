"""Shared fixtures for the online-feature tests: every online backend, and a small in-memory
feature store exposing the FeatureStore surface the online code uses (views, services, offline
read/append and a naive point-in-time join used as an independent reference)."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from shipyard.arrow_util import table_from_pandas
from shipyard.errors import NotFound
from shipyard.features.materialize import MaterializeDeps
from shipyard.features.online import OnlineStore, online_store_of
from shipyard.features.online.lmdb_store import LMDBOnlineStore
from shipyard.features.online.sqlite_store import SQLiteOnlineStore

REDIS_URL = os.environ.get("SHIPYARD_TEST_REDIS_URL", "")
NATS_URL = os.environ.get("SHIPYARD_TEST_NATS_URL", "")
ONLINE_BACKENDS = ["sqlite", "lmdb"] + (["redis"] if REDIS_URL else [])
# the contract suite also runs on servers the tests start: TLS, an ACL user, Sentinel, Cluster
REDIS_VARIANTS = ["redis-tls", "redis-acl", "redis-sentinel", "redis-cluster"] if REDIS_URL else []
UTC = dt.UTC
T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)


def make_online(kind: str, tmp_path: Path, url: str = "") -> Iterator[OnlineStore]:
    """A fresh store of ``kind``; Redis kinds under a key prefix of their own, removed afterwards
    (``url``: the server of a Redis variant, default SHIPYARD_TEST_REDIS_URL)."""
    if kind == "sqlite":
        store: OnlineStore = SQLiteOnlineStore(tmp_path / f"online-{uuid.uuid4().hex[:6]}.sqlite")
        yield store
        store.close()
    elif kind == "lmdb":
        yield LMDBOnlineStore(tmp_path / f"online-{uuid.uuid4().hex[:6]}.lmdb")
    else:
        from shipyard.features.online.redis_store import RedisOnlineStore

        store = RedisOnlineStore(url or REDIS_URL, prefix=f"sytest:{uuid.uuid4().hex[:10]}:")
        try:
            yield store
        finally:
            store.delete_prefix()
            store.close()


@pytest.fixture(params=[pytest.param(k, marks=[pytest.mark.redis] if k == "redis" else []) for k in ONLINE_BACKENDS])
def online(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    yield from make_online(request.param, tmp_path)


@pytest.fixture(params=[pytest.param(k, marks=[pytest.mark.redis] if k.startswith("redis") else [])
                        for k in ONLINE_BACKENDS + REDIS_VARIANTS])
def online_all(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    """Every backend of the contract suite, Redis over TLS, ACL, Sentinel and Cluster included."""
    url = request.getfixturevalue("redis_servers").url(request.param) if request.param in REDIS_VARIANTS else ""
    yield from make_online(request.param, tmp_path, url)


# -- an in-memory feature store --------------------------------------------------------------
@dataclass
class Field:
    name: str
    dtype: str


@dataclass
class Entity:
    name: str
    join_keys: list[str]


@dataclass
class View:
    name: str
    entities: list[Entity]
    fields: list[Field]
    ttl: dt.timedelta | None = None
    timestamp_field: str = "event_timestamp"
    created_timestamp_field: str | None = None
    version: int = 1
    online: bool = True

    @property
    def join_keys(self) -> list[str]:
        return [k for e in self.entities for k in e.join_keys]

    @property
    def key_types(self) -> dict[str, str]:
        return {}


@dataclass
class Service:
    name: str
    features: list[str]


@dataclass
class MemoryFeatureStore:
    ws: Any
    online_store: OnlineStore | None = None
    views: dict[str, Any] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    offline: dict[str, pa.Table] = field(default_factory=dict)

    def __hash__(self) -> int:
        return id(self)

    def add(self, view: Any, data: pd.DataFrame | None = None) -> None:
        self.views[view.name] = view
        if data is not None:
            self.offline[view.name] = table_from_pandas(data)

    def get_view(self, name: str, version: int | None = None) -> Any:
        if name not in self.views:
            raise NotFound(f"feature view {name!r} is not registered")
        return self.views[name]

    def list_views(self) -> list[Any]:
        return list(self.views.values())

    def get_service(self, name: str) -> Service:
        if name not in self.services:
            raise NotFound(f"feature service {name!r} is not registered")
        return self.services[name]

    def materialize_deps(self) -> MaterializeDeps:
        """What ``FeatureStore`` hands materialization, over these views and rows."""
        return MaterializeDeps(views=self, online=online_store_of(self), metadata=self.ws.store,
                               artifacts=self.ws.artifacts, user=self.ws.user)

    def read_offline(self, view_name: str, start: Any = None, end: Any = None) -> pa.Table:
        view = self.views[view_name]
        table = self.offline.get(view_name)
        if table is None:
            return pa.table({})
        frame = table.to_pandas()
        ts = pd.to_datetime(frame[view.timestamp_field], utc=True)
        mask = pd.Series(True, index=frame.index)
        if start is not None:
            mask &= ts >= pd.Timestamp(start)
        if end is not None:
            mask &= ts < pd.Timestamp(end)
        return table_from_pandas(frame[mask])

    def offline_append(self, view_name: str, table: pa.Table) -> None:
        current = self.offline.get(view_name)
        if current is None:
            self.offline[view_name] = table
        else:
            self.offline[view_name] = pa.concat_tables([current, table.cast(current.schema)])

    def get_training_set(self, entity_df: pd.DataFrame, features: list[str] | None = None,
                         service: str | None = None, timestamp_column: str = "event_timestamp") -> pd.DataFrame:
        """Naive point-in-time join: latest value at or before each row's time, within TTL."""
        refs = features if features is not None else self.get_service(service).features  # type: ignore[arg-type]
        out = entity_df.copy()
        for ref in refs:
            view_name, feat = ref.split(":", 1)
            view = self.views[view_name]
            data = self.offline[view_name].to_pandas()
            data[view.timestamp_field] = pd.to_datetime(data[view.timestamp_field], utc=True)
            values = []
            for _, row in entity_df.iterrows():
                at = pd.Timestamp(row[timestamp_column])
                sel = data
                for k in view.join_keys:
                    sel = sel[sel[k] == row[k]]
                sel = sel[sel[view.timestamp_field] <= at]
                if view.ttl is not None:
                    sel = sel[sel[view.timestamp_field] > at - view.ttl]
                values.append(sel.sort_values(view.timestamp_field)[feat].iloc[-1] if len(sel) else None)
            out[feat] = values
        return out


# -- the real feature store with a small repository ------------------------------------------
DEFINITIONS = '''
from datetime import timedelta

import pandas as pd

from shipyard.features import (Bool, Entity, FeatureService, FeatureView, Field, Float64, Int64, PushSource,
                               RequestSource, String, Timestamp, on_demand_feature_view)

customer = Entity("customer", ["customer_id"], value_types="int64")
merchant = Entity("merchant", ["merchant"], value_types="string")

cust_stats = FeatureView(
    "cust_stats", [customer],
    [Field("amount", Float64), Field("n", Int64), Field("city", String), Field("vip", Bool), Field("seen", Timestamp)],
    source=PushSource("cust_push"), ttl=timedelta(days=2),
)
pair_stats = FeatureView(
    "pair_stats", [customer, merchant], [Field("amount", Float64), Field("visits", Int64)],
    source=PushSource("pair_push"),
)
request = RequestSource("request", [Field("mult", Float64)])


@on_demand_feature_view(sources=[cust_stats[["amount"]], request], fields=[Field("scaled", Float64)])
def scaled_amount(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"scaled": df["amount"] * df["mult"] + 1.0})


risk = FeatureService("risk", [cust_stats[["amount", "n"]], scaled_amount])
'''


def make_feature_store(ws: Any, online_store: OnlineStore | None = None) -> Any:
    """The workspace's FeatureStore with DEFINITIONS applied (and an explicit online store if given)."""
    folder = Path(ws.settings.project_dir) / "features"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "definitions.py").write_text(DEFINITIONS)
    store = ws.features
    store.apply(folder)
    if online_store is not None:
        store.online_store = online_store
    return store


@pytest.fixture
def feature_store(sqlite_workspace: Any, online: OnlineStore) -> Any:
    return make_feature_store(sqlite_workspace, online)


@pytest.fixture
def embedded_feature_store(sqlite_workspace: Any) -> Any:
    """The FeatureStore on its configured (embedded) online store."""
    return make_feature_store(sqlite_workspace)
