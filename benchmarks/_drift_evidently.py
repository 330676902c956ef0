"""Evidently's side of bench_drift.py, run with an interpreter that has evidently installed.

    python _drift_evidently.py REF.parquet CUR.parquet OUT.json [--no-psi]

Times ``Report([DataDriftPreset()])`` (its default tests: normed Wasserstein for numeric columns
above 1,000 rows) and ``DataDriftPreset(method="psi")``, and writes both runs' per-column values.
"""

from __future__ import annotations

import json
import sys
import time

import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset


def run(ref: pd.DataFrame, cur: pd.DataFrame, **options: object) -> tuple[float, dict[str, float]]:
    start = time.perf_counter()
    snapshot = Report([DataDriftPreset(**options)]).run(current_data=cur, reference_data=ref)
    took = time.perf_counter() - start
    values = {}
    for metric in snapshot.dict()["metrics"]:
        column = metric.get("config", {}).get("column")
        if column is not None:
            values[column] = float(metric["value"])
    return took, values


def main() -> None:
    ref, cur = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
    default_s, wasserstein = run(ref, cur)
    psi_s, psi = (float("nan"), {}) if "--no-psi" in sys.argv else run(ref, cur, method="psi")
    with open(sys.argv[3], "w") as fh:
        json.dump({"default_s": default_s, "psi_s": psi_s, "wasserstein": wasserstein, "psi": psi}, fh)


if __name__ == "__main__":
    main()
