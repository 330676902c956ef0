"""Point-in-time joins on Spark with the same semantics and results as the DuckDB engine.

Entity rows and view rows are unioned per join key and ordered by (time, view rows before entity
rows, created time); each entity row takes the last view row seen so far (``last`` ignoring nulls
over a running window), then TTL is applied. Times travel as integer microseconds (UTC), so no
session time zone can shift them. View data is read through the same canonical relation as DuckDB.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from shipyard.errors import require
from shipyard.features.offline.engine import ROW, TS, ViewRequest
from shipyard.features.offline.scan import CREATED_TS, EVENT_TS, Scanner, connect, quote

if TYPE_CHECKING:
    from shipyard.artifacts import ArtifactStore

_session: Any = None
_lock = threading.Lock()


def spark_session() -> Any:
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
                .getOrCreate()
            )
        return _session


class SparkEngine:
    name = "spark"

    def __init__(self, artifacts: ArtifactStore | None, log_prefix: str = "features/offline") -> None:
        self.artifacts = artifacts
        self.log_prefix = log_prefix

    def _view_table(self, req: ViewRequest) -> pa.Table:
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

    def point_in_time_join(self, entity: pa.Table, requests: list[ViewRequest]) -> pa.Table:
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        spark = spark_session()
        ts_us = entity.column(TS).cast(pa.int64())
        ent = entity.set_column(entity.schema.get_field_index(TS), TS, ts_us)
        result = spark.createDataFrame(ent.to_pandas())
        base = result.select(ROW)
        for req in requests:
            keys = req.view.join_keys
            view_table = self._view_table(req)
            view_df = spark.createDataFrame(view_table.to_pandas(), schema=_schema(view_table))
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
                micros = int(round(req.view.ttl.total_seconds() * 1_000_000))
                keep = keep & (F.col("__latest.__vts") >= F.col("__t") - F.lit(micros))
            cols = [F.when(keep, F.col(f"__latest.{f}")).alias(out)
                    for f, out in zip(req.features, req.output_names, strict=True)]
            base = base.join(found.select(ROW, *cols), on=ROW, how="left")
        table = _collect(base.orderBy(ROW))
        return _restore_types(table, requests)


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
