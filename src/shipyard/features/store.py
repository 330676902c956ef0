"""``FeatureStore``: the one entry point of the feature store (``ws.features``).

Definitions (plan/apply, views, services) and the offline side (read, append, training sets,
backfill) live here as thin calls into the modules that do the work; online serving,
materialization, push, logging, skew and monitoring are delegated at the end of the class.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, overload

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shipyard.arrow_util import table_from_pandas
from shipyard.errors import Conflict, InvalidInput, NotFound, SchemaMismatch
from shipyard.features.definitions import Entity, FeatureService, FeatureView, OnDemandFeatureView
from shipyard.features.offline.scan import CREATED_TS, EVENT_TS, Scanner, connect, quote
from shipyard.features.paths import OFFLINE_LOG_PREFIX
from shipyard.features.plan import ApplyPlan, make_plan
from shipyard.features.registry import FeatureRegistry
from shipyard.features.repo import load_repo
from shipyard.features.sources import DatasetSource, DuckDBSource, PushSource, Source, dataset_sources
from shipyard.features.timeutil import naive_utc, to_utc
from shipyard.features.types import ARROW_TYPES
from shipyard.store import now_ms

if TYPE_CHECKING:
    import numpy as np

    from shipyard.features.materialize import MaterializeDeps, MaterializeResult
    from shipyard.features.protocol import EntityRows, FeatureRows, TimePoint
    from shipyard.features.push import PushResult
    from shipyard.features.skew import SkewReport
    from shipyard.features.training import TrainingSetResult
    from shipyard.workspace import Workspace

log = logging.getLogger(__name__)



class FeatureStore:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.registry = FeatureRegistry(ws.store)
        # online read plans by feature list, kept here by online_features (see its _cached_plan),
        # and the online store once online_store_of has opened it
        self.online_plans: dict[Any, Any] = {}
        self.opened_online_store: Any = None

    # -- definitions ---------------------------------------------------------------------------
    def plan(self, path: str | Path | None = None, check_sources: bool = True) -> ApplyPlan:
        """What ``apply(path)`` would change; validates definitions (and their sources when asked)."""
        repo = load_repo(path or self.ws.settings.project_dir)
        if check_sources:
            scanner = Scanner(connect(), self.ws.artifacts, OFFLINE_LOG_PREFIX)
            for obj in repo.definitions:
                if isinstance(obj, FeatureView):
                    for source in dataset_sources(obj.source):
                        self.ws.data.version(source.dataset, source.version)  # names a missing dataset or version
                    scanner.view_relation(self._with_dataset_versions(obj))  # type: ignore[arg-type]
        return make_plan(repo.definitions, self.registry.current_specs(), str(repo.root))

    def apply(self, path: str | Path | None = None, allow_breaking: bool = False,
              check_sources: bool = True) -> ApplyPlan:
        """Register the definitions under ``path`` as new versions, all in one transaction."""
        plan = self.plan(path, check_sources)
        if plan.breaking and not allow_breaking:
            listed = "; ".join(f"{c.kind.replace('_', ' ')} {c.name!r}: {', '.join(c.breaking)}" for c in plan.breaking)
            raise Conflict(
                f"apply refused, breaking changes: {listed}. Nothing was applied. Give the changed feature a new "
                "name, or apply with allow_breaking=True (--allow-breaking) once consumers are updated",
                {"breaking": plan.summary()["breaking"]},
            )
        if plan.has_changes:
            plan.apply_id = self.registry.apply(plan, self.ws.user, plan.repo_path)
            for change in plan.changes:
                if change.definition is not None and change.new_version:
                    change.definition.version = change.new_version
                    self.registry._cache[(change.kind, change.name, change.new_version)] = change.definition
        plan.applied = True
        return plan

    def list_entities(self) -> list[Entity]:
        return self.registry.list("entity")  # type: ignore[return-value]

    def list_views(self) -> list[FeatureView | OnDemandFeatureView]:
        views = self.registry.list("feature_view") + self.registry.list("on_demand_feature_view")
        return sorted(views, key=lambda v: v.name)  # type: ignore[return-value]

    def list_services(self) -> list[FeatureService]:
        return self.registry.list("feature_service")  # type: ignore[return-value]

    def get_entity(self, name: str, version: int | None = None) -> Entity:
        return self.registry.get("entity", name, version)  # type: ignore[return-value]

    def get_view(self, name: str, version: int | None = None) -> FeatureView | OnDemandFeatureView:
        """The applied view ``name`` (current version unless ``version`` is given)."""
        for kind in ("feature_view", "on_demand_feature_view"):
            if version is None and self.registry.current_version(kind, name) is None:
                continue
            try:
                view = self.registry.get(kind, name, version)
            except NotFound:
                continue
            return self._with_dataset_versions(view)  # type: ignore[arg-type]
        known = ", ".join(self.registry.names("feature_view") + self.registry.names("on_demand_feature_view"))
        raise NotFound(
            f"feature view {name!r} is not registered (known: {known or 'none applied yet'}); define it under "
            "features/ and run 'shipyard features apply'",
            {"view": name, "version": version},
        )

    def _with_dataset_versions(self, view: FeatureView | OnDemandFeatureView) -> FeatureView | OnDemandFeatureView:
        """A view reading versioned datasets, as a copy whose dataset sources name the version read now
        (the pinned one, else the latest) and its Parquet file; other views as they are."""
        if not isinstance(view, FeatureView):
            return view
        source = self._resolve_source(view.source)
        if source is view.source:
            return view
        resolved = copy.copy(view)  # the registry's object stays as applied
        resolved.source = source
        return resolved

    def _resolve_source(self, source: Source) -> Source:
        if isinstance(source, DatasetSource):
            try:
                found = self.ws.data.version(source.dataset, source.version)
            except (NotFound, InvalidInput) as exc:
                # left unresolved: reading it fails naming the dataset; describing the view still works
                log.warning("dataset source %s: %s", source.ref, exc)
                return source
            artifacts = self.ws.artifacts
            path = str(artifacts.local_path(found.path)) if artifacts.is_local else artifacts.uri(found.path)
            return dataclasses.replace(source, path=path, read_version=found.version)
        if isinstance(source, PushSource) and source.batch_source is not None:
            batch = self._resolve_source(source.batch_source)
            return source if batch is source.batch_source else PushSource(source.name, batch)
        if isinstance(source, DuckDBSource):
            inner = {alias: self._resolve_source(src) for alias, src in source.sources.items()}
            if all(inner[alias] is src for alias, src in source.sources.items()):
                return source
            return DuckDBSource(source.sql, inner, source.name)
        return source

    def record_dataset_reads(self, views: Sequence[FeatureView | OnDemandFeatureView]) -> list[str]:
        """Lineage: each versioned dataset the views read (as resolved by ``get_view``) records the
        view as a reader of that version; returns the ``dataset@version`` refs."""
        refs: list[str] = []
        for view in views:
            if not isinstance(view, FeatureView):
                continue
            for source in dataset_sources(view.source):
                if source.read_version is None:
                    continue
                self.ws.data.record_read(source.dataset, source.read_version, "feature_view", view.name,
                                         actor=self.ws.user)
                refs.append(source.ref)
        return list(dict.fromkeys(refs))

    def get_feature_view(self, name: str, version: int | None = None) -> FeatureView:
        view = self.get_view(name, version)
        if not isinstance(view, FeatureView):
            raise InvalidInput(f"{name!r} is an on-demand feature view; it has no offline data of its own",
                               {"view": name})
        return view

    def get_service(self, name: str, version: int | None = None) -> FeatureService:
        return self.registry.get("feature_service", name, version)  # type: ignore[return-value]

    # -- offline data --------------------------------------------------------------------------
    def read_offline(self, view_name: str, start: TimePoint | None = None, end: TimePoint | None = None) -> pa.Table:
        """The view's rows (source data plus its offline log) with start <= event time < end.

        Columns: the join keys, the timestamp field (UTC), the created timestamp field if the view
        has one, and the features, typed as declared.
        """
        view = self.get_feature_view(view_name)
        con = connect()
        try:
            rel = Scanner(con, self.ws.artifacts, OFFLINE_LOG_PREFIX).view_relation(view)
            cols = [quote(k) for k in view.join_keys]
            cols.append(f"{EVENT_TS} AS {quote(view.timestamp_field)}")
            if view.created_timestamp_field:
                cols.append(f"{CREATED_TS} AS {quote(view.created_timestamp_field)}")
            cols.extend(quote(f.name) for f in view.fields)
            sql = f"SELECT {', '.join(cols)} FROM {rel.sql}{_window(start, end)}"
            result = con.sql(sql).to_arrow_table()
        finally:
            con.close()
        return utc_schema(result, (view.timestamp_field, view.created_timestamp_field))

    def read_offline_latest(self, view_name: str, start: TimePoint | None = None,
                            end: TimePoint | None = None) -> tuple[pa.Table, int]:
        """The newest row per entity key with start <= event time < end, and how many rows the window holds.

        Same columns as ``read_offline``. Among rows with the same keys and event time the one created
        last wins (rows without a created timestamp lose to rows with one). The choice runs inside
        the offline scan, so only one row per entity leaves DuckDB.
        """
        view = self.get_feature_view(view_name)
        con = connect()
        try:
            # Keys spanning at most 2^18 values (say integer ids below 262,144) are grouped in an
            # array indexed by key instead of a hash table: a quarter less CPU for the scan of a
            # large view, at most some tens of MB more while it runs. A setting of this cursor only.
            con.execute(f"SET perfect_ht_threshold = {_PERFECT_HASH_BITS}")
            rel = Scanner(con, self.ws.artifacts, OFFLINE_LOG_PREFIX).view_relation(view)
            keys = [quote(k) for k in view.join_keys]
            packed = [f"__t := {EVENT_TS}", f"__c := {CREATED_TS}"]
            packed.extend(f"{quote(f'__f{i}')} := {quote(f.name)}" for i, f in enumerate(view.fields))
            order = EVENT_TS
            if view.created_timestamp_field:
                order = f"struct_pack(t := {EVENT_TS}, c := COALESCE({CREATED_TS}, TIMESTAMP '0001-01-01'))"
            cols = [*keys, f"__s.__t AS {quote(view.timestamp_field)}"]
            if view.created_timestamp_field:
                cols.append(f"__s.__c AS {quote(view.created_timestamp_field)}")
            cols.extend(f"__s.{quote(f'__f{i}')} AS {quote(f.name)}" for i, f in enumerate(view.fields))
            cols.append("__n")
            inner = [*keys, f"arg_max(struct_pack({', '.join(packed)}), {order}) AS __s", "count(*) AS __n"]
            sql = (f"SELECT {', '.join(cols)} FROM (SELECT {', '.join(inner)} "
                   f"FROM {rel.sql}{_window(start, end)} GROUP BY ALL)")
            result = con.sql(sql).to_arrow_table()
        finally:
            con.close()
        rows = int(pc.sum(result.column("__n")).as_py() or 0)
        return utc_schema(result.drop_columns(["__n"]), (view.timestamp_field, view.created_timestamp_field)), rows

    def offline_schema(self, view: FeatureView) -> pa.Schema:
        fields = [pa.field(k, ARROW_TYPES[view.key_types[k]] if k in view.key_types else pa.null())
                  for k in view.join_keys]
        fields.append(pa.field(view.timestamp_field, ARROW_TYPES["timestamp"]))
        if view.created_timestamp_field:
            fields.append(pa.field(view.created_timestamp_field, ARROW_TYPES["timestamp"]))
        fields.extend(pa.field(f.name, f.arrow_type) for f in view.fields)
        return pa.schema(fields)

    def offline_append(self, view_name: str, table: pa.Table | pd.DataFrame | list[dict[str, Any]]) -> str:
        """Append rows to the view's offline log (one Parquet file, written atomically); returns its path."""
        view = self.get_feature_view(view_name)
        data = _as_arrow(table, view.name)
        if data.num_rows == 0:
            return ""
        columns: dict[str, pa.Array] = {}
        required = [*view.join_keys, view.timestamp_field, *(f.name for f in view.fields)]
        missing = [c for c in required if c not in data.column_names]
        if missing:
            raise SchemaMismatch(
                f"rows for feature view {view.name!r} lack columns {missing}; each row needs the join keys "
                f"{view.join_keys}, {view.timestamp_field!r} and every feature",
                {"view": view.name, "missing": missing},
            )
        for field in self.offline_schema(view):
            if field.name in data.column_names:
                col = data.column(field.name)
            elif field.name == view.created_timestamp_field:
                col = pa.array([pd.Timestamp.now(tz="UTC")] * data.num_rows, ARROW_TYPES["timestamp"])
            else:  # pragma: no cover - guarded above
                continue
            columns[field.name] = _cast_column(col, field.type, view.name, field.name)
        out = pa.table(columns)
        buffer = io.BytesIO()
        pq.write_table(out, buffer, compression="zstd")
        path = f"{OFFLINE_LOG_PREFIX}/{view.name}/part-{now_ms():013d}-{uuid.uuid4().hex[:12]}.parquet"
        self.ws.artifacts.put_bytes(path, buffer.getvalue())
        return path

    def compact(self, view: str | None = None, *, target_rows: int | None = None,
                grace_seconds: float | None = None) -> list[Any]:
        """Merge the small files pushes left in the offline log of ``view`` (every feature view if None).

        Readers see the same rows throughout; see ``shipyard.features.compaction``. Returns one
        ``CompactionResult`` per view.
        """
        from shipyard.features import compaction

        names = [view] if view is not None else [v.name for v in self.list_views() if isinstance(v, FeatureView)]
        results = []
        for name in names:
            definition = self.get_feature_view(name)
            results.append(compaction.compact_log(
                self.ws.artifacts, f"{OFFLINE_LOG_PREFIX}/{definition.name}", definition.name,
                timestamp_field=definition.timestamp_field,
                target_rows=compaction.DEFAULT_TARGET_ROWS if target_rows is None else target_rows,
                grace_seconds=compaction.DEFAULT_GRACE_SECONDS if grace_seconds is None else grace_seconds))
        return results

    # -- training sets and backfill --------------------------------------------------------------
    @overload
    def get_training_set(
        self,
        entity_df: pd.DataFrame | pa.Table,
        features: Sequence[str] | None = None,
        service: str | None = None,
        engine: str | None = None,
        output: Literal["pandas"] = "pandas",
        timestamp_column: str | None = None,
        full_feature_names: bool = False,
        dataset: str | None = None,
    ) -> pd.DataFrame: ...

    @overload
    def get_training_set(
        self,
        entity_df: pd.DataFrame | pa.Table,
        features: Sequence[str] | None = None,
        service: str | None = None,
        engine: str | None = None,
        *,
        output: Literal["arrow"],
        timestamp_column: str | None = None,
        full_feature_names: bool = False,
        dataset: str | None = None,
    ) -> pa.Table: ...

    @overload
    def get_training_set(
        self,
        entity_df: pd.DataFrame | pa.Table,
        features: Sequence[str] | None = None,
        service: str | None = None,
        engine: str | None = None,
        output: str = "pandas",
        timestamp_column: str | None = None,
        full_feature_names: bool = False,
        dataset: str | None = None,
    ) -> pd.DataFrame | pa.Table: ...

    def get_training_set(
        self,
        entity_df: pd.DataFrame | pa.Table,
        features: Sequence[str] | None = None,
        service: str | None = None,
        engine: str | None = None,
        output: str = "pandas",
        timestamp_column: str | None = None,
        full_feature_names: bool = False,
        dataset: str | None = None,
    ) -> pd.DataFrame | pa.Table:
        """Point-in-time correct features for every entity row (see ``shipyard.features.training``)."""
        from shipyard.features.offline import get_engine
        from shipyard.features.training import build_training_set

        return build_training_set(
            entity_df, catalog=self,
            engine=get_engine(engine or self.ws.settings.offline_engine, self.ws.artifacts, OFFLINE_LOG_PREFIX),
            artifacts=self.ws.artifacts, metadata=self.ws.store, user=self.ws.user,
            features=None if features is None else list(features), service=service, output=output,
            timestamp_column=timestamp_column, full_feature_names=full_feature_names, dataset=dataset)

    def training_set_info(self, result: TrainingSetResult) -> dict[str, Any]:
        return result.to_dict()

    def backfill(self, view: str, start: TimePoint, end: TimePoint) -> dict[str, Any]:
        """Compute the view over [start, end) and write it as a Parquet dataset in the artifact store."""
        from shipyard.features.training import backfill

        return backfill(self.get_feature_view(view), start, end, read_offline=self.read_offline,
                        artifacts=self.ws.artifacts, metadata=self.ws.store, user=self.ws.user)

    # -- online serving, materialization, push, logging, skew, monitoring ------------------------
    # Thin delegating methods for the online side are added below this line.
    def materialize(self, start: TimePoint, end: TimePoint, views: Sequence[str] | None = None,
                    **options: Any) -> list[MaterializeResult]:
        return _online("materialize").materialize(self._materialize_deps(), start, end, _names(views), **options)

    def materialize_incremental(self, end: TimePoint | None = None, views: Sequence[str] | None = None,
                                **options: Any) -> list[MaterializeResult]:
        return _online("materialize").materialize_incremental(self._materialize_deps(), end, _names(views),
                                                              **options)

    def _materialize_deps(self) -> MaterializeDeps:
        """What ``shipyard.features.materialize`` runs with: these views, the online store, and the
        workspace's stores, acting user and lease time."""
        from shipyard.features.materialize import MaterializeDeps
        from shipyard.features.online import online_store_of

        return MaterializeDeps(views=self, online=online_store_of(self), metadata=self.ws.store,
                               artifacts=self.ws.artifacts, user=self.ws.user,
                               lease_ttl_s=float(self.ws.settings.lease_ttl_s))

    def get_online_features(self, entity_rows: EntityRows, features: Sequence[str] | None = None,
                            service: str | None = None,
                            **options: Any) -> dict[str, list[Any]]:
        return _online("online_features").get_online_features(self, entity_rows, _names(features), service,
                                                               **options)

    def push(self, view: str, rows: FeatureRows, **options: Any) -> PushResult:
        return _online("push").push(self, view, rows, **options)

    def log_features(self, request_id: str, ts: datetime | np.datetime64 | str, entity_keys: Mapping[str, Any],
                     feature_vector: Mapping[str, Any]) -> None:
        return _online("logging").log_features(self, request_id, ts, entity_keys, feature_vector)

    def skew(self, view_or_service: str, start: TimePoint | None = None, end: TimePoint | None = None,
             **options: Any) -> SkewReport:
        return _online("skew").skew(self, view_or_service, start, end, **options)

    def monitor(self, views: list[str] | None = None, **options: Any) -> dict[str, Any]:
        return _online("monitoring").monitor(self, views, **options)


def _names(names: Sequence[str] | None) -> list[str] | None:
    return None if names is None else list(names)


def _online(module: str) -> ModuleType:
    import importlib

    return importlib.import_module(f"shipyard.features.{module}")


_PERFECT_HASH_BITS = 18  # DuckDB's default is 12


def utc_schema(table: pa.Table, wall: tuple[str | None, ...] = ()) -> pa.Table:
    """Label DuckDB's zone-aware timestamps (zone 'Etc/UTC') and the UTC wall-time columns
    ``wall`` as UTC; relabelling keeps the stored microseconds."""
    fields = [pa.field(f.name, pa.timestamp(f.type.unit, tz="UTC"), f.nullable)
              if pa.types.is_timestamp(f.type) and (f.type.tz or f.name in wall) else f for f in table.schema]
    return table.cast(pa.schema(fields))


def _window(start: TimePoint | None, end: TimePoint | None) -> str:
    """WHERE clause for start <= event time < end (either may be None)."""
    where = []
    if start is not None:
        where.append(f"{EVENT_TS} >= TIMESTAMP '{naive_utc(to_utc(start, 'start')).isoformat(sep=' ')}'")
    if end is not None:
        where.append(f"{EVENT_TS} < TIMESTAMP '{naive_utc(to_utc(end, 'end')).isoformat(sep=' ')}'")
    return f" WHERE {' AND '.join(where)}" if where else ""


def _as_arrow(table: Any, view: str) -> pa.Table:
    if isinstance(table, pa.Table):
        return table
    if isinstance(table, pd.DataFrame):
        return table_from_pandas(table)
    if isinstance(table, list):
        return pa.Table.from_pylist(table) if table else pa.table({})
    raise InvalidInput(f"rows for feature view {view!r} must be a pyarrow Table, pandas DataFrame or list of dicts",
                       {"view": view})


def _cast_column(col: pa.ChunkedArray | pa.Array, target: pa.DataType, view: str, name: str) -> pa.ChunkedArray:
    if pa.types.is_null(target):
        return col  # type: ignore[return-value]
    try:
        if pa.types.is_timestamp(target):
            if pa.types.is_timestamp(col.type):
                if col.type.tz is None:
                    col = col.cast(pa.timestamp(col.type.unit, tz="UTC"))
                return col.cast(target)
            series = pd.to_datetime(pd.Series(col.to_pylist()), utc=True)
            return pa.chunked_array([pa.array(series, target)])
        if pa.types.is_floating(target) and not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
                                                 or pa.types.is_null(col.type) or pa.types.is_decimal(col.type)):
            raise pa.ArrowInvalid(f"{col.type} is not numeric")
        if pa.types.is_integer(target) and pa.types.is_floating(col.type):
            return col.cast(target, safe=True)
        if pa.types.is_string(target) and not (pa.types.is_string(col.type) or pa.types.is_null(col.type)
                                               or pa.types.is_large_string(col.type)):
            raise pa.ArrowInvalid(f"{col.type} is not a string")
        if pa.types.is_boolean(target) and not (pa.types.is_boolean(col.type) or pa.types.is_null(col.type)):
            raise pa.ArrowInvalid(f"{col.type} is not a bool")
        return col.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, TypeError) as exc:
        raise SchemaMismatch(
            f"feature view {view!r}: column {name!r} has values of type {col.type} that cannot be stored as "
            f"{target}: {exc}; send {target} values",
            {"view": view, "field": name, "expected": str(target), "got": str(col.type)},
        ) from None


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)
