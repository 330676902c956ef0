"""The daily report's built-in metrics, written as plugins with the same two functions as anyone's.

volume · decisions · score · psi · distribution · iv (once labels exist). They read the day's
one-pass statistics (``day_log.stats``), so they never load the day's rows — except ``iv``, which
reads the labelled rows' inputs.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from shipyard.monitoring import stats as S
from shipyard.monitoring.baseline import compare
from shipyard.monitoring.drift import DriftThresholds, bin_rows
from shipyard.monitoring.plugin import Plugin
from shipyard.reports import Chart, Metrics, Table, Text, bar_chart

THRESHOLDS = DriftThresholds()


def _settings(day_log: Any) -> Any:
    return getattr(day_log, "settings", None) or SimpleNamespace(score=None, decision=None, approve=())


# -- volume --------------------------------------------------------------------------------------
def volume_calculate(history: pd.DataFrame, day_log: Any, bins: pd.DataFrame) -> tuple[Any, dict[str, Any]]:
    s = day_log.stats
    recent = history["rows"].dropna().tail(7) if "rows" in history.columns else pd.Series(dtype=float)
    mean7 = float(recent.mean()) if len(recent) else None
    display = {"by_hour": list(s.by_hour), "by_version": dict(s.by_version), "by_arm": dict(s.by_arm),
               "headline": {"rows": s.rows, "requests": s.requests, "fallbacks": s.fallbacks,
                            "previous 7-day mean rows": mean7}}
    return display, {"rows": s.rows, "requests": s.requests, "fallbacks": s.fallbacks,
                     "fallback_rate": s.fallbacks / s.rows if s.rows else None,
                     "change_vs_7d": (s.rows / mean7 - 1.0) if mean7 else None}


def volume_display(d: dict[str, Any]) -> list[Any]:
    hours = [f"{h:02d}" for h in range(24)]
    out: list[Any] = [Metrics(d["headline"]),
                      Chart(bar_chart(hours, d["by_hour"], title="Records per hour (UTC)", width=640),
                            "records per hour", {"hour": hours, "rows": d["by_hour"]})]
    rows = [{"by": "version", "value": k, "rows": v} for k, v in sorted(d["by_version"].items())]
    rows += [{"by": "arm", "value": k, "rows": v} for k, v in sorted(d["by_arm"].items())]
    if rows:
        out.append(Table.from_records(rows, title="By version and arm", name="volume_by"))
    return out


# -- decisions -----------------------------------------------------------------------------------
def decisions_calculate(history: pd.DataFrame, day_log: Any, bins: pd.DataFrame) -> tuple[Any, dict[str, Any]]:
    cfg = _settings(day_log)
    counts = day_log.stats.decisions
    total = sum(counts.values())
    frame = pd.DataFrame([{"decision": k, "count": v, "share": v / total} for k, v in
                          sorted(counts.items(), key=lambda kv: -kv[1])], columns=["decision", "count", "share"])
    approved = sum(v for k, v in counts.items() if k in set(cfg.approve))
    return frame, {"decided": total, "approval_rate": approved / total if total else None}


def decisions_display(frame: pd.DataFrame) -> list[Any]:
    if frame.empty:
        return [Text("No decision output in the log for this day (set the scene's decision output).")]
    return [Table.from_frame(frame, name="decisions"),
            Chart(bar_chart(frame["decision"].tolist(), frame["count"].tolist(), title="Decisions"),
                  "decisions", frame)]


# -- score ---------------------------------------------------------------------------------------
def score_calculate(history: pd.DataFrame, day_log: Any, bins: pd.DataFrame) -> tuple[Any, dict[str, Any]]:
    cfg = _settings(day_log)
    st = day_log.stats.columns.get(cfg.score) if cfg.score else None
    base = day_log.baseline.columns.get(cfg.score) if day_log.baseline is not None and cfg.score else None
    if st is None:
        return {"score": cfg.score, "bins": []}, {}
    out: dict[str, Any] = {"mean": st.mean, "std": st.std, "missing_rate": st.missing_rate, "min": st.min,
                           "max": st.max}
    rows: list[dict[str, Any]] = []
    if base is not None and st.present:
        r = compare(base, st)
        out.update(psi=r["psi"], js=r["js"], wasserstein=r["wasserstein"])
        rows = bin_rows(base, st)
    return {"score": cfg.score, "bins": rows, "stats": out}, out


def score_display(d: dict[str, Any]) -> list[Any]:
    if not d.get("stats"):
        return [Text(f"No score output {d.get('score')!r} in the log for this day.")]
    out: list[Any] = [Metrics({k: v for k, v in d["stats"].items()}, title=f"score: {d['score']}")]
    if d["bins"]:
        labels = [b["bin"] for b in d["bins"]]
        out.append(Chart(bar_chart(labels, {"baseline": [b["expected_pct"] for b in d["bins"]],
                                            "day": [b["actual_pct"] for b in d["bins"]]},
                                   title=f"Score distribution (PSI {d['stats'].get('psi', 0):.4f})", width=640),
                         "score bins", d["bins"]))
    return out


# -- psi of every input --------------------------------------------------------------------------
def psi_calculate(history: pd.DataFrame, day_log: Any, bins: pd.DataFrame) -> tuple[Any, dict[str, Any]]:
    cfg = _settings(day_log)
    baseline = day_log.baseline
    rows = []
    if baseline is not None:
        for name, base in baseline.columns.items():
            if name == cfg.score or name not in day_log.stats.columns:
                continue
            r = compare(base, day_log.stats.columns[name])
            level = THRESHOLDS.level(r["psi"], r["js"], r["wasserstein"] if base.kind == "numeric" else None)
            rows.append({"column": name, "kind": base.kind, "psi": r["psi"], "js": r["js"], "ks": r["ks"],
                         "wasserstein": r["wasserstein"], "level": level})
    frame = pd.DataFrame(rows, columns=["column", "kind", "psi", "js", "ks", "wasserstein", "level"])
    frame = frame.sort_values("psi", ascending=False, na_position="last").reset_index(drop=True)
    psi = frame["psi"].dropna()
    return frame, {"max_psi": float(psi.max()) if len(psi) else None,
                   "mean_psi": float(psi.mean()) if len(psi) else None,
                   "drifted": int((frame["level"] == "drift").sum()),
                   "warned": int((frame["level"] == "warn").sum())}


def psi_display(frame: pd.DataFrame) -> list[Any]:
    if frame.empty:
        return [Text("No baseline: set one for the scene to see PSI of its inputs.")]
    return [Text(f"PSI on 10 quantile bins of the baseline (empty shares {S.PSI_EPSILON}); Jensen–Shannon distance "
                 "base 2; KS and Wasserstein (÷ baseline std) from 40 stored quantile bins. A column drifts at "
                 f"PSI ≥ {THRESHOLDS.psi_drift}, JS ≥ {THRESHOLDS.js} or Wasserstein ≥ {THRESHOLDS.wasserstein}."),
            Table.from_frame(frame, name="psi"),
            Chart(bar_chart(frame["column"].tolist()[:40], frame["psi"].fillna(0).tolist()[:40],
                            title="PSI by input (largest first)", width=640), "psi", frame)]


# -- distribution: missing rates and summary statistics -------------------------------------------
def distribution_calculate(history: pd.DataFrame, day_log: Any, bins: pd.DataFrame) -> tuple[Any, dict[str, Any]]:
    baseline = day_log.baseline
    rows = []
    for name, st in day_log.stats.columns.items():
        base = baseline.columns.get(name) if baseline is not None else None
        row: dict[str, Any] = {"column": name, "kind": st.kind, "rows": st.n, "missing_rate": st.missing_rate,
                               "missing_rate_baseline": (base.missing / base.n) if base is not None and base.n else None}
        if st.kind == "numeric":
            row.update(mean=st.mean, mean_baseline=base.mean if base else None, std=st.std,
                       std_baseline=base.std if base else None, min=st.min, max=st.max)
        else:
            top = sorted(st.top.items(), key=lambda kv: -kv[1])[:3]
            row.update(top=", ".join(f"{k} ({v})" for k, v in top), distinct=len(st.top))
        rows.append(row)
    frame = pd.DataFrame(rows)
    rates = frame["missing_rate"].dropna() if "missing_rate" in frame.columns else pd.Series(dtype=float)
    return frame, {"max_missing_rate": float(rates.max()) if len(rates) else None,
                   "all_missing_columns": int((rates >= 1.0).sum())}


def distribution_display(frame: pd.DataFrame) -> list[Any]:
    if frame.empty:
        return [Text("No columns in the log for this day.")]
    return [Table.from_frame(frame, name="distribution")]


# -- iv once labels exist -------------------------------------------------------------------------
def iv_calculate(history: pd.DataFrame, day_log: Any, bins: pd.DataFrame) -> tuple[Any, dict[str, Any]]:
    labels = day_log.labels
    baseline = day_log.baseline
    if labels is None or labels.empty or baseline is None:
        return pd.DataFrame(columns=["column", "iv"]), {"labelled": 0 if labels is None else len(labels)}
    cols = [n for n, b in baseline.columns.items() if b.kind == "numeric"]
    frame = day_log.frame(cols)
    joined = frame.merge(labels[["request_id", "row", "label"]], on=["request_id", "row"], how="inner")
    y = joined["label"].to_numpy(dtype=float)
    rows = []
    if len(joined) and 0 < y.sum() < len(y):
        for name in cols:
            base = baseline.columns[name]
            x = joined[name].to_numpy(dtype=float)
            idx = np.where(np.isnan(x), len(base.edges) + 1, np.searchsorted(np.asarray(base.edges), x, side="left"))
            bad = np.bincount(idx, weights=y, minlength=len(base.edges) + 2)
            good = np.bincount(idx, weights=1 - y, minlength=len(base.edges) + 2)
            b, g = np.where(bad > 0, bad / bad.sum(), S.PSI_EPSILON), np.where(good > 0, good / good.sum(), S.PSI_EPSILON)
            keep = (bad + good) > 0
            rows.append({"column": name, "iv": float(np.sum(((g - b) * np.log(g / b))[keep]))})
    out = pd.DataFrame(rows, columns=["column", "iv"]).sort_values("iv", ascending=False).reset_index(drop=True)
    return out, {"labelled": len(joined), "max_iv": float(out["iv"].max()) if len(out) else None}


def iv_display(frame: pd.DataFrame) -> list[Any]:
    if frame.empty:
        return [Text("No labels matched to this day's requests yet; IV appears once labels are ingested.")]
    return [Text("Information value of each input on the labelled requests, on the baseline's bins "
                 "(empty shares 1e-4)."), Table.from_frame(frame, name="iv")]


BUILTIN: dict[str, Plugin] = {
    "volume": Plugin("volume", volume_calculate, volume_display, "Volume"),
    "decisions": Plugin("decisions", decisions_calculate, decisions_display, "Decisions"),
    "score": Plugin("score", score_calculate, score_display, "Score distribution"),
    "psi": Plugin("psi", psi_calculate, psi_display, "PSI of inputs"),
    "distribution": Plugin("distribution", distribution_calculate, distribution_display,
                           "Missing rates and summary statistics"),
    "iv": Plugin("iv", iv_calculate, iv_display, "Information value (labelled requests)"),
}
