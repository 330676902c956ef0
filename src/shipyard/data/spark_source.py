"""Spark sources: Spark or Hive tables and Spark SQL, read through a local (or configured) session.

Spec::

    {"master": "local[2]",                        # default; any Spark master URL
     "conf": {"spark.sql.warehouse.dir": "/data/warehouse"},
     "hive": true,                                # enableHiveSupport (needs a Hive metastore or Derby)
     "secrets": {"spark.hadoop.fs.s3a.secret.key": "s3_secret"}}   # conf values from secrets

A dataset names ``{"table": "db.table"}`` or ``{"query": "SELECT ..."}``. When a session is already
active in the process (a notebook, the offline engine) it is used as is. The result is collected as
Arrow and handed on in chunks.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa

from shipyard.data.sources import ConnectionTest, Masker, check_secret_refs, timed_test
from shipyard.errors import InvalidInput, StoreUnavailable, require
from shipyard.secrets import SecretValue

_lock = threading.Lock()


def validate(spec: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(spec) - {"master", "conf", "hive", "secrets"}
    if unknown:
        raise InvalidInput(f"spark source: unknown option(s) {sorted(unknown)}; use master, conf, hive, secrets",
                           {"field": sorted(unknown)[0]})
    conf = spec.get("conf") or {}
    if not isinstance(conf, Mapping):
        raise InvalidInput("conf must be a mapping of Spark settings", {"field": "conf"})
    secret_like = [k for k in conf if any(w in k.lower() for w in ("secret", "password", "token"))]
    if secret_like:
        raise InvalidInput(
            f"conf.{secret_like[0]} looks like a credential; store it with `shipyard secrets set NAME` and give "
            f"secrets: {{'{secret_like[0]}': 'NAME'}}",
            {"field": f"conf.{secret_like[0]}"},
        )
    return {"master": str(spec.get("master") or "local[2]"), "conf": {str(k): str(v) for k, v in conf.items()},
            "hive": bool(spec.get("hive", False)), "secrets": check_secret_refs(spec, None)}


def _session(spec: Mapping[str, Any], secrets: dict[str, SecretValue]) -> Any:
    require("pyspark", "spark")
    from pyspark.sql import SparkSession

    with _lock:
        active = SparkSession.getActiveSession()
        if active is not None:
            return active
        builder = (SparkSession.builder.master(str(spec.get("master") or "local[2]")).appName("shipyard-data")
                   .config("spark.ui.enabled", "false").config("spark.sql.session.timeZone", "UTC")
                   .config("spark.sql.execution.arrow.pyspark.enabled", "true"))
        for key, value in (spec.get("conf") or {}).items():
            builder = builder.config(key, value)
        for key, value in secrets.items():
            builder = builder.config(key, value.reveal())
        if spec.get("hive"):
            builder = builder.enableHiveSupport()
        return builder.getOrCreate()


def _relation(what: Mapping[str, Any]) -> tuple[str, str]:
    query, table = what.get("query"), what.get("table")
    if bool(query) == bool(table):
        raise InvalidInput("a Spark dataset needs exactly one of query or table", {"field": "query"})
    return ("table", str(table)) if table else ("query", str(query))


class SparkDataSource:
    def __init__(self, spec: Mapping[str, Any], secrets: dict[str, SecretValue], mask: Masker) -> None:
        self.spec = dict(spec)
        self.secrets = secrets
        self.mask = mask

    def _frame(self, what: Mapping[str, Any]) -> Any:
        kind, text = _relation(what)
        spark = _session(self.spec, self.secrets)
        try:
            return spark.table(text) if kind == "table" else spark.sql(text)
        except Exception as exc:  # noqa: BLE001 - Spark raises its own AnalysisException family
            message = self.mask(str(exc)).strip().splitlines()
            raise InvalidInput(f"Spark could not resolve the {kind}: {message[0] if message else exc}",
                               {"field": kind}) from None

    def test(self) -> ConnectionTest:
        def probe() -> dict[str, Any]:
            spark = _session(self.spec, self.secrets)
            spark.sql("SELECT 1").collect()
            return {"spark_version": spark.version, "master": spark.sparkContext.master}

        return timed_test(probe, self.mask, f"Spark ({self.spec.get('master') or 'local[2]'})")

    def count_rows(self, what: Mapping[str, Any]) -> int | None:
        return int(self._frame(what).count())

    def read_batches(self, what: Mapping[str, Any], chunk_rows: int, limit: int | None = None) -> Iterator[pa.Table]:
        frame = self._frame(what)
        if limit is not None:
            frame = frame.limit(limit)
        try:
            table = frame.toArrow()
        except Exception as exc:  # noqa: BLE001
            raise StoreUnavailable(f"Spark failed while reading: {self.mask(str(exc)).splitlines()[0]}",
                                   {"field": "source"}) from None
        for start in range(0, max(table.num_rows, 1), chunk_rows):
            yield table.slice(start, chunk_rows)

    def close(self) -> None:
        return None
