"""Model report: every metric of :mod:`shipyard.risk.metrics` over train/test/out-of-time sets.

``ModelReport`` computes the numbers once and renders them as a self-contained HTML page and as a
JSON twin holding the same numbers::

    rep = ModelReport.from_frames(train, target="bad", score="pd", test=test, oot=oot)
    rep.write("reports/")        # report.html + report.json
    rep.summary["test"]["ks"]

ROC and KS curves in the outputs are thinned to at most ``MAX_CURVE_POINTS`` evenly spaced points
(the KS maximum is always kept); the full curves are on the object (``roc``, ``ks_curves``).

The first data set is the reference: score PSI and feature PSI of every other set are measured
against it, and its equal-width score bands are reused for the other sets so their band tables line
up. Decile tables use each set's own deciles.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipyard.errors import InvalidInput
from shipyard.reports import (
    Chart,
    Metrics,
    Section,
    Table,
    Text,
    bar_chart,
    dumps_json,
    line_chart,
    render_report,
    report_dict,
)
from shipyard.risk import metrics as M

__all__ = ["ModelReport", "atomic_write_text"]


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and an atomic rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def _flip_table(df: pd.DataFrame, cols: Sequence[str], swap: tuple[str, str] | None = None) -> pd.DataFrame:
    out = df.copy()
    for c in cols:
        out[c] = -out[c]
    if swap:
        a, b = swap
        out[a], out[b] = out[b].copy(), out[a].copy()
    return out


#: Curves (ROC, KS) are thinned to at most this many points in the HTML and JSON outputs.
MAX_CURVE_POINTS = 1000


def _thin(df: pd.DataFrame, max_points: int = MAX_CURVE_POINTS, keep: int | None = None) -> pd.DataFrame:
    """Evenly spaced rows (first, last and ``keep`` always included) so reports stay small."""
    if len(df) <= max_points:
        return df
    idx = np.unique(np.r_[np.linspace(0, len(df) - 1, max_points).round().astype(int), [] if keep is None
                          else [keep]])
    return df.iloc[idx]


class ModelReport:
    """Classification report for a risk score over one or more named data sets.

    ``datasets`` maps a name (``train``, ``test``, ``oot`` …) to ``(y, score)`` with y binary
    (1 = bad) and, by default, higher score = riskier. Set ``higher_is_bad=False`` for scores that
    grow with creditworthiness (scorecard points): metrics are then computed on the negated score and
    every threshold is reported back on the original scale (approve when score > cutoff,
    predict bad when score ≤ cutoff).
    ``features`` optionally maps each data set name to a DataFrame of input columns for feature PSI.
    ``cutoff`` is the threshold for the confusion metrics (default: the reference set's KS score).
    ``bad`` names the target value meaning bad when it is not 0/1 or a recognised pair
    (:mod:`shipyard.risk.target`).
    """

    def __init__(
        self,
        datasets: Mapping[str, tuple[Any, Any]],
        *,
        higher_is_bad: bool = True,
        bins: int = 10,
        cutoff: float | None = None,
        features: Mapping[str, pd.DataFrame] | None = None,
        title: str = "Model report",
        model_name: str = "",
        bad: Any = None,
    ) -> None:
        if not datasets:
            raise InvalidInput("ModelReport needs at least one data set", {"field": "datasets"})
        self.title = title
        self.model_name = model_name
        self.higher_is_bad = higher_is_bad
        self.bins = bins
        sign = 1.0 if higher_is_bad else -1.0
        self._data: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, (y, s) in datasets.items():
            yy = M.to_binary_target(y, bad=bad, field=f"{name}.target")
            ss = M._score_array(s, field=f"{name}.score")
            if len(yy) != len(ss):
                raise InvalidInput(
                    f"data set {name!r}: target and score lengths differ ({len(yy)} vs {len(ss)})",
                    {"field": f"{name}.score"},
                )
            self._data[name] = (yy, ss)
        self.reference = next(iter(self._data))
        ref_y, ref_s = self._data[self.reference]
        self.band_edges = np.unique(np.linspace(ref_s.min(), ref_s.max(), bins + 1)[1:-1])
        self.summary: dict[str, dict[str, Any]] = {}
        self.lift: dict[str, pd.DataFrame] = {}
        self.bands: dict[str, pd.DataFrame] = {}
        self.tradeoff: dict[str, pd.DataFrame] = {}
        self.roc: dict[str, pd.DataFrame] = {}
        self.ks_curves: dict[str, pd.DataFrame] = {}
        self.confusion: dict[str, dict[str, float]] = {}
        self.score_psi: dict[str, pd.DataFrame] = {}
        risk_ref = sign * ref_s
        ks_ref = M.ks(ref_y, risk_ref)
        self.cutoff = float(cutoff) if cutoff is not None else sign * ks_ref.score
        risk_edges = np.sort(sign * self.band_edges)
        with M.shared_grouping():
            self._compute(sign, bins, risk_edges)
        self.feature_psi: pd.DataFrame | None = None
        if features:
            self.feature_psi = self._feature_psi(features, bins)

    def _compute(self, sign: float, bins: int, risk_edges: np.ndarray) -> None:
        ref_s = self._data[self.reference][1]
        for name, (y, s) in self._data.items():
            r = s if sign > 0 else -s
            summ = M.summary(y, r)
            summ["ks_score"] = sign * summ["ks_score"]
            lift = M.lift_table(y, r, bins, "quantile")
            bands = M.lift_table(y, r, risk_edges, "width")
            trade = M.approval_tradeoff(y, r, 20)
            roc = M.roc_curve(y, r)
            ksc = M.ks_curve(y, r)
            if self.higher_is_bad:
                conf = M.confusion_at(y, r, self.cutoff)
            else:  # predicted bad when score <= cutoff, i.e. risk >= -cutoff
                conf = M.confusion_at(y, r, -self.cutoff)
                conf["cutoff"] = self.cutoff
                lift = _flip_table(lift, ["min_score", "max_score"], ("min_score", "max_score"))
                bands = _flip_table(bands, ["min_score", "max_score"], ("min_score", "max_score"))
                trade = _flip_table(trade, ["cutoff"])
                roc = _flip_table(roc, ["threshold"])
                ksc = _flip_table(ksc, ["score"])
            if name != self.reference:
                self.score_psi[name] = M.psi_table(ref_s, s, bins)
                summ["psi_vs_" + self.reference] = float(self.score_psi[name]["psi"].sum())
            self.summary[name] = summ
            self.lift[name], self.bands[name], self.tradeoff[name] = lift, bands, trade
            self.roc[name], self.ks_curves[name], self.confusion[name] = roc, ksc, conf

    # ----------------------------------------------------------------------------- construction
    @classmethod
    def from_frames(
        cls,
        train: pd.DataFrame,
        *,
        target: str,
        score: str,
        test: pd.DataFrame | None = None,
        oot: pd.DataFrame | None = None,
        bad: Any = None,
        feature_columns: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> ModelReport:
        """Build from DataFrames holding the target and score columns (test/oot optional)."""
        frames = {"train": train, "test": test, "oot": oot}
        datasets: dict[str, tuple[Any, Any]] = {}
        feats: dict[str, pd.DataFrame] = {}
        for name, df in frames.items():
            if df is None:
                continue
            for col in (target, score):
                if col not in df.columns:
                    raise InvalidInput(
                        f"column {col!r} not found in the {name} data; available: {list(df.columns)[:20]}",
                        {"field": col, "dataset": name},
                    )
            datasets[name] = (M.to_binary_target(df[target], bad=bad, field=target), df[score])
            if feature_columns:
                feats[name] = df[list(feature_columns)]
        return cls(datasets, features=feats or None, **kwargs)

    def _feature_psi(self, features: Mapping[str, pd.DataFrame], bins: int) -> pd.DataFrame:
        ref = features.get(self.reference)
        if ref is None:
            raise InvalidInput(
                f"features must include the reference data set {self.reference!r}", {"field": "features"}
            )
        rows = []
        for col in ref.columns:
            row: dict[str, Any] = {"feature": col}
            for name, df in features.items():
                if name == self.reference:
                    continue
                if col not in df.columns:
                    raise InvalidInput(f"feature {col!r} missing from data set {name!r}", {"field": col})
                row[f"psi_{name}"] = M.psi(ref[col], df[col], bins)
            rows.append(row)
        return pd.DataFrame(rows)

    # ---------------------------------------------------------------------------------- output
    def _sections(self) -> list[Section]:
        names = list(self._data)
        summary_df = pd.DataFrame([{"dataset": n, **self.summary[n]} for n in names])
        ref = self.reference
        head = Section("Summary", [
            Text(
                "Target: 1 = bad. AUC = P(score of a bad > score of a good); Gini = 2·AUC − 1; KS = max "
                "|F_bad − F_good| over distinct scores (ties grouped). "
                + ("Higher score = riskier." if self.higher_is_bad else
                   "Higher score = safer (metrics computed on the negated score).")
            ),
            Metrics({k: self.summary[ref][k] for k in ("auc", "gini", "ks", "ks_score", "bad_rate", "n")},
                    title=f"Reference set: {ref}"),
            Table.from_frame(summary_df, "Metrics by data set", "summary"),
        ])
        rocs = {n: _thin(self.roc[n]) for n in names}
        roc = {n: (rocs[n]["fpr"], rocs[n]["tpr"]) for n in names}
        gains = {n: (np.r_[0, self.lift[n]["cum_share"]], np.r_[0, self.lift[n]["gain"]]) for n in names}
        kc = _thin(self.ks_curves[ref], keep=int(np.argmax(self.ks_curves[ref]["ks"].to_numpy())))
        curves = Section("Curves", [
            Chart(line_chart(roc, title="ROC", x_label="false-positive rate", y_label="true-positive rate",
                             diagonal=True, x_range=(0, 1), y_range=(0, 1)), "ROC curve",
                  {n: {"fpr": rocs[n]["fpr"], "tpr": rocs[n]["tpr"]} for n in names}),
            Chart(line_chart({"bad": (kc["score"], kc["cum_bad"]), "good": (kc["score"], kc["cum_good"]),
                              "KS": (kc["score"], kc["ks"])}, title=f"KS curve ({ref})",
                             x_label="score", y_label="cumulative share", y_range=(0, 1)),
                  f"KS = {self.summary[ref]['ks']:.4f} at score {self.summary[ref]['ks_score']:.6g}",
                  {"score": kc["score"], "cum_bad": kc["cum_bad"], "cum_good": kc["cum_good"]}),
            Chart(line_chart(gains, title="Gain (cumulative bads captured)", x_label="share of population",
                             y_label="share of bads", diagonal=True, x_range=(0, 1), y_range=(0, 1)),
                  "Gain curve by decile"),
            Chart(bar_chart([str(b) for b in self.lift[ref]["band"]], self.lift[ref]["lift"].to_numpy(),
                            title=f"Lift by decile ({ref})", x_label="decile (1 = riskiest)", y_label="lift",
                            line=self.lift[ref]["bad_rate"].to_numpy(), line_label="bad rate"),
                  "Lift by decile"),
        ])
        per_set = []
        for n in names:
            conf = self.confusion[n]
            per_set.append(Section(n, [
                Table.from_frame(self.lift[n], "Lift and gain by equal-frequency deciles (riskiest first)",
                                 "lift_deciles"),
                Table.from_frame(self.bands[n], f"Lift and gain by equal-width score bands (edges from {ref})",
                                 "lift_bands"),
                Table.from_frame(self.tradeoff[n], "Approval rate vs bad rate of the approved book",
                                 "approval_tradeoff"),
                Chart(line_chart({"bad rate of approved": (self.tradeoff[n]["approval_rate"],
                                                           self.tradeoff[n]["approved_bad_rate"])},
                                 title="Approval-rate trade-off", x_label="approval rate",
                                 y_label="bad rate", x_range=(0, 1)), "Approval trade-off"),
                Metrics({k: v for k, v in conf.items()}, title=f"Confusion at cut-off {conf['cutoff']:.6g}"),
            ]))
        sections = [head, curves, Section("By data set", subsections=per_set)]
        stab: list[Any] = []
        for n, t in self.score_psi.items():
            stab.append(Table.from_frame(t, f"Score PSI: {n} vs {ref} = {t['psi'].sum():.4f}", f"psi_{n}"))
            stab.append(Chart(bar_chart(list(range(1, len(t) + 1)),
                                        {ref: t["expected_pct"].to_numpy(), n: t["actual_pct"].to_numpy()},
                                        title=f"Score distribution {ref} vs {n}", x_label="bin",
                                        y_label="share"), f"Score distribution {n}"))
        if self.feature_psi is not None:
            stab.append(Table.from_frame(self.feature_psi, "Feature PSI vs reference", "feature_psi"))
        if stab:
            stab.insert(0, Text(
                f"PSI = Σ (A − E)·ln(A/E) over {self.bins} bins at quantiles of the reference set {ref}; "
                f"empty shares replaced by {M.PSI_EPSILON:g}. < 0.1 stable, 0.1–0.25 moderate, > 0.25 shifted."
            ))
            sections.append(Section("Stability (PSI)", stab))
        return sections

    def _meta(self) -> dict[str, Any]:
        return {
            "model": self.model_name or "—",
            "reference": self.reference,
            "datasets": ", ".join(self._data),
            "higher_is_bad": self.higher_is_bad,
            "cutoff": self.cutoff,
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON twin as a dict (same numbers as the HTML)."""
        return report_dict(self.title, self._sections(), meta=self._meta())

    def to_json(self) -> str:
        return dumps_json(self.to_dict())

    def to_html(self) -> str:
        return render_report(self.title, self._sections(), subtitle=self.model_name, meta=self._meta())

    def write(self, directory: str | os.PathLike[str], stem: str = "report") -> dict[str, Path]:
        """Write ``<stem>.html`` and ``<stem>.json`` atomically into ``directory``; return both paths."""
        d = Path(directory)
        return {
            "html": atomic_write_text(d / f"{stem}.html", self.to_html()),
            "json": atomic_write_text(d / f"{stem}.json", self.to_json()),
        }
