"""Data-quality profile: per-column statistics, flags, correlations and target analysis.

::

    from shipyard.data.profile import profile
    prof = profile("applications.parquet", target="bad")
    prof.write("reports/", stem="profile")        # profile.html + profile.json
    prof.columns["income"].stats["p50"]

Input: a pandas DataFrame, a pyarrow Table, or a path to CSV, Parquet or Excel (``.xlsx``, needs
the ``excel`` extra). Data are held as Arrow and processed column by column with NumPy (numeric
columns are sorted once) in a small thread pool, so a million rows by fifty columns takes seconds.

Definitions (also in ``docs/risk-metrics.md``): missing rate = nulls / rows (NaN counts as missing);
distinct excludes missing; quantiles use linear interpolation (as ``pandas.Series.quantile``);
std is the sample standard deviation (ddof = 1); IQR outliers are values outside
[Q1 − 1.5·IQR, Q3 + 1.5·IQR]; infinite values are counted and left out of moments and quantiles.
Flags: ``all_missing``, ``constant`` (≤ 1 distinct value), ``near_constant`` (top value share ≥
``near_constant``), ``high_missing`` (missing rate ≥ ``high_missing``), ``high_cardinality``
(categorical with more than ``high_cardinality`` distinct values), ``unique`` (every non-missing value
distinct, e.g. an identifier), ``has_infinite``, ``many_outliers`` (IQR outlier rate > 5 %).
Correlation: Pearson on numeric columns with pairwise-complete rows; pairs with |r| ≥
``corr_threshold`` are listed. With a binary target (1 = bad): bad rate by bin and IV per column from a
simple quantile binning (``target_bins`` bins at quantiles of the column, plus a missing bin;
categoricals use their 20 most frequent values, ``other`` and ``missing``); WOE and IV by
:func:`shipyard.risk.woe.woe_iv`, the definition the binning toolkit uses too (WOE = ln(bad% / good%);
empty cells as stated once in ``docs/risk-metrics.md``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from shipyard.arrow_util import table_from_pandas
from shipyard.data._columns import (
    ColumnProfile,
    categorical_profile,
    datetime_profile,
    numeric_profile,
    numeric_target,
    pairwise_corr,
    plain_type,
)
from shipyard.errors import InvalidInput, NotFound, require
from shipyard.risk.target import binary_target
from shipyard.risk.woe import DEFAULT_SMOOTHING

__all__ = ["ColumnProfile", "DataProfile", "load_table", "profile"]


def load_table(source: Any, *, sheet: str | int | None = None) -> pa.Table:
    """Read ``source`` (DataFrame, Arrow table, or CSV/Parquet/Excel path) into an Arrow table."""
    if isinstance(source, pa.Table):
        return source
    if isinstance(source, pd.DataFrame):
        try:
            return table_from_pandas(source)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            bad = [c for c in source.columns if source[c].dtype == object
                   and source[c].dropna().map(type).nunique() > 1]
            raise InvalidInput(
                f"column(s) {bad or '?'} mix types (e.g. numbers and strings); convert each column to one "
                f"type first ({exc})",
                {"field": bad[0] if bad else None},
            ) from exc
    path = Path(os.fspath(source))
    if not path.exists():
        raise NotFound(f"data file {str(path)!r} does not exist", {"field": "data", "path": str(path)})
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix.lower() == ".gz" else path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return pq.read_table(path)
    if suffix in (".csv", ".txt", ".tsv", ".csv.gz"):
        from pyarrow import csv

        delim = "\t" if suffix == ".tsv" else ","
        # empty cells (and NA, null, ...) are missing in text columns too, as pandas, R, Excel and
        # DuckDB read them; Arrow's default would keep them as the value ""
        return csv.read_csv(path, parse_options=csv.ParseOptions(delimiter=delim),
                            convert_options=csv.ConvertOptions(strings_can_be_null=True))
    if suffix in (".xlsx", ".xlsm", ".xls"):
        require("openpyxl", "excel")
        df = pd.read_excel(path, sheet_name=sheet if sheet is not None else 0, engine="openpyxl")
        return load_table(df)
    raise InvalidInput(
        f"cannot read {path.name!r}: unsupported extension {suffix!r}; use CSV, Parquet or Excel (.xlsx)",
        {"field": "data", "path": str(path)},
    )


@dataclass
class DataProfile:
    """The result of :func:`profile`; render with :meth:`to_html`, :meth:`to_json` or :meth:`write`."""

    n_rows: int
    columns: dict[str, ColumnProfile]
    corr_columns: list[str]
    corr: np.ndarray
    high_corr: list[dict[str, Any]]
    target: str | None = None
    target_summary: dict[str, Any] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0
    source: str = ""

    @property
    def n_columns(self) -> int:
        return len(self.columns)

    def overview(self) -> dict[str, Any]:
        total_missing = sum(c.missing for c in self.columns.values())
        kinds: dict[str, int] = {}
        for c in self.columns.values():
            kinds[c.kind] = kinds.get(c.kind, 0) + 1
        return {
            "rows": self.n_rows,
            "columns": self.n_columns,
            "missing_cells": total_missing,
            "missing_cell_rate": total_missing / max(self.n_rows * self.n_columns, 1),
            "flagged_columns": sum(1 for c in self.columns.values() if c.flags),
            **{f"{k}_columns": v for k, v in sorted(kinds.items())},
        }

    def iv_table(self) -> pd.DataFrame:
        """Columns ranked by IV (empty without a target)."""
        rows = [{"column": c.name, "iv": c.target["iv"], "bins": len(c.target["bins"])}
                for c in self.columns.values() if c.target is not None]
        return pd.DataFrame(rows, columns=["column", "iv", "bins"]).sort_values(
            "iv", ascending=False, kind="stable").reset_index(drop=True)

    def summary_table(self) -> pd.DataFrame:
        """One row per column: kind, missing rate, distinct, main stats, IV and flags."""
        rows = []
        for c in self.columns.values():
            s = c.stats
            rows.append({
                "column": c.name, "kind": c.kind, "dtype": c.dtype, "missing_rate": c.missing_rate,
                "distinct": c.distinct, "zeros": s.get("zeros"), "min": s.get("min"), "mean": s.get("mean"),
                "std": s.get("std"), "p50": s.get("p50"), "max": s.get("max"),
                "outliers_iqr": s.get("outliers_iqr"),
                "iv": c.target["iv"] if c.target else None, "flags": ", ".join(c.flags),
            })
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        from shipyard.data.profile_report import profile_report_dict

        return profile_report_dict(self)

    def to_json(self) -> str:
        from shipyard.reports import dumps_json

        return dumps_json(self.to_dict())

    def to_html(self) -> str:
        from shipyard.data.profile_report import profile_html

        return profile_html(self)

    def write(self, directory: str | os.PathLike[str], stem: str = "profile") -> dict[str, Path]:
        """Write ``<stem>.html`` and ``<stem>.json`` atomically into ``directory``."""
        from shipyard.risk.report import atomic_write_text

        d = Path(directory)
        return {"html": atomic_write_text(d / f"{stem}.html", self.to_html()),
                "json": atomic_write_text(d / f"{stem}.json", self.to_json())}


def _kind(t: pa.DataType) -> str:
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "numeric"
    if pa.types.is_temporal(t):
        return "datetime"
    if pa.types.is_null(t):
        return "null"
    return "categorical"


def _as_float(col: pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_boolean(col.type):
        col = col.cast(pa.int8())
    return col.cast(pa.float64()).to_numpy()


def profile(
    data: Any,
    *,
    target: str | None = None,
    bad: Any = None,
    columns: Sequence[str] | None = None,
    target_bins: int = 10,
    corr_threshold: float = 0.9,
    near_constant: float = 0.95,
    high_missing: float = 0.5,
    high_cardinality: int = 50,
    max_workers: int | None = None,
    sheet: str | int | None = None,
) -> DataProfile:
    """Profile every column of ``data``; see the module docstring for each definition.

    ``target`` names a binary target column (1 = bad; or two labels with ``bad`` naming the bad one);
    rows with a missing target are left out of the target analysis and counted.
    """
    t0 = time.perf_counter()
    table = load_table(data, sheet=sheet)
    names = list(columns) if columns is not None else [c for c in table.column_names if c != target]
    for c in [*names, *([target] if target else [])]:
        if c not in table.column_names:
            raise InvalidInput(
                f"column {c!r} not found; available columns: {table.column_names[:30]}", {"field": c}
            )
    n = table.num_rows
    y: np.ndarray | None = None
    keep: np.ndarray | None = None
    target_summary = None
    if target:
        ycol = table.column(target).to_pandas()
        if ycol.isna().all():
            raise InvalidInput(f"target column {target!r} is entirely missing", {"field": target})
        keep = ~ycol.isna().to_numpy()
        y = binary_target(ycol[keep], bad, field=target).astype(np.float64)
        target_summary = {"column": target, "rows": int(keep.sum()), "missing": int((~keep).sum()),
                          "bad": int(y.sum()), "bad_rate": float(y.mean()),
                          "woe": "ln(bad% / good%)", "smoothing": DEFAULT_SMOOTHING}
        if keep.all():
            keep = None

    def one(name: str) -> tuple[ColumnProfile, np.ndarray | None]:
        col = table.column(name)
        kind = _kind(col.type)
        dtype = plain_type(col.type)
        if kind in ("numeric", "boolean"):
            x = _as_float(col)
            direct = y if keep is None else None  # no missing target: bin during the one sort
            prof = numeric_profile(name, x, dtype=dtype, kind=kind, y=direct, target_bins=target_bins)
            if y is not None and keep is not None and prof.distinct > 0:
                xx = x[keep]
                fin = xx[np.isfinite(xx)]
                if len(fin):
                    prof.target = numeric_target(xx, np.sort(fin), np.isnan(xx), y, target_bins)
            return prof, (x if kind == "numeric" else None)
        if kind == "datetime":
            return datetime_profile(name, col, dtype=dtype), None
        if kind == "null":
            return ColumnProfile(name, dtype, "null", n, n, 0), None
        prof = categorical_profile(name, col, dtype=dtype, y=y if keep is None else None)
        if y is not None and keep is not None and prof.distinct > 0:
            sub = col.filter(pa.array(keep))
            prof.target = categorical_profile(name, sub, dtype=dtype, y=y).target
        return prof, None

    workers = max_workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as ex:
        results = list(ex.map(one, names))
    profiles: dict[str, ColumnProfile] = {}
    numeric_cols: list[str] = []
    numeric_arrays: list[np.ndarray] = []
    for name, (prof, x) in zip(names, results, strict=True):
        _flag(prof, near_constant, high_missing, high_cardinality)
        profiles[name] = prof
        if x is not None and prof.distinct > 1:
            numeric_cols.append(name)
            numeric_arrays.append(np.where(np.isinf(x), np.nan, x))
    if numeric_arrays:
        corr = pairwise_corr(numeric_arrays)
    else:
        corr = np.zeros((0, 0))
    pairs = []
    iu = np.triu_indices(len(numeric_cols), 1)
    for i, j in zip(*iu, strict=True):
        r = corr[i, j]
        if np.isfinite(r) and abs(r) >= corr_threshold:
            pairs.append({"column_a": numeric_cols[i], "column_b": numeric_cols[j], "corr": float(r)})
    pairs.sort(key=lambda p: -abs(p["corr"]))
    for p in pairs:
        profiles[p["column_a"]].flags.append(f"corr≥{corr_threshold:g} with {p['column_b']}")
    settings = {"target_bins": target_bins, "corr_threshold": corr_threshold, "near_constant": near_constant,
                "high_missing": high_missing, "high_cardinality": high_cardinality, "corr_method": "pearson"}
    src = "" if isinstance(data, pd.DataFrame | pa.Table) else str(data)
    return DataProfile(n, profiles, numeric_cols, corr, pairs, target, target_summary, settings,
                       time.perf_counter() - t0, src)


def _flag(p: ColumnProfile, near_constant: float, high_missing: float, high_cardinality: int) -> None:
    nonmissing = p.n - p.missing
    if nonmissing == 0:
        p.flags.append("all_missing")
        return
    if p.distinct <= 1:
        p.flags.append("constant")
    elif p.top_values and p.top_values[0]["count"] / nonmissing >= near_constant:
        p.flags.append("near_constant")
    if p.missing_rate >= high_missing:
        p.flags.append("high_missing")
    if p.kind == "categorical" and p.distinct > high_cardinality:
        p.flags.append("high_cardinality")
    if p.distinct == nonmissing and nonmissing > 1 and p.kind in ("categorical", "numeric"):
        p.flags.append("unique")
    if p.stats.get("infinite"):
        p.flags.append("has_infinite")
    if p.stats.get("outlier_rate", 0) > 0.05:
        p.flags.append("many_outliers")
