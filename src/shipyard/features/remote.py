"""Online features against a remote server: ``sy.Client(url).features`` speaks the same names.

    client.features.get_online_features({"customer_id": [1, 2]}, features=["cust_stats:amount"])
    client.features.push("cust_stats", rows)

Values come back as JSON types; timestamps as ISO 8601 strings. Server errors are raised as the
same ``ShipyardError`` classes as in-process calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import pandas as pd

    from shipyard.connection import Connection
    from shipyard.features.materialize import MaterializeResult
    from shipyard.features.protocol import EntityRows, FeatureRows, TimePoint
    from shipyard.features.push import PushResult

_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS | orjson.OPT_NAIVE_UTC


def _default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} cannot be sent as JSON")


def _rows(rows: Any) -> Any:
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # pandas
        return rows.to_dict(orient="records")
    if hasattr(rows, "to_pylist"):  # pyarrow
        return rows.to_pylist()
    return rows


def _results(found: list[dict[str, Any]]) -> list[MaterializeResult]:
    from shipyard.features.materialize import MaterializeResult

    return [MaterializeResult.from_dict(r) for r in found]


class RemoteFeatures:
    """The feature store of a server (``FeaturesAPI``), acting as the connection's token's user."""

    def __init__(self, client: Connection) -> None:
        self._client = client

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        payload = orjson.dumps(body, option=_OPTS, default=_default)
        return self._client.request("POST", path, content=payload, headers={"content-type": "application/json"})

    def get_online_features(self, entity_rows: EntityRows, features: Sequence[str] | None = None,
                            service: str | None = None, *, full_feature_names: bool = False) -> dict[str, list[Any]]:
        body: dict[str, Any] = {"entities": _rows(entity_rows), "full_feature_names": full_feature_names}
        if features is not None:
            body["features"] = list(features)
        if service is not None:
            body["service"] = service
        return self._post("/api/v1/features/online", body)["results"]

    def get_training_set(self, entity_df: pd.DataFrame, features: Sequence[str] | None = None,
                         service: str | None = None, *, timestamp_column: str | None = None,
                         full_feature_names: bool = False) -> pd.DataFrame:
        """Point-in-time correct features for every entity row, computed by the server."""
        import pandas as pd

        body: dict[str, Any] = {"entity_rows": _rows(entity_df), "timestamp_column": timestamp_column,
                                "full_feature_names": full_feature_names,
                                "features": list(features) if features is not None else None, "service": service}
        found = self._post("/api/v1/features/training-set", body)
        frame = pd.DataFrame(found["rows"], columns=found["columns"])
        for column, dtype in (found.get("dtypes") or {}).items():
            if column in frame.columns and dtype.startswith("datetime64"):
                frame[column] = pd.to_datetime(frame[column], format="ISO8601", utc="UTC" in dtype)
        return frame

    def push(self, view: str, rows: FeatureRows, *, to_offline: bool = True) -> PushResult:
        from shipyard.features.push import PushResult  # the result classes import the engines: on first use

        found = self._post("/api/v1/features/push", {"view": view, "rows": _rows(rows), "to_offline": to_offline})
        return PushResult.from_dict(found)

    def materialize(self, start: TimePoint, end: TimePoint,
                    views: Sequence[str] | None = None) -> list[MaterializeResult]:
        body = {"start": start, "end": end, "views": list(views) if views else None}
        return _results(self._post("/api/v1/features/materialize", body)["results"])

    def materialize_incremental(self, end: TimePoint | None = None, views: Sequence[str] | None = None) -> list[MaterializeResult]:
        body = {"incremental": True, "end": end, "views": list(views) if views else None}
        return _results(self._post("/api/v1/features/materialize", body)["results"])

    def compact(self, view: str | None = None, *, target_rows: int | None = None,
                grace_seconds: float | None = None) -> list[dict[str, Any]]:
        body = {"view": view, "target_rows": target_rows, "grace_seconds": grace_seconds}
        return self._post("/api/v1/features/compact", body)["results"]

    def monitor(self, views: Sequence[str] | None = None, sample: int = 100_000) -> dict[str, Any]:
        params: dict[str, Any] = {"sample": sample}
        if views:
            params["views"] = ",".join(views)
        return self._client.get("/api/v1/features/monitor", params=params)

    def skew(self, target: str, start: TimePoint | None = None, end: TimePoint | None = None) -> dict[str, Any]:
        params = {k: (v.isoformat() if hasattr(v, "isoformat") else v)
                  for k, v in (("target", target), ("start", start), ("end", end)) if v is not None}
        return self._client.get("/api/v1/features/skew", params=params)
