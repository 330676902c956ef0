"""Helpers: write prediction-log files with the serving subsystem's own writer."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from shipyard.serving.prediction_log import PredictionLog

DECISIONS = ("approve", "review", "reject")


def day_ms(day: str, hour: float = 12.0) -> int:
    start = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
    return int(start.timestamp() * 1000 + hour * 3_600_000)


def frame(n: int, seed: int = 0, shift: float = 0.0) -> pd.DataFrame:
    """Inputs x1 (normal), x2 (category), x3 (uniform) and the outputs pd and decision."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(shift, 1.0, n)
    x3 = rng.uniform(0, 10, n)
    pd_ = 1 / (1 + np.exp(-(x1 - 1.5)))
    decision = np.where(pd_ > 0.5, "reject", np.where(pd_ > 0.3, "review", "approve"))
    return pd.DataFrame({"x1": x1, "x2": rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]), "x3": x3,
                         "pd": pd_, "decision": decision})


def write_day(ws: Any, scene: str, day: str, data: pd.DataFrame, *, version: int = 1, arm: str = "control",
              prefix: str = "r", drop: tuple[str, ...] = (), layout: str = "typed") -> list[str]:
    """One logged request per row of ``data`` spread over the day; returns the request ids.
    ``layout="json"`` writes the file layout of logs written before typed columns."""
    log: Any = PredictionLog(ws.artifacts, flush_interval=3600) if layout == "typed" else _Legacy(ws, scene, day)
    ids = []
    n = len(data)
    inputs = [c for c in data.columns if c not in ("pd", "decision") and c not in drop]
    for i, row in enumerate(data.to_dict(orient="records")):
        rid = f"{prefix}{i}"
        ids.append(rid)
        log.submit({
            "ts": day_ms(day, 24 * i / max(n, 1)), "request_id": rid, "scene": scene, "version": version,
            "arm": arm, "kind": "live", "inputs": [{"id": i}],
            "features": [{k: (None if isinstance(row[k], float) and np.isnan(row[k]) else row[k]) for k in inputs}],
            "outputs": [{"pd": row["pd"], "decision": row["decision"]}], "models": None,
            "latency_ms": 2.0 + (i % 10), "features_ms": 0.5, "model_ms": 1.0, "fallback": i % 50 == 0,
            "error": None})
    log.close()
    return ids


class _Legacy:
    """Collects records and writes them as one file of the older layout (JSON text per request)."""

    def __init__(self, ws: Any, scene: str, day: str) -> None:
        self.ws, self.scene, self.day, self.records = ws, scene, day, []

    def submit(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def close(self) -> None:
        import io

        import pyarrow.parquet as pq

        from shipyard.monitoring.logread import scene_dir
        from shipyard.serving.prediction_log import legacy_table

        sink = io.BytesIO()
        pq.write_table(legacy_table(self.records), sink)
        self.ws.artifacts.put_bytes(f"{scene_dir(self.scene)}/date={self.day}/part-0-legacy.parquet", sink.getvalue())
