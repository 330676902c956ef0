"""``drift(reference, current)``: per-column drift statistics and a verdict by effect size.

Effect sizes decide (PSI, Jensen–Shannon distance, Wasserstein normed by the reference's standard
deviation); KS and chi-square p-values are reported beside them. At production volumes a p-value
flags shifts nobody cares about (200,000 rows make KS reject a 0.1σ shift in every column), so it
never decides on its own.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from shipyard.arrow_util import decimals_as_floats
from shipyard.errors import InvalidInput
from shipyard.monitoring import stats as S
from shipyard.monitoring.baseline import (
    MISSING,
    UNSEEN,
    Baseline,
    ColumnBaseline,
    ColumnStats,
    compare,
    is_numeric,
    numeric_matrix,
)

Progress = Callable[[int, int], None]
WORKERS = max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class DriftThresholds:
    """When a column counts as drifted: any effect size at or past its threshold."""

    psi_warn: float = 0.1
    psi_drift: float = 0.25
    js: float = 0.2
    wasserstein: float = 0.3

    def level(self, psi: float | None, js: float | None, wd: float | None) -> str:
        if psi is None:
            return "no data"
        if psi >= self.psi_drift or (js is not None and js >= self.js) or (wd is not None and wd >= self.wasserstein):
            return "drift"
        return "warn" if psi >= self.psi_warn else "stable"


@dataclass
class ColumnDrift:
    column: str
    kind: str
    n_ref: int
    n_cur: int
    missing_ref: float | None
    missing_cur: float | None
    psi: float | None
    js: float | None
    ks: float | None = None
    ks_pvalue: float | None = None
    wasserstein: float | None = None
    chi2: float | None = None
    chi2_pvalue: float | None = None
    chi2_dof: int | None = None
    level: str = "stable"
    bins: list[dict[str, Any]] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        return self.level == "drift"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["drifted"] = self.drifted
        return {k: _clean(v) for k, v in out.items()}


@dataclass
class DriftReport:
    columns: list[ColumnDrift]
    thresholds: DriftThresholds
    reference_rows: int
    current_rows: int
    exact: bool  # KS/Wasserstein from the rows (True) or from a stored baseline's bins (False)

    @property
    def drifted(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    def column(self, name: str) -> ColumnDrift:
        for c in self.columns:
            if c.column == name:
                return c
        raise InvalidInput(f"no column {name!r} in this drift report", {"field": "column"})

    def summary(self) -> dict[str, Any]:
        n = len(self.columns)
        return {"columns": n, "drifted": len(self.drifted), "share_drifted": len(self.drifted) / n if n else 0.0,
                "reference_rows": self.reference_rows, "current_rows": self.current_rows,
                "statistics": "exact" if self.exact else "binned"}

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "thresholds": asdict(self.thresholds),
                "columns": [c.to_dict() for c in self.columns]}

    def to_frame(self) -> pd.DataFrame:
        rows = [{k: v for k, v in c.to_dict().items() if k != "bins"} for c in self.columns]
        return pd.DataFrame(rows)

    def sections(self) -> list[Any]:
        from shipyard.reports import Metrics, Section, Table, Text, bar_chart

        summary = self.summary()
        t = self.thresholds
        head = Section("Summary", [
            Metrics({"columns": summary["columns"], "drifted": summary["drifted"],
                     "share drifted": summary["share_drifted"], "reference rows": self.reference_rows,
                     "current rows": self.current_rows}),
            Text(f"A column drifts when PSI ≥ {t.psi_drift}, Jensen–Shannon distance (base 2) ≥ {t.js} or "
                 f"Wasserstein distance / reference std ≥ {t.wasserstein}; PSI ≥ {t.psi_warn} is a warning. "
                 "KS and chi-square p-values are shown beside them and decide nothing. PSI bins: 10 quantile "
                 f"bins of the reference, empty shares replaced by {S.PSI_EPSILON}."
                 + ("" if self.exact else " KS and Wasserstein come from 40 stored quantile bins (approximate).")),
        ])
        keep = ["column", "kind", "level", "psi", "js", "wasserstein", "ks", "ks_pvalue", "chi2_pvalue",
                "missing_ref", "missing_cur"]
        frame = self.to_frame()
        table = Section("Columns", [Table.from_frame(frame[[k for k in keep if k in frame.columns]], name="columns")])
        detail = Section("Bins", collapsed=True)
        for c in self.columns:
            if not c.bins:
                continue
            labels = [b["bin"] for b in c.bins]
            chart = bar_chart(labels, {"reference": [b["expected_pct"] for b in c.bins],
                                       "current": [b["actual_pct"] for b in c.bins]},
                              title=f"{c.column}: share per bin (PSI {_fmt(c.psi)})", width=560)
            from shipyard.reports import Chart

            detail.subsections.append(Section(c.column, [Chart(chart, c.column, c.bins)]))
        return [head, table, detail]

    def to_html(self, title: str = "Drift report") -> str:
        from shipyard.reports import render_report

        return render_report(title, self.sections(), meta=self.summary())

    def save_html(self, path: str | Path, title: str = "Drift report") -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(self.to_html(title), encoding="utf-8")
        return out

    def save_json(self, path: str | Path) -> Path:
        from shipyard.reports import dumps_json

        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(dumps_json(self.to_dict()), encoding="utf-8")
        return out


TableSource: TypeAlias = "pd.DataFrame | str | Path"
"""A table: a DataFrame, a Parquet or CSV file, or a folder of Parquet files."""


def read_table(source: TableSource, field_name: str) -> pd.DataFrame:
    """A DataFrame from a DataFrame, a Parquet/CSV path or a folder of Parquet files."""
    if isinstance(source, pd.DataFrame):
        return decimals_as_floats(source)
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.exists():
            raise InvalidInput(f"{field_name} {str(source)!r} does not exist; give a Parquet or CSV file",
                               {"field": field_name})
        suffix = path.suffix.lower()
        if path.is_dir() or suffix in (".parquet", ".pq"):
            return decimals_as_floats(pd.read_parquet(path))
        if suffix in (".csv", ".txt", ".gz"):
            return pd.read_csv(path)
        raise InvalidInput(f"{field_name} {str(source)!r}: only .parquet and .csv files are read",
                           {"field": field_name})
    raise InvalidInput(f"{field_name} must be a DataFrame or a file path, got {type(source).__name__}",
                       {"field": field_name})


def drift(reference: TableSource | Baseline, current: TableSource, *, columns: Sequence[str] | None = None, bins: int = S.DEFAULT_BINS,
          eps: float = S.PSI_EPSILON, thresholds: DriftThresholds | None = None,
          progress: Progress | None = None) -> DriftReport:
    """Drift of every column of ``current`` against ``reference``.

    ``reference`` is a DataFrame, a file, or a stored :class:`Baseline` (then KS and Wasserstein
    come from its bins); ``current`` a DataFrame or a file. ``columns`` limits the comparison.
    """
    thresholds = thresholds or DriftThresholds()
    cur = read_table(current, "current")
    if isinstance(reference, Baseline):
        base, ref = reference, None
    else:
        ref = read_table(reference, "reference")
        names = list(columns) if columns is not None else [str(c) for c in ref.columns if c in cur.columns]
        base = Baseline.from_frame(ref, columns=names, bins=bins)
    names = list(columns) if columns is not None else [c for c in base.columns if c in cur.columns]
    unknown = [c for c in names if c not in base.columns]
    absent = [c for c in names if c not in cur.columns]
    if unknown or absent:
        which, where = (unknown, "reference") if unknown else (absent, "current")
        raise InvalidInput(f"column(s) {which} are not in the {where}; choose columns both sides have",
                           {"field": "columns", "columns": which})
    if not names:
        raise InvalidInput("reference and current share no column; check the files", {"field": "columns"})
    if len(cur) == 0:
        raise InvalidInput("the current data has no rows", {"field": "current"})
    total = len(names)
    done = 0
    out: dict[str, ColumnDrift] = {}
    numeric = [c for c in names if base.columns[c].kind == "numeric"]
    categorical = [c for c in names if base.columns[c].kind == "categorical"]
    if numeric:
        cur_m = numeric_matrix(cur, numeric) if all(is_numeric(cur[c]) for c in numeric) else _coerce(cur, numeric)
        for j, name in enumerate(numeric):
            st = ColumnStats.empty(name, base.columns[name])
            st.add_numeric(cur_m[:, j], base.columns[name])
            out[name] = _from_compare(base.columns[name], st, eps, thresholds)
        if ref is not None:
            ref_m = numeric_matrix(ref, numeric)
            # groups of columns sorted on every core: numpy's sorts and sums release the GIL
            step = max(1, min(16, len(numeric) // WORKERS or 1))
            starts = list(range(0, len(numeric), step))
            with ThreadPoolExecutor(max_workers=WORKERS) as pool:
                results = pool.map(lambda s0: S.ks_wasserstein(ref_m[:, s0:s0 + step], cur_m[:, s0:s0 + step]), starts)
                for start, (ks, wd, n1, n2) in zip(starts, results, strict=True):
                    for j, name in enumerate(numeric[start:start + step]):
                        cd = out[name]
                        cd.ks = _f(ks[j])
                        small = max(int(n1[j]), int(n2[j])) <= S.KS_EXACT_MAX_N
                        a, b = (ref_m[:, start + j], cur_m[:, start + j]) if small else (None, None)
                        cd.ks_pvalue = _f(S.ks_pvalue(ks[j], int(n1[j]), int(n2[j]),
                                                      a[~np.isnan(a)] if a is not None else None,
                                                      b[~np.isnan(b)] if b is not None else None))
                        cd.wasserstein = _f(S.wasserstein_norm(wd[j], base.columns[name].std or 0.0))
                        cd.level = thresholds.level(cd.psi, cd.js, cd.wasserstein)
                    done += len(numeric[start:start + step])
                    if progress:
                        progress(done, total)
        else:
            done += len(numeric)
    for name in categorical:
        b = base.columns[name]
        st = ColumnStats.empty(name, b)
        st.add_categorical(cur[name], b)
        cd = _from_compare(b, st, eps, thresholds)
        if ref is not None:
            cats, rc, cc = S.category_counts(ref[name].tolist(), cur[name].tolist())
            cd.chi2, cd.chi2_pvalue, cd.chi2_dof = S.chi2_contingency(rc, cc)
        out[name] = cd
        done += 1
        if progress:
            progress(done, total)
    if progress and ref is None:
        progress(total, total)
    return DriftReport([out[c] for c in names], thresholds, base.rows, len(cur), ref is not None)


def _coerce(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    bad = []
    out = np.empty((len(frame), len(columns)))
    for j, c in enumerate(columns):
        try:
            out[:, j] = pd.to_numeric(frame[c], errors="raise").to_numpy(dtype=float, na_value=np.nan)
        except (TypeError, ValueError):
            bad.append(c)
    if bad:
        raise InvalidInput(f"column(s) {bad} are numeric in the reference but not in the current data; fix "
                           "their type or compare them as categories", {"field": "columns", "columns": bad})
    return out


def _from_compare(base: ColumnBaseline, st: ColumnStats, eps: float, thresholds: DriftThresholds) -> ColumnDrift:
    r = compare(base, st, eps)
    cd = ColumnDrift(base.name, base.kind, base.n, st.n, r["missing_ref"], r["missing_cur"], r["psi"], r["js"],
                     ks=r.get("ks"), wasserstein=r.get("wasserstein"), chi2=r.get("chi2"),
                     chi2_pvalue=r.get("chi2_pvalue"), chi2_dof=r.get("chi2_dof"))
    cd.level = thresholds.level(cd.psi, cd.js, cd.wasserstein if base.kind == "numeric" else None)
    cd.bins = bin_rows(base, st, eps)
    return cd


def bin_rows(base: ColumnBaseline, st: ColumnStats, eps: float = S.PSI_EPSILON) -> list[dict[str, Any]]:
    """The PSI table of one column: bin, counts and shares on both sides, PSI term."""
    if st.counts is None or st.n == 0:
        return []
    labels = base.bin_labels()
    e = list(base.counts)
    a = list(st.counts[: len(e)])
    if base.kind == "categorical" and st.counts[-1]:
        labels, e, a = [*labels, UNSEEN], [*e, 0], [*a, st.counts[-1]]
    if base.missing or st.missing:
        labels, e, a = [*labels, MISSING], [*e, base.missing], [*a, st.missing]
    terms = S.psi_terms(np.asarray(e, float), np.asarray(a, float), eps)
    return [{"bin": lab, "expected_count": int(ec), "actual_count": int(ac),
             "expected_pct": ec / base.n if base.n else 0.0, "actual_pct": ac / st.n if st.n else 0.0,
             "psi": float(t)} for lab, ec, ac, t in zip(labels, e, a, terms, strict=True)]


def _f(v: Any) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.4f}"
