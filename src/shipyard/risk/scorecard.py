"""Scorecards: logistic regression on WOE features, scaled to points.

Scaling (odds are good:bad)::

    Factor = PDO / ln 2
    Offset = base_score - Factor * ln(base_odds)
    score  = Offset + Factor * ln((1 - p) / p)      p = P(bad)

With the model ``ln(p / (1 - p)) = b0 + sum_j b_j * WOE_j`` this gives

    score = (Offset - Factor * b0) + sum_j (-Factor * b_j * WOE_j[bin])
          = base_points + sum of the variables' bin points

so every bin of every variable has a fixed number of points and the score is their sum. With
``round_points=False`` (default) the identity above holds to floating-point precision; with
``round_points=True`` each bin's points (and the base points) are rounded to integers.
The scorecard, its bins and its scaling are one JSON spec (:meth:`Scorecard.to_spec`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from shipyard.errors import InvalidInput, MissingColumn, ShipyardError
from shipyard.risk.binning import Binner
from shipyard.risk.binning._input import as_frame, check_not_empty
from shipyard.risk.target import FrameLike, TargetLabel, ValuesLike, binary_target, resolve_bad

SPEC_FORMAT = "shipyard.scorecard"
SPEC_VERSION = 1


def scaling(pdo: float, base_score: float, base_odds: float) -> tuple[float, float]:
    """``(factor, offset)`` for points-to-double-odds ``pdo``, ``base_score`` at good:bad ``base_odds``."""
    if not pdo > 0:
        raise InvalidInput("pdo must be > 0 (points that double the good:bad odds)", {"field": "pdo"})
    if not base_odds > 0:
        raise InvalidInput("base_odds must be > 0 (good:bad odds at base_score, e.g. 50)", {"field": "base_odds"})
    factor = pdo / math.log(2.0)
    return factor, base_score - factor * math.log(base_odds)


class Scorecard(BaseEstimator):
    """Points scorecard.

    Parameters
    ----------
    binner : a ``Binner`` (fitted: used as is; unfitted: cloned and fitted in :meth:`fit`).
        Default: ``Binner()`` (optimal monotone binning).
    pdo, base_score, base_odds : scaling; see the module docstring (defaults 20, 600, 50).
    C : inverse regularisation strength of the logistic regression (default 1e6: practically none).
    round_points : round bin points to integers.
    bad : the target value meaning bad, when the target is not 0/1 or a recognised pair (good/bad,
        Y/N, yes/no, True/False); see :mod:`shipyard.risk.target`.
    bad_value : deprecated name of ``bad`` (warns; removed in the next release).

    Fitted: ``binner_``, ``intercept_``, ``coef_`` (``{variable: b}``), ``factor_``, ``offset_``,
    ``base_points_``, ``points_`` (``{variable: points per bin}``, bin layout of the binner).
    """

    def __init__(self, binner: Binner | None = None, pdo: float = 20.0, base_score: float = 600.0,
                 base_odds: float = 50.0, C: float = 1e6, max_iter: int = 1000, round_points: bool = False,
                 bad: TargetLabel | None = None, bad_value: TargetLabel | None = None) -> None:
        self.binner = binner
        self.pdo = pdo
        self.base_score = base_score
        self.base_odds = base_odds
        self.C = C
        self.max_iter = max_iter
        self.round_points = round_points
        self.bad = bad
        self.bad_value = bad_value

    def fit(self, X: FrameLike, y: ValuesLike) -> Scorecard:
        factor, offset = scaling(self.pdo, self.base_score, self.base_odds)
        df = as_frame(X)
        check_not_empty(df, "Scorecard")
        yv = binary_target(y, resolve_bad(self.bad, self.bad_value, "Scorecard"))
        if len(yv) != len(df):
            raise InvalidInput(f"X has {len(df)} rows but y has {len(yv)}; pass one target value per row",
                               {"field": "y"})
        if self.binner is not None and hasattr(self.binner, "bins_"):
            binner = self.binner
        else:
            binner = clone(self.binner) if self.binner is not None else Binner()
            binner.set_params(bad=None, bad_value=None)  # the target is already 0/1 here
            binner.fit(df, yv)
        W = _woe(binner, df)
        lr = LogisticRegression(C=self.C, max_iter=self.max_iter, tol=1e-10)
        lr.fit(W, yv)
        names = list(binner.bins_)
        self.binner_ = binner
        self.factor_, self.offset_ = factor, offset
        self.intercept_ = float(lr.intercept_[0])
        self.coef_ = {n: float(b) for n, b in zip(names, lr.coef_[0], strict=True)}
        self._set_points()
        return self

    def _set_points(self) -> None:
        base = self.offset_ - self.factor_ * self.intercept_
        pts = {n: -self.factor_ * b * self.binner_.bins_[n].woe for n, b in self.coef_.items()}
        if self.round_points:
            base = float(np.round(base))
            pts = {n: np.round(p) for n, p in pts.items()}
        self.base_points_ = float(base)
        self.points_ = {n: np.asarray(p, dtype=np.float64) for n, p in pts.items()}

    # ------------------------------------------------------------------ scoring
    @property
    def feature_names_in_(self) -> np.ndarray:
        check_is_fitted(self, "points_")
        return np.asarray(list(self.points_), dtype=object)

    def score_arrays(self, columns: Mapping[str, Any]) -> np.ndarray:
        """NumPy fast path: ``{variable: 1-D array}`` -> total points per row."""
        check_is_fitted(self, "points_")
        total: np.ndarray | None = None
        for n, pts in self.points_.items():
            if n not in columns:
                raise MissingColumn(f"column {n!r} is missing; the scorecard needs it", {"field": n})
            fb = self.binner_.bins_[n]
            part = pts[fb.bin_index(self.binner_._column_values(fb, columns[n]))]
            total = part if total is None else total + part
        if total is None:
            return np.zeros(0)
        return total + self.base_points_

    def predict_score(self, X: FrameLike) -> np.ndarray:
        """Total points of every row of ``X`` (DataFrame, dict of columns or 2-D array in variable order)."""
        names = list(self.feature_names_in_)
        df = as_frame(X, names)
        absent = [c for c in names if c not in df.columns]
        if absent:
            raise MissingColumn(f"columns {absent} are missing from X; the scorecard needs them",
                                 {"field": "X", "missing": absent})
        out = self.score_arrays({c: df[c] for c in names})
        return out if len(out) else np.full(len(df), self.base_points_)

    def proba_from_score(self, score: np.ndarray) -> np.ndarray:
        """P(bad) implied by a score: ``1 / (1 + exp((score - Offset) / Factor))``."""
        return 1.0 / (1.0 + np.exp((np.asarray(score, dtype=np.float64) - self.offset_) / self.factor_))

    def predict_proba(self, X: FrameLike) -> np.ndarray:
        """``(n, 2)`` array ``[P(good), P(bad)]`` as scikit-learn classifiers return."""
        p = self.proba_from_score(self.predict_score(X))
        return np.column_stack([1.0 - p, p])

    def points_table(self) -> pd.DataFrame:
        """One row per variable and bin (plus the base points row): label, WOE, points."""
        check_is_fitted(self, "points_")
        rows: list[dict[str, Any]] = [{"variable": "(base)", "bin": "", "woe": np.nan, "points": self.base_points_}]
        for n, pts in self.points_.items():
            fb = self.binner_.bins_[n]
            for label, w, p in zip(fb.labels(), fb.woe, pts, strict=True):
                rows.append({"variable": n, "bin": label, "woe": float(w), "points": float(p)})
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------ spec
    def to_spec(self) -> dict[str, Any]:
        check_is_fitted(self, "points_")
        return {
            "format": SPEC_FORMAT, "version": SPEC_VERSION,
            "scaling": {"pdo": float(self.pdo), "base_score": float(self.base_score),
                        "base_odds": float(self.base_odds), "factor": self.factor_, "offset": self.offset_,
                        "odds": "good:bad"},
            "round_points": bool(self.round_points),
            "intercept": self.intercept_, "coefficients": dict(self.coef_),
            "base_points": self.base_points_,
            "points": {n: [float(v) for v in p] for n, p in self.points_.items()},
            "binning": self.binner_.to_spec(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_spec())

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | str) -> Scorecard:
        if isinstance(spec, str):
            spec = json.loads(spec)
        if not isinstance(spec, Mapping) or spec.get("format") != SPEC_FORMAT:
            raise InvalidInput(f"not a scorecard spec: 'format' must be {SPEC_FORMAT!r}", {"field": "format"})
        try:
            sc = spec["scaling"]
            card = cls(pdo=float(sc["pdo"]), base_score=float(sc["base_score"]), base_odds=float(sc["base_odds"]),
                       round_points=bool(spec.get("round_points", False)))
            card.binner_ = Binner.from_spec(spec["binning"])
            card.factor_, card.offset_ = float(sc["factor"]), float(sc["offset"])
            card.intercept_ = float(spec["intercept"])
            card.coef_ = {str(k): float(v) for k, v in spec["coefficients"].items()}
            card.base_points_ = float(spec["base_points"])
            card.points_ = {str(k): np.asarray(v, dtype=np.float64) for k, v in spec["points"].items()}
        except ShipyardError:
            raise  # the binning spec's own message (input errors are also ValueError/KeyError)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"scorecard spec is malformed: {exc!r}", {"field": "spec"}) from exc
        for n, p in card.points_.items():
            if n not in card.binner_.bins_ or len(p) != card.binner_.bins_[n].n_bins:
                raise InvalidInput(f"scorecard spec: points of {n!r} do not match its bins", {"field": n})
        return card


def _woe(binner: Binner, df: pd.DataFrame) -> np.ndarray:
    cols = list(binner.bins_)
    out = np.empty((len(df), len(cols)))
    for j, c in enumerate(cols):
        fb = binner.bins_[c]
        out[:, j] = fb.woe[fb.bin_index(binner._column_values(fb, df[c]))]
    return out
