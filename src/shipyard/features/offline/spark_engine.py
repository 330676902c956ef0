"""Point-in-time joins on Spark with the same semantics and results as the DuckDB engine.

View data is read by Spark itself: a view over Parquet or CSV files (a ``FileSource``, or the
batch source of a ``PushSource``) and the Parquet files pushed to its offline log become one
DataFrame with the canonical columns the DuckDB scan produces (keys cast to their declared types,
event and created times as UTC microseconds, typed features), so the data never passes through
this process. Views whose rows only DuckDB can produce (a ``SqlSource``, a ``DuckDBSource``, a
view ``sql=`` in DuckDB's dialect or a pandas ``transform``) are still read through the DuckDB scan
and handed to Spark from memory; they are meant to be small.

Entity rows and view rows are unioned per join key and ordered by (time, view rows before entity
rows, created time); each entity row takes the last view row seen so far (``last`` ignoring nulls
over a running window), then TTL is applied. Times travel as integer microseconds (UTC), so no
session time zone can shift them.

Paths: local files are read as they are; ``s3://`` URLs (sources, and the log of an S3 artifact
store) are read through Hadoop's s3a connector, which needs the hadoop-aws jars and the s3a
endpoint and credentials in the Spark session's configuration.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from shipyard.errors import ConfigError, InvalidInput, require
from shipyard.features.definitions import FeatureView
from shipyard.features.offline.engine import ROW, TS, ViewRequest
from shipyard.features.offline.scan import CREATED_TS, EVENT_TS, Scanner, connect, quote
from shipyard.features.sources import FileSource, PushSource, Source

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkFrame
    from pyspark.sql import SparkSession

    from shipyard.artifacts import ArtifactStore

_session: Any = None
_lock = threading.Lock()

_SPARK_TYPES = {"float64": "double", "int64": "bigint", "string": "string", "bool": "boolean"}


def spark_session() -> SparkSession:
    """A local Spark session unless one is active (then that one is used)."""
    global _session
    require("pyspark", "spark")
    from pyspark.sql import SparkSession

    with _lock:
        active = SparkSession.getActiveSession()
        if active is not None:
            return active
        if _session is None:
            _session = (
                SparkSession.builder.master("local[2]").appName("shipyard-features")
                .config("spark.ui.enabled", "false")
                .config("spark.sql.session.timeZone", "UTC")
                .config("spark.sql.shuffle.partitions", "4")
                .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                # pandas and pyarrow write nanosecond timestamps, which Spark otherwise refuses to read;
                # as longs they are converted to microseconds below
                .config("spark.sql.legacy.parquet.nanosAsLong", "true")
                .getOrCreate()
            )
        return _session


def needs_duckdb(view: FeatureView) -> bool:
    """Whether the view's rows can only be produced by the DuckDB scan."""
    if view.sql or view.transform_function() is not None:
        return True
    source: Source | None = view.source
    if isinstance(source, PushSource):
        source = source.batch_source
    return source is not None and not isinstance(source, FileSource)


def spark_path(path: str) -> str:
    """``s3://`` URLs go through Hadoop's s3a connector."""
    return "s3a://" + path[len("s3://"):] if path.startswith("s3://") else path


class SparkEngine:
    name = "spark"

    def __init__(self, artifacts: ArtifactStore | None, log_prefix: str = "features/offline") -> None:
        self.artifacts = artifacts
        self.log_prefix = log_prefix

    # -- reading views -------------------------------------------------------------------------
    def view_frame(self, req: ViewRequest, spark: SparkSession | None = None) -> SparkFrame:
        """The view's rows as a Spark DataFrame: join keys, ``__vts`` and ``__cts`` (UTC microseconds)
        and the requested features (timestamps as UTC microseconds)."""
        spark = spark or spark_session()
        view = req.view
        if needs_duckdb(view):
            # DuckDB SQL and pandas transforms have no Spark equivalent: such views are read by the
            # DuckDB scan (their offline log included) and handed over from memory
            table = self._view_table_duckdb(req)
            return spark.createDataFrame(table.to_pandas(), schema=_schema(table))
        parts = []
        source = view.source.batch_source if isinstance(view.source, PushSource) else view.source
        if isinstance(source, FileSource):
            frame = _reading(view, "source", [source.path], lambda: _read_source(spark, source))
            parts.append(self._canonical(frame, req, "source", check=True))
        files = self.log_paths(view.name)
        if files:
            log = _reading(view, "offline log", files, lambda: spark.read.option("mergeSchema", "true").parquet(*files))
            parts.append(self._canonical(log, req, "offline log", check=False))
        if not parts:
            return spark.createDataFrame([], _empty_schema(req))
        frame = parts[0]
        for part in parts[1:]:
            frame = frame.unionByName(part)
        return frame

    def log_paths(self, view: str) -> list[str]:
        """What Spark reads of the view's offline log: the live files (see compaction.py)."""
        if self.artifacts is None:
            return []
        from shipyard.features.compaction import live_log_files

        paths = live_log_files(self.artifacts, f"{self.log_prefix}/{view}")
        if self.artifacts.is_local:
            return [str(self.artifacts.local_path(p)) for p in paths]
        return [spark_path(self.artifacts.uri(p)) for p in paths]

    def _canonical(self, frame: Any, req: ViewRequest, what: str, check: bool) -> Any:
        from pyspark.sql import functions as F

        view = req.view
        types = dict(frame.dtypes)
        if check:
            _check_columns(view, list(types), what)
        cols = []
        for key in view.join_keys:
            dtype = view.key_types.get(key)
            cols.append(F.col(_ref(key)).cast(_SPARK_TYPES[dtype]).alias(key) if dtype else F.col(_ref(key)))
        cols.append(_micros(view.timestamp_field, types, view).alias("__vts"))
        created = view.created_timestamp_field
        if created and created in types:
            cols.append(_micros(created, types, view).alias("__cts"))
        else:
            cols.append(F.lit(None).cast("bigint").alias("__cts"))
        for feature in req.features:
            dtype = view.field(feature).dtype
            if dtype == "timestamp":
                cols.append(_micros(feature, types, view).alias(feature))
            else:
                cols.append(F.col(_ref(feature)).cast(_SPARK_TYPES[dtype]).alias(feature))
        return frame.select(*cols)

    def _view_table_duckdb(self, req: ViewRequest) -> pa.Table:
        con = connect()
        try:
            rel = Scanner(con, self.artifacts, self.log_prefix).view_relation(req.view)
            cols = [quote(k) for k in req.view.join_keys]
            cols += [f"epoch_us({EVENT_TS}) AS __vts", f"epoch_us({CREATED_TS}) AS __cts"]
            for feature in req.features:
                dtype = req.view.field(feature).dtype
                cols.append(f"epoch_us({quote(feature)}) AS {quote(feature)}" if dtype == "timestamp" else quote(feature))
            return con.sql(f"SELECT {', '.join(cols)} FROM {rel.sql}").to_arrow_table()
        finally:
            con.close()

    # -- the join ------------------------------------------------------------------------------
    def point_in_time_join(self, entity: pa.Table, requests: list[ViewRequest]) -> pa.Table:
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        spark = spark_session()
        ts_us = entity.column(TS).cast(pa.int64())
        ent = entity.set_column(entity.schema.get_field_index(TS), TS, ts_us)
        low, high = pc.min(ts_us).as_py(), pc.max(ts_us).as_py()
        result = spark.createDataFrame(ent.to_pandas())
        base = result.select(ROW)
        for req in requests:
            keys = req.view.join_keys
            view_df = self.view_frame(req, spark)
            if high is not None:  # only rows some entity row can see (as the DuckDB engine narrows its scan)
                view_df = view_df.where(F.col("__vts") <= F.lit(high))
                if req.view.ttl is not None:
                    view_df = view_df.where(F.col("__vts") >= F.lit(low - _ttl_micros(req.view)))
            left = result.select(ROW, *keys, F.col(TS).alias("__t"), F.lit(1).alias("__is_entity"),
                                 F.lit(None).cast("long").alias("__cts"),
                                 F.lit(None).alias("__payload"))
            payload = F.struct(F.col("__vts").alias("__vts"), *[F.col(f) for f in req.features])
            right = view_df.select(F.lit(None).cast("long").alias(ROW), *keys, F.col("__vts").alias("__t"),
                                   F.lit(0).alias("__is_entity"), F.col("__cts"), payload.alias("__payload"))
            left = left.withColumn("__payload", F.lit(None).cast(right.schema["__payload"].dataType))
            window = (Window.partitionBy(*keys)
                      .orderBy(F.col("__t"), F.col("__is_entity"), F.col("__cts").asc_nulls_first())
                      .rowsBetween(Window.unboundedPreceding, Window.currentRow))
            unioned = left.unionByName(right).withColumn("__latest", F.last("__payload", ignorenulls=True).over(window))
            found = unioned.where(F.col("__is_entity") == 1)
            keep = F.lit(True)
            for key in keys:
                keep = keep & F.col(key).isNotNull()
            if req.view.ttl is not None:
                keep = keep & (F.col("__latest.__vts") >= F.col("__t") - F.lit(_ttl_micros(req.view)))
            cols = [F.when(keep, F.col(f"__latest.{f}")).alias(out)
                    for f, out in zip(req.features, req.output_names, strict=True)]
            base = base.join(found.select(ROW, *cols), on=ROW, how="left")
        table = _collect(base.orderBy(ROW))
        return _restore_types(table, requests)


def _ttl_micros(view: FeatureView) -> int:
    assert view.ttl is not None
    return int(round(view.ttl.total_seconds() * 1_000_000))


def _ref(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _reading(view: FeatureView, what: str, paths: list[str], read: Callable[[], Any]) -> Any:
    """``read()``, with Spark's failures turned into errors that name the view and the fix."""
    try:
        return read()
    except Exception as exc:  # noqa: BLE001 - py4j and Spark analysis errors share no narrower base
        text = str(exc)
        first = next((line for line in text.splitlines() if line.strip() and "error occurred while" not in line),
                     type(exc).__name__).lstrip(": ")
        if "S3AFileSystem" in text or 'scheme "s3a"' in text:
            raise ConfigError(
                f"feature view {view.name!r}: Spark cannot read s3:// paths without Hadoop's s3a connector; add "
                "the hadoop-aws jars (spark.jars.packages=org.apache.hadoop:hadoop-aws:<Spark's Hadoop version>) "
                "and the spark.hadoop.fs.s3a.* endpoint and credentials, or use the DuckDB engine",
                {"view": view.name, "field": "offline_engine", "paths": paths[:3]}) from None
        raise InvalidInput(f"feature view {view.name!r} ({view.location}): Spark could not read its {what}: {first}; "
                           "fix the file path or format", {"view": view.name, "field": "source", "error": first,
                                                          "location": str(view.location)}) from None


def _read_source(spark: Any, source: FileSource) -> Any:
    """A FileSource read by Spark, the way the DuckDB scan reads it (a folder means the files in it)."""
    path = spark_path(source.path)
    is_folder = not any(ch in path for ch in "*?[") and "://" not in path and \
        not path.lower().endswith((".parquet", ".csv", ".gz", ".tsv", ".pq"))
    reader = spark.read
    if is_folder:
        reader = reader.option("pathGlobFilter", "*.parquet" if source.format == "parquet" else "*.csv")
    if source.format == "csv":
        return reader.options(**source.spark_csv_options()).csv(path)
    return reader.option("mergeSchema", "true").parquet(path)


def _micros(name: str, types: dict[str, str], view: FeatureView) -> Any:
    """A timestamp column as UTC microseconds: an instant's epoch microseconds, a zone-less
    timestamp (or date) read as UTC wall time, the same as the DuckDB scan."""
    from pyspark.sql import functions as F

    col = F.col(_ref(name))
    kind = types.get(name, "")
    if kind == "timestamp":
        return F.unix_micros(col)
    if kind in ("timestamp_ntz", "date"):  # no session zone involved: microseconds since the epoch's wall time
        return F.expr(f"timestampdiff(MICROSECOND, TIMESTAMP_NTZ'1970-01-01 00:00:00', "
                      f"CAST({_ref(name)} AS TIMESTAMP_NTZ))")
    if kind == "bigint":  # Parquet nanoseconds read as longs (spark.sql.legacy.parquet.nanosAsLong)
        return F.floor(col / F.lit(1000)).cast("bigint")
    if kind == "string":
        return F.unix_micros(F.to_timestamp(col))
    raise InvalidInput(
        f"feature view {view.name!r}: column {name!r} is {kind}, not a timestamp; store it as a timestamp "
        "or ISO-8601 string", {"view": view.name, "field": name, "location": str(view.location)})


def _check_columns(view: FeatureView, columns: list[str], what: str) -> None:
    """The DuckDB scan's checks, with its messages: each needed column must be in the source."""
    where = f"feature view {view.name!r}"
    have = ", ".join(columns) or "(none)"
    needed = [(view.timestamp_field, "timestamp column", "set timestamp_field= to the event-time column")]
    if view.created_timestamp_field:
        needed.append((view.created_timestamp_field, "created timestamp column",
                       "fix created_timestamp_field= or remove it"))
    needed += [(k, "join key column", "add it to the source or fix the entity's join_keys") for k in view.join_keys]
    needed += [(f.name, "column for feature", "add it to the source, or remove the field") for f in view.fields]
    for name, kind, fix in needed:
        if name not in columns:
            raise InvalidInput(f"{where}: its {what} has no {kind} {name!r} (columns: {have}); {fix}",
                               {"view": view.name, "field": name, "location": str(view.location)})


def _empty_schema(req: ViewRequest) -> Any:
    from pyspark.sql import types as T

    spark_types = {"float64": T.DoubleType(), "int64": T.LongType(), "string": T.StringType(),
                   "bool": T.BooleanType(), "timestamp": T.LongType()}
    fields = [T.StructField(k, spark_types[req.view.key_types.get(k, "string")], True) for k in req.view.join_keys]
    fields += [T.StructField("__vts", T.LongType(), True), T.StructField("__cts", T.LongType(), True)]
    fields += [T.StructField(f, spark_types[req.view.field(f).dtype], True) for f in req.features]
    return T.StructType(fields)


def _schema(table: pa.Table) -> Any:
    from pyspark.sql import types as T

    mapping = {pa.int64(): T.LongType(), pa.float64(): T.DoubleType(), pa.string(): T.StringType(),
               pa.bool_(): T.BooleanType(), pa.int32(): T.IntegerType(), pa.large_string(): T.StringType()}
    return T.StructType([T.StructField(f.name, mapping.get(f.type, T.StringType()), True) for f in table.schema])


def _collect(df: Any) -> pa.Table:
    if hasattr(df, "toArrow"):
        return df.toArrow()
    return pa.Table.from_pandas(df.toPandas(), preserve_index=False)  # pragma: no cover - Spark < 4


def _restore_types(table: pa.Table, requests: list[ViewRequest]) -> pa.Table:
    columns = {ROW: table.column(ROW).cast(pa.int64())}
    for req in requests:
        for feature, out in zip(req.features, req.output_names, strict=True):
            field = req.view.field(feature)
            col = table.column(out)
            if field.dtype == "timestamp":
                col = col.cast(pa.int64()).cast(pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC"))
            columns[out] = col.cast(field.arrow_type)
    return pa.table(columns)
