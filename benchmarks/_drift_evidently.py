"""Evidently's side of bench_drift.py, run with an interpreter that has evidently installed.

    python _drift_evidently.py REF.parquet CUR.parquet OUT.json [--no-psi] [--repeat N]

Times ``Report([DataDriftPreset()])`` (its default tests: normed Wasserstein for numeric columns
above 1,000 rows) and ``DataDriftPreset(method="psi")`` from pandas DataFrames already in memory
(the Parquet files are read before the clock starts, as Shipyard's side gets its frames), and
writes the median wall time, every run's wall and CPU time, and the last run's per-column values.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time

import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(ref: pd.DataFrame, cur: pd.DataFrame, **options: object) -> tuple[float, float, dict[str, float]]:
    cpu, start = _cpu(), time.perf_counter()
    snapshot = Report([DataDriftPreset(**options)]).run(current_data=cur, reference_data=ref)
    took, cpu = time.perf_counter() - start, _cpu() - cpu
    values = {}
    for metric in snapshot.dict()["metrics"]:
        column = metric.get("config", {}).get("column")
        if column is not None:
            values[column] = float(metric["value"])
    return took, cpu, values


def main() -> None:
    ref, cur = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
    repeat = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 1
    default = [run(ref, cur) for _ in range(repeat)]
    psi = [] if "--no-psi" in sys.argv else [run(ref, cur, method="psi") for _ in range(repeat)]
    with open(sys.argv[3], "w") as fh:
        json.dump({"default_s": statistics.median(r[0] for r in default),
                   "default_runs": [[r[0], r[1]] for r in default],
                   "psi_s": statistics.median(r[0] for r in psi) if psi else float("nan"),
                   "psi_runs": [[r[0], r[1]] for r in psi],
                   "wasserstein": default[-1][2], "psi": psi[-1][2] if psi else {}}, fh)


if __name__ == "__main__":
    main()
