"""Training sets: point-in-time correct features for a table of (entity keys, timestamp) rows.

Checks the request (features, entity keys, timestamp column and its time zone), hands the join to
the offline engine it is given, runs on-demand views over the joined rows with the same code that
serves them online, and returns pandas, Arrow, or a Parquet dataset recorded with its lineage.

What it needs is handed in (``FeatureStore`` wires it): the applied definitions (``ViewCatalog``),
the offline engine, the artifact store, and the metadata store and acting user to record a dataset.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shipyard.arrow_util import table_from_pandas
from shipyard.errors import InvalidInput
from shipyard.features.definitions import FeatureService, FeatureView, OnDemandFeatureView
from shipyard.features.offline import ROW, TS, OfflineEngine, ViewRequest
from shipyard.features.offline.scan import Scanner, connect
from shipyard.features.paths import OFFLINE_LOG_PREFIX
from shipyard.features.timeutil import naive_utc, to_utc
from shipyard.features.types import ARROW_TYPES
from shipyard.features.udf import PANDAS_TYPES, input_frame
from shipyard.store import now_ms
from shipyard.store.events import record_event
from shipyard.store.schema import feature_training_sets

if TYPE_CHECKING:
    from shipyard.artifacts import ArtifactStore
    from shipyard.store import MetadataStore

DEFAULT_TS_COLUMNS = ("event_timestamp", "timestamp", "ts", "event_ts")
# How joined Arrow columns become pandas: integers and booleans keep their nulls.
_PANDAS_TYPES = PANDAS_TYPES
OUTPUTS = ("pandas", "arrow")


@dataclass
class TrainingSetResult:
    """A training set written as a dataset (Parquet in the artifact store)."""

    id: str
    name: str
    path: str
    uri: str
    sha256: str
    rows: int
    features: list[str]
    lineage: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ViewCatalog(Protocol):
    """The applied definitions as a training set reads them: views whose dataset sources name the
    version read now, and a record of those reads (lineage)."""

    def get_view(self, name: str, version: int | None = None) -> FeatureView | OnDemandFeatureView: ...

    def get_service(self, name: str, version: int | None = None) -> FeatureService: ...

    def record_dataset_reads(self, views: Sequence[FeatureView | OnDemandFeatureView]) -> list[str]: ...


def resolve_features(catalog: ViewCatalog, features: list[str] | None, service: str | None
                     ) -> tuple[list[str], dict[str, Any]]:
    if (features is None) == (service is None):
        raise InvalidInput("give exactly one of features=['view:feature', ...] or service='name'",
                           {"field": "features"})
    lineage: dict[str, Any] = {}
    if service is not None:
        svc = catalog.get_service(service)
        refs = list(svc.features)
        lineage["service"] = {"name": svc.name, "version": svc.version}
    else:
        if isinstance(features, str) or not features:
            raise InvalidInput("features must be a non-empty list such as ['customer_stats:amount']",
                               {"field": "features"})
        refs = []
        for ref in features:
            view_name, sep, feature = str(ref).partition(":")
            if not sep:
                refs.extend(f"{view_name}:{f}" for f in catalog.get_view(view_name).feature_names)
            else:
                refs.append(f"{view_name}:{feature}")
    return list(dict.fromkeys(refs)), lineage


def build_training_set(entity_df: pd.DataFrame | pa.Table, *, catalog: ViewCatalog, engine: OfflineEngine,
                       artifacts: ArtifactStore, metadata: MetadataStore, user: str, features: list[str] | None,
                       service: str | None, output: str, timestamp_column: str | None,
                       full_feature_names: bool, dataset: str | None) -> pd.DataFrame | pa.Table:
    """The training set (see the module docstring); ``dataset`` names it when written to the artifact
    store and recorded in ``metadata`` as made by ``user``."""
    if output not in OUTPUTS:
        raise InvalidInput(f"output {output!r} is not supported; use 'pandas' or 'arrow'", {"field": "output"})
    refs, lineage = resolve_features(catalog, features, service)
    frame = entity_df.to_pandas() if isinstance(entity_df, pa.Table) else entity_df
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInput("entity_df must be a pandas DataFrame or pyarrow Table", {"field": "entity_df"})

    # Which views and features, and the output column of each.
    views: dict[str, FeatureView | OnDemandFeatureView] = {}
    wanted: dict[str, list[str]] = {}
    for ref in refs:
        view_name, _, feature = ref.partition(":")
        view = views.get(view_name) or catalog.get_view(view_name)
        views[view_name] = view
        view.field(feature)
        wanted.setdefault(view_name, []).append(feature)
    hidden: dict[str, list[str]] = {}
    for view in list(views.values()):
        if isinstance(view, OnDemandFeatureView):
            for ref in view.feature_inputs:
                src_name, _, feature = ref.partition(":")
                src = views.get(src_name) or catalog.get_view(src_name)
                views[src_name] = src
                if feature not in wanted.get(src_name, []) and feature not in hidden.get(src_name, []):
                    hidden.setdefault(src_name, []).append(feature)
            missing = [f.name for f in view.request_fields if f.name not in frame.columns]
            if missing:
                raise InvalidInput(
                    f"on-demand feature view {view.name!r} needs request fields {missing} as columns of entity_df",
                    {"view": view.name, "missing": missing})
    out_name = (lambda v, f: f"{v}__{f}") if full_feature_names else (lambda v, f: f)
    outputs = [out_name(*ref.split(":", 1)) for ref in refs]
    clashes = sorted({o for o in outputs if outputs.count(o) > 1} | (set(outputs) & set(map(str, frame.columns))))
    if clashes:
        raise InvalidInput(
            f"feature columns {clashes} would collide (with each other or entity_df columns); pass "
            "full_feature_names=True to name them 'view__feature', or rename the entity_df columns",
            {"columns": clashes})

    fvs = [v for v in views.values() if isinstance(v, FeatureView)]
    ts_col = _timestamp_column(frame, timestamp_column)
    keys = _join_keys(frame, fvs)
    entity = _entity_table(frame, ts_col, keys, fvs)
    _check_timezones(artifacts, frame[ts_col], ts_col, fvs)

    requests = []
    for view in fvs:
        feats = wanted.get(view.name, []) + hidden.get(view.name, [])
        names = [out_name(view.name, f) if f in wanted.get(view.name, []) else f"__in__{view.name}__{f}"
                 for f in feats]
        requests.append(ViewRequest(view, feats, names))

    joined = engine.point_in_time_join(entity, requests) if requests else pa.table({ROW: entity.column(ROW)})
    if joined.num_rows != len(frame):
        raise RuntimeError(f"offline engine returned {joined.num_rows} rows for {len(frame)} entity rows")
    read = catalog.record_dataset_reads(fvs)  # lineage: the dataset versions joined name their views
    if read:
        lineage["datasets"] = read

    base = frame.reset_index(drop=True)
    joined_columns = [out_name(name, f) for name, feats in wanted.items() if isinstance(views[name], FeatureView)
                      for f in feats]
    computed_columns: dict[str, Any] = {}
    for view_name, feats in wanted.items():
        view = views[view_name]
        if isinstance(view, OnDemandFeatureView):
            columns: dict[str, Any] = {}
            types: dict[str, str] = {}
            for ref in view.feature_inputs:
                src, _, feature = ref.partition(":")
                col = out_name(src, feature) if feature in wanted.get(src, []) else f"__in__{src}__{feature}"
                columns[feature] = joined.column(col)
                types[feature] = views[src].field(feature).dtype
            for f in view.request_fields:
                columns[f.name] = base[f.name]
                types[f.name] = f.dtype
            # the same typed frame online reads build (shipyard.features.udf.input_frame)
            computed = view.execute(input_frame(columns, types, f"on-demand feature view {view.name!r}",
                                                index=base.index), owned=True)
            for feature in feats:
                computed_columns[out_name(view_name, feature)] = computed[feature].to_numpy()
    lineage["views"] = {name: view.version for name, view in sorted(views.items())}
    if output == "arrow" and dataset is None:
        table = _arrow_result(base, joined, joined_columns, computed_columns)
        if table is not None:
            return table
    result = base.copy()
    for col in joined_columns:
        result[col] = joined.column(col).to_pandas(types_mapper=_PANDAS_TYPES)
    for col, values in computed_columns.items():
        result[col] = values
    if dataset is not None:
        return _write_dataset(artifacts, metadata, user, result, dataset, refs, lineage)
    if output == "arrow":
        return table_from_pandas(result)
    return result


def _arrow_result(base: pd.DataFrame, joined: pa.Table, joined_columns: list[str],
                  computed_columns: dict[str, Any]) -> pa.Table | None:
    """The table ``pa.Table.from_pandas`` would make of the pandas result, without converting the
    joined columns to pandas and back (a tenth of a second per million rows and ten features).

    The joined columns take the types and pandas metadata that round trip gives an empty column of
    theirs; None when that is not decided by the type alone (an empty object column on pandas 2).
    """
    probe = table_from_pandas(joined.select(joined_columns).slice(0, 0).to_pandas(types_mapper=_PANDAS_TYPES))
    if any(pa.types.is_null(f.type) for f in probe.schema):
        return None
    arrays = []
    for name, target in zip(joined_columns, probe.schema, strict=True):
        column = joined.column(name)
        if pa.types.is_floating(column.type):
            nan = pc.is_nan(column)
            if pc.any(nan).as_py():  # from_pandas reads NaN as null
                column = pc.if_else(nan, pa.scalar(None, column.type), column)
        arrays.append(column.cast(target.type))
    entity = table_from_pandas(base.assign(**computed_columns))
    n_base = len(base.columns)
    fields = [*entity.schema][:n_base] + [*probe.schema] + [*entity.schema][n_base:]
    columns = entity.columns[:n_base] + arrays + entity.columns[n_base:]
    meta = entity.schema.pandas_metadata
    entries = meta["columns"]
    meta["columns"] = entries[:n_base] + probe.schema.pandas_metadata["columns"] + entries[n_base:]
    schema = pa.schema(fields, metadata={b"pandas": json.dumps(meta).encode()})
    return pa.Table.from_arrays(columns, schema=schema)


def _timestamp_column(frame: pd.DataFrame, name: str | None) -> str:
    if name is not None:
        if name not in frame.columns:
            raise InvalidInput(f"entity_df has no timestamp column {name!r} (columns: {list(frame.columns)})",
                               {"field": name})
        return name
    for candidate in DEFAULT_TS_COLUMNS:
        if candidate in frame.columns:
            return candidate
    datetimes = [c for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c])]
    if len(datetimes) == 1:
        return str(datetimes[0])
    raise InvalidInput(
        f"entity_df needs a timestamp column saying when each row happened; name it 'event_timestamp' or pass "
        f"timestamp_column= (columns: {list(frame.columns)})", {"field": "timestamp_column"})


def _join_keys(frame: pd.DataFrame, views: list[FeatureView]) -> list[str]:
    keys: list[str] = []
    for view in views:
        missing = [k for k in view.join_keys if k not in frame.columns]
        if missing:
            raise InvalidInput(
                f"entity_df lacks join key column(s) {missing} of feature view {view.name!r} (entities "
                f"{[e.name for e in view.entities]}); add them to entity_df",
                {"view": view.name, "missing": missing})
        keys.extend(k for k in view.join_keys if k not in keys)
    return keys


def _entity_table(frame: pd.DataFrame, ts_col: str, keys: list[str], views: list[FeatureView]) -> pa.Table:
    ts = frame[ts_col]
    if not pd.api.types.is_datetime64_any_dtype(ts):
        kinds = {type(v).__name__ for v in ts.dropna().head(1000)}
        if ts.dtype == object and ts.dropna().map(lambda v: hasattr(v, "tzinfo")).all() and len(ts.dropna()):
            aware = {getattr(v, "tzinfo", None) is not None for v in ts.dropna()}
            if len(aware) > 1:
                raise InvalidInput(
                    f"entity_df column {ts_col!r} mixes time-zone-aware and naive timestamps; make them all "
                    f"aware, e.g. pd.to_datetime(df[{ts_col!r}], utc=True)", {"field": ts_col})
        raise InvalidInput(
            f"entity_df column {ts_col!r} holds {', '.join(sorted(kinds)) or 'no'} values, not timestamps; convert "
            f"it with pd.to_datetime(df[{ts_col!r}], utc=True)", {"field": ts_col})
    if ts.isna().any():
        raise InvalidInput(f"entity_df column {ts_col!r} has {int(ts.isna().sum())} empty timestamps; every row "
                           "needs one", {"field": ts_col})
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    columns: dict[str, Any] = {ROW: pa.array(np.arange(len(frame), dtype=np.int64))}
    key_types: dict[str, str] = {}
    for view in views:
        key_types.update(view.key_types)
    for key in keys:
        values = frame[key]
        try:
            arr = pa.array(values.to_numpy() if values.dtype != object else values.tolist(), from_pandas=True)
            if key in key_types:
                arr = arr.cast(ARROW_TYPES[key_types[key]])
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise InvalidInput(f"entity_df column {key!r} cannot be read as {key_types.get(key, 'a key')}: {exc}",
                               {"field": key}) from None
        columns[key] = arr
    columns[TS] = pa.array(ts.to_numpy().astype("datetime64[us]"), pa.timestamp("us"))
    return pa.table(columns)


def _check_timezones(artifacts: ArtifactStore, ts: pd.Series, ts_col: str, views: list[FeatureView]) -> None:
    entity_aware = getattr(ts.dt, "tz", None) is not None

    con = connect()
    try:
        scanner = Scanner(con, artifacts, OFFLINE_LOG_PREFIX)
        for view in views:
            # the source alone decides: the offline log always holds UTC times, and reading it here
            # would fetch every log file (from S3 too) before the engine reads them again
            aware = scanner.source_timestamps_aware(view)
            if aware is not None and aware != entity_aware:
                if entity_aware:
                    state, fix = ("time-zone-aware", "naive"), (
                        f"make the entity times naive UTC (df[{ts_col!r}] = df[{ts_col!r}].dt.tz_convert('UTC')"
                        f".dt.tz_localize(None)) or store zone-aware times in the view's source")
                else:
                    state, fix = ("naive", "time-zone-aware"), (
                        f"make the entity times aware (df[{ts_col!r}] = df[{ts_col!r}].dt.tz_localize('UTC'))")
                raise InvalidInput(
                    f"entity_df column {ts_col!r} is {state[0]} but feature view {view.name!r} has {state[1]} "
                    f"timestamps in {view.timestamp_field!r}; {fix}",
                    {"view": view.name, "field": view.timestamp_field, "entity_field": ts_col})
    finally:
        con.close()


def _write_dataset(artifacts: ArtifactStore, metadata: MetadataStore, user: str, frame: pd.DataFrame, name: str,
                   refs: list[str], lineage: dict[str, Any]) -> TrainingSetResult:
    table = table_from_pandas(frame)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    ident = uuid.uuid4().hex
    path = f"features/training_sets/{name}/{now_ms():013d}-{ident[:12]}.parquet"
    info = artifacts.put_bytes(path, buffer.getvalue())
    with metadata.begin() as conn:
        conn.execute(feature_training_sets.insert().values(
            id=ident, name=name, uri=info.uri, sha256=info.sha256, rows=len(frame), features=refs, lineage=lineage,
            created_at=now_ms(), created_by=user))
        record_event(conn, user, "features.training_set", f"features/training_sets/{name}",
                     {"id": ident, "rows": len(frame), "uri": info.uri})
    return TrainingSetResult(ident, name, path, info.uri, info.sha256, len(frame), refs, lineage)


def backfill(view: FeatureView, start: Any, end: Any, *, read_offline: Callable[[str, Any, Any], pa.Table],
             artifacts: ArtifactStore, metadata: MetadataStore, user: str) -> dict[str, Any]:
    """The view's rows over [start, end) (``read_offline(view, start, end)``) written as a Parquet file
    in ``artifacts``, the event recorded in ``metadata`` as made by ``user``."""
    lo, hi = to_utc(start, "start"), to_utc(end, "end")
    if hi <= lo:
        raise InvalidInput(f"backfill of {view.name!r}: end {hi} must be after start {lo}", {"field": "end"})
    table = read_offline(view.name, lo, hi)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    stamp = f"{naive_utc(lo):%Y%m%dT%H%M%S}-{naive_utc(hi):%Y%m%dT%H%M%S}"
    path = f"features/backfills/{view.name}/v{view.version}/{stamp}.parquet"
    info = artifacts.put_bytes(path, buffer.getvalue())
    with metadata.begin() as conn:
        record_event(conn, user, "features.backfill", f"features/views/{view.name}",
                     {"version": view.version, "start": lo.isoformat(), "end": hi.isoformat(), "rows": table.num_rows,
                      "path": path})
    return {"view": view.name, "version": view.version, "start": lo.isoformat(), "end": hi.isoformat(),
            "rows": table.num_rows, "path": path, "uri": info.uri, "sha256": info.sha256}
