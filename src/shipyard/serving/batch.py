"""Batch scoring over Parquet or CSV files, in chunks, with the same code as online serving.

A model is scored through ``ServedModel.predict`` (the same validation and fast path as
``/v1/models/...``); a scene through its compiled plan (the same steps as ``/v1/scenes/...``) for
one arm, ``control`` by default. ``spark_udf`` wraps a saved model as a pandas UDF for Spark.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from shipyard.arrow_util import table_from_pandas
from shipyard.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from pyspark.sql import Column

    from shipyard.models.loaded import LoadedModel
    from shipyard.serving.engine import ServingEngine

Progress = Callable[[int], None]


def _chunks(path: Path, chunk_size: int) -> Iterator[pd.DataFrame]:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_size):
            yield batch.to_pandas()
    elif suffix in (".csv", ".txt"):
        yield from pd.read_csv(path, chunksize=chunk_size, keep_default_na=True)
    else:
        raise InvalidInput(f"cannot read {path.name!r}: use a .parquet or .csv file", {"field": "input"})


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    records = frame.to_dict(orient="records")
    for rec in records:
        for key, value in rec.items():
            if isinstance(value, float) and math.isnan(value):
                rec[key] = None
            elif hasattr(value, "item"):
                rec[key] = value.item()
    return records


class _Writer:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.kind = "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"
        if self.kind == "csv" and path.suffix.lower() != ".csv":
            raise InvalidInput(f"cannot write {path.name!r}: use a .parquet or .csv file", {"field": "output"})
        self._parquet: Any = None
        self._first = True

    def write(self, frame: pd.DataFrame) -> None:
        if self.kind == "csv":
            frame.to_csv(self.path, mode="w" if self._first else "a", header=self._first, index=False)
        else:
            import pyarrow.parquet as pq

            table = table_from_pandas(frame)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, table.schema)
            self._parquet.write_table(table.cast(self._parquet.schema))
        self._first = False

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()


def scorer_for(engine: ServingEngine, *, model: str | None = None, scene: str | None = None,
               arm: str = "control") -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    """A function records -> output records (model: ``prediction``; scene: its outputs)."""
    if (model is None) == (scene is None):
        raise InvalidInput("give exactly one of --model NAME@REF or --scene NAME", {"field": "model"})
    if model is not None:
        name, _, ref = model.partition("@")
        served = engine.model(name, ref or "champion")
        keep = served.names

        def score_model(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
            values = served.predict([{k: r.get(k) for k in keep} for r in records])
            return [{"prediction": v} for v in values]

        return score_model
    compiled = engine.scene(str(scene)).compiled
    if arm not in compiled.plans:
        raise NotFound(f"scene {scene!r} has no arm {arm!r}; it has {sorted(compiled.plans)}", {"field": "arm"})
    plan, inputs = compiled.plans[arm], list(compiled.spec["inputs"])

    def score_scene(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rows = [{k: r.get(k) for k in inputs if k in r} for r in records]
        compiled.check(rows)
        plan.run(rows)
        return [compiled.select(r) for r in rows]

    return score_scene


def score_file(engine: ServingEngine, input_path: str | Path, output_path: str | Path, *, model: str | None = None,
               scene: str | None = None, arm: str = "control", chunk_size: int = 10_000,
               progress: Progress | None = None) -> int:
    """Score every row of ``input_path`` into ``output_path`` (input columns + outputs); rows scored."""
    source, target = Path(input_path), Path(output_path)
    if not source.is_file():
        raise NotFound(f"input file {str(source)!r} does not exist", {"field": "input"})
    score = scorer_for(engine, model=model, scene=scene, arm=arm)
    writer = _Writer(target)
    total = 0
    try:
        for frame in _chunks(source, chunk_size):
            outputs = pd.DataFrame(score(_records(frame)), index=frame.index)
            clash = [c for c in outputs.columns if c in frame.columns]
            writer.write(pd.concat([frame, outputs.drop(columns=clash)], axis=1))
            total += len(frame)
            if progress is not None:
                progress(len(frame))
    finally:
        writer.close()
    return total


def spark_udf(model_dir: str | Path, result_type: str = "double") -> Callable[..., Column]:
    """A pandas UDF scoring a saved model on Spark: ``df.withColumn("score", udf(*cols))``.

    Each Python worker loads the model once (cached by path in this module, which workers import);
    columns are passed in the model's input order and scored as float64, like the online fast path.
    """
    from pyspark.sql.functions import pandas_udf

    path = str(model_dir)

    @pandas_udf(result_type)  # type: ignore[misc]
    def score(*columns: pd.Series) -> pd.Series:
        import numpy as np

        X = np.column_stack([c.to_numpy(dtype=np.float64) for c in columns])
        return pd.Series(np.asarray(_spark_model(path).predict_array(X), dtype=np.float64))

    return score


@functools.lru_cache(maxsize=8)
def _spark_model(path: str) -> LoadedModel:
    from shipyard.models import load_model

    return load_model(path)
