"""``Binner``: scikit-learn compatible binning + WOE transformer with a JSON spec."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import ClassifierTags, Tags
from sklearn.utils.validation import check_is_fitted, validate_data

from shipyard.errors import InvalidInput, InvalidType, MissingColumn, SchemaMismatch
from shipyard.risk.binning._input import (
    as_frame,
    categorical_values,
    check_dense,
    check_not_empty,
    column_kind,
    numeric_values,
)
from shipyard.risk.binning.feature import (
    SMALL_BATCH,
    BinningParams,
    FeatureBins,
    _as_str,
    counts_sorted,
    fit_categorical_groups,
    fit_numeric_cuts,
)
from shipyard.risk.target import FrameLike, TargetLabel, ValuesLike, binary_target, resolve_bad
from shipyard.risk.woe import check_sign

SPEC_FORMAT = "shipyard.binning"
SPEC_VERSION = 1
METHODS: dict[str, str] = {
    "equal_width": "equal_width", "width": "equal_width",
    "equal_freq": "equal_freq", "equal_frequency": "equal_freq", "quantile": "equal_freq",
    "tree": "tree", "dt": "tree", "cart": "tree",
    "chimerge": "chimerge", "chi": "chimerge",
    "mdlp": "mdlp", "caim": "caim", "monotonic": "monotonic", "optimal": "optimal",
}
OUTPUTS = ("woe", "index")


class Binner(TransformerMixin, BaseEstimator):
    """Bin every variable and replace values by their bin's WOE (or bin index).

    Parameters
    ----------
    method : ``optimal`` (default; max IV s.t. ``min_bin_share``, ``max_bins`` and ``monotonic``),
        ``monotonic``, ``tree`` (CART, alias ``dt``), ``chimerge`` (``chi``), ``mdlp``, ``caim``,
        ``equal_width`` or ``equal_freq`` (``quantile``). Numeric variables are first pre-binned into
        at most ``max_prebins`` quantile bins and the method runs on that count table. Categorical
        variables are ordered by bad rate (rare ones pooled) and grouped by the method
        (``optimal`` for the equal-width/frequency methods, which have no meaning for categories).
    max_bins : maximum number of regular bins per variable.
    min_bin_share : minimum share of all rows in each regular bin (not for equal-width/frequency).
    monotonic : ``auto`` (default), ``ascending``, ``descending`` or ``None`` — trend of the bad rate
        for ``optimal`` and ``monotonic``.
    chi_threshold : ChiMerge stops merging above this chi-square (3.841 = 95%, 1 d.o.f.).
    rare_share : categories rarer than this share of rows are pooled before grouping.
    categorical : columns to treat as categorical (others: by dtype).
    special_values : values that get a bin each; a list for all columns or ``{column: [values]}``.
    cuts : manual cut points ``{column: [c1, c2, ...]}`` (categorical: ``{column: [[a, b], [c]]}``)
        that replace the method for those columns.
    columns : the columns to bin (default: all columns of ``X``); ``transform`` still takes every
        column ``X`` had at fit time, like any scikit-learn transformer, and returns the binned ones.
    bad : the target value meaning bad, when the target is not 0/1 or a recognised pair
        (good/bad, Y/N, yes/no, True/False); see :mod:`shipyard.risk.target`.
    bad_value : deprecated name of ``bad`` (warns; removed in the next release).
    woe_sign : ``bad_over_good`` (default, WOE = ln(bad%/good%)) or ``good_over_bad``.
    smoothing : count used in place of an empty class in a bin (see :mod:`shipyard.risk.woe`).
    output : ``woe`` (default) or ``index`` (bin numbers, layout in :mod:`...binning.feature`).

    Fitted attributes: ``bins_`` (``{column: FeatureBins}``, in output order), ``n_features_in_``,
    ``feature_names_in_`` (when ``X`` had text column names, as in scikit-learn), ``input_columns_``
    (the names ``transform`` reads: column names, or ``x0``, ``x1``, ... for an array),
    ``total_bad_``, ``total_good_``. :meth:`merged_table` lists the categories too rare for a bin of
    their own that were merged into another bin.

    scikit-learn contract: ``sklearn.utils.estimator_checks`` passes except the checks listed in
    ``tests/risk/test_sklearn_contract.py`` with the reason each does not apply.
    """

    def __init__(
        self,
        method: str = "optimal",
        max_bins: int = 10,
        min_bin_share: float = 0.05,
        max_prebins: int = 100,
        monotonic: str | None = "auto",
        chi_threshold: float = 3.841,
        rare_share: float = 0.01,
        categorical: Sequence[str] | None = None,
        special_values: Sequence[Any] | Mapping[str, Sequence[Any]] | None = None,
        cuts: Mapping[str, Sequence[Any]] | None = None,
        columns: Sequence[str] | None = None,
        bad: TargetLabel | None = None,
        bad_value: TargetLabel | None = None,
        woe_sign: str = "bad_over_good",
        smoothing: float = 0.5,
        output: str = "woe",
    ) -> None:
        self.method = method
        self.max_bins = max_bins
        self.min_bin_share = min_bin_share
        self.max_prebins = max_prebins
        self.monotonic = monotonic
        self.chi_threshold = chi_threshold
        self.rare_share = rare_share
        self.categorical = categorical
        self.special_values = special_values
        self.cuts = cuts
        self.columns = columns
        self.bad = bad
        self.bad_value = bad_value
        self.woe_sign = woe_sign
        self.smoothing = smoothing
        self.output = output

    # ------------------------------------------------------------------ checks
    def _params(self) -> BinningParams:
        if self.method not in METHODS:
            raise InvalidInput(f"method={self.method!r} is not known; use one of {sorted(set(METHODS.values()))}",
                               {"field": "method"})
        check_sign(self.woe_sign)
        if self.output not in OUTPUTS:
            raise InvalidInput(f"output={self.output!r}; use 'woe' or 'index'", {"field": "output"})
        if not (isinstance(self.max_bins, int | np.integer) and self.max_bins >= 1):
            raise InvalidInput("max_bins must be an integer >= 1", {"field": "max_bins"})
        if not (0 <= self.min_bin_share < 0.5):
            raise InvalidInput("min_bin_share must be in [0, 0.5)", {"field": "min_bin_share"})
        if not (isinstance(self.max_prebins, int | np.integer) and self.max_prebins >= 2):
            raise InvalidInput("max_prebins must be an integer >= 2", {"field": "max_prebins"})
        if self.monotonic not in (None, "none", "auto", "ascending", "descending"):
            raise InvalidInput("monotonic must be 'auto', 'ascending', 'descending' or None",
                               {"field": "monotonic"})
        if self.smoothing <= 0:
            raise InvalidInput("smoothing must be > 0", {"field": "smoothing"})
        mono = None if self.monotonic == "none" else self.monotonic
        return BinningParams(METHODS[self.method], int(self.max_bins), float(self.min_bin_share),
                             int(self.max_prebins), mono, float(self.chi_threshold), float(self.rare_share))

    def _specials_for(self, col: str) -> list[Any]:
        sv = self.special_values
        if sv is None:
            return []
        if isinstance(sv, Mapping):
            return list(sv.get(col, []))
        return list(sv)

    # ------------------------------------------------------------------ sklearn
    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # missing values get a bin of their own
        tags.input_tags.string = True  # text columns are binned as categories
        tags.input_tags.categorical = True
        tags.target_tags.required = True
        tags.classifier_tags = ClassifierTags(multi_class=False)  # the target is binary (1 = bad)
        tags.transformer_tags.preserves_dtype = []  # always float64 (WOE or bin index)
        return tags

    def _target(self, y: ValuesLike, X_rows: int) -> np.ndarray:
        if y is None:
            raise InvalidInput("Binner requires y to be passed, but the target y is None; pass the binary "
                               "target (1 = bad)", {"field": "y"})
        yv = binary_target(y, resolve_bad(self.bad, self.bad_value, "Binner"), field="target")
        if len(yv) != X_rows:
            raise InvalidInput(f"X has {X_rows} rows but y has {len(yv)}; pass one target value per row",
                               {"field": "y"})
        return yv.astype(np.float64)

    def _validate_columns(self, X: FrameLike, reset: bool) -> None:
        """Column count and names against fit time, by scikit-learn's own rules and messages."""
        names = getattr(self, "feature_names_in_", None)
        if not reset and names is not None and isinstance(X, pd.DataFrame) and list(X.columns) == list(names):
            return  # the fit-time columns in order: what scikit-learn's check would pass, found cheaply
        try:
            validate_data(self, X if not isinstance(X, dict) else pd.DataFrame(X), reset=reset,
                          skip_check_array=True)
        except TypeError as exc:  # non-text column names mixed with text ones
            raise InvalidType(f"{exc}; give every column a text name", {"field": "X"}) from None
        except ValueError as exc:
            raise SchemaMismatch(f"{exc} Pass the columns Binner was fitted on "
                                 f"({_preview(self.input_columns_)}), in that order",
                                 {"field": "X", "expected": list(self.input_columns_)}) from None

    # ------------------------------------------------------------------ fit
    def fit(self, X: FrameLike, y: ValuesLike) -> Binner:
        params = self._params()
        df = as_frame(X)
        check_not_empty(df, "Binner")
        yv = self._target(y, len(df))
        cols = list(self.columns) if self.columns is not None else [str(c) for c in df.columns]
        absent = [c for c in cols if c not in df.columns]
        if absent:
            raise MissingColumn(f"columns= lists {absent}, which X does not have; its columns are "
                                f"{_preview(df.columns)}", {"field": "columns", "missing": absent})
        forced = set(self.categorical or [])
        total_bad = float(yv.sum())
        total_good = float(len(yv) - yv.sum())
        bins: dict[str, FeatureBins] = {}
        for c in cols:
            bins[c] = self._fit_column(df[c], yv, params, c in forced, total_bad, total_good)
        self._validate_columns(X, reset=True)
        self.input_columns_ = np.asarray([str(c) for c in df.columns], dtype=object)
        self.total_bad_, self.total_good_ = total_bad, total_good
        self.bins_ = bins
        return self

    def _fit_column(self, s: pd.Series, y: np.ndarray, p: BinningParams, forced: bool, total_bad: float,
                    total_good: float) -> FeatureBins:
        name = str(s.name)
        kind = column_kind(s, forced)
        specials = self._specials_for(name)
        manual = self.cuts.get(name) if self.cuts is not None else None
        n = len(y)
        if kind == "numeric":
            x = numeric_values(s)
            specials = [float(v) for v in specials]
            missing = np.isnan(x)
            n_missing = int(np.count_nonzero(missing))
            if n_missing == n:
                raise InvalidInput(f"column {name!r} has only missing values; drop it or leave it out of columns=",
                                   {"field": name})
            special_masks = [x == v for v in specials]
            if n_missing or specials:
                reg = ~missing
                for mk in special_masks:
                    reg &= ~mk
                xr, yr = x[reg], y[reg]
            else:
                xr, yr = x, y
            xs = np.sort(xr)
            if len(xs) and (np.isinf(xs[0]) or np.isinf(xs[-1])):
                raise InvalidInput(
                    f"column {name!r} holds infinite values; replace them with NaN or declare them in "
                    f"special_values={{'{name}': [float('inf')]}}", {"field": name})
            xb = np.sort(xr[yr == 1])
            if manual is not None:
                cuts = sorted({float(c) for c in manual})
                if any(not np.isfinite(c) for c in cuts):
                    raise InvalidInput(f"manual cuts for {name!r} must be finite numbers", {"field": name})
                method = "manual"
            else:
                cuts = fit_numeric_cuts(xs, xb, p, n, total_bad, total_good)
                method = p.method
            fb = FeatureBins(name=name, kind="numeric", cuts=cuts, special_values=specials, method=method)
            bad, good = counts_sorted(xs, xb, np.asarray(cuts, dtype=np.float64))
            extra = [*special_masks, missing]
            ybad = y == 1
            eb = [float(np.count_nonzero(mk & ybad)) if mk.any() else 0.0 for mk in extra]
            eg = [float(np.count_nonzero(mk)) - b for mk, b in zip(extra, eb, strict=True)]
            fb.set_counts(np.concatenate([bad, eb]), np.concatenate([good, eg]), self.woe_sign,
                          self.smoothing, total_bad, total_good)
            return fb
        v = categorical_values(s)
        miss = pd.isna(v)
        if miss.all():
            raise InvalidInput(f"column {name!r} has only missing values; drop it or leave it out of columns=",
                               {"field": name})
        specials = [str(t) for t in specials]
        vs = _as_str(v)
        reg = ~miss & ~np.isin(vs, np.asarray(specials, dtype=object))
        if manual is not None:
            groups = [[str(t) for t in g] for g in manual]
            seen = np.unique(vs[reg])
            listed = {t for g in groups for t in g}
            leftover = [str(t) for t in seen if t not in listed]
            if leftover:
                groups.append(leftover)
            method = "manual"
        else:
            groups = fit_categorical_groups(vs[reg], y[reg], p, n, total_bad, total_good)
            method = p.method
        fb = FeatureBins(name=name, kind="categorical", groups=groups, special_values=specials, method=method)
        fb.refit_counts(v, y, self.woe_sign, self.smoothing, total_bad, total_good)
        if manual is None:
            fb.note_merged(vs[reg], y[reg], n, p.min_bin_share, p.rare_share, self.woe_sign, self.smoothing,
                           total_bad, total_good)
        return fb

    def set_cuts(self, column: str, cuts: Sequence[Any], X: FrameLike, y: ValuesLike) -> Binner:
        """Override one column's cut points (categorical: groups) by hand and refit its counts and WOE
        on ``X``/``y`` (normally the training data)."""
        check_is_fitted(self, "bins_")
        if column not in self.bins_:
            raise InvalidInput(f"column {column!r} was not binned; fitted columns: {list(self.bins_)}",
                               {"field": "column"})
        df = as_frame(X, list(self.input_columns_))
        if column not in df.columns:
            raise MissingColumn(f"X has no column {column!r}; pass the data the Binner was fitted on",
                                {"field": column})
        yv = self._target(y, len(df))
        old = self.cuts
        self.cuts = {**(dict(old) if old else {}), column: list(cuts)}
        try:
            self.bins_[column] = self._fit_column(df[column], yv, self._params(),
                                                  self.bins_[column].kind == "categorical",
                                                  float(yv.sum()), float(len(yv) - yv.sum()))
        finally:
            self.cuts = old
        return self

    # ------------------------------------------------------------------ transform
    def _column_values(self, fb: FeatureBins, data: Any) -> np.ndarray:
        if fb.kind == "numeric":
            if isinstance(data, np.ndarray) and data.dtype.kind == "f":
                return data
            if isinstance(data, np.ndarray) and data.dtype == object and len(data) <= SMALL_BATCH:
                return _small_numeric(data, fb.name)
            return numeric_values(pd.Series(data, name=fb.name) if not isinstance(data, pd.Series) else data)
        if isinstance(data, pd.Series):
            return categorical_values(data)
        return np.asarray(data, dtype=object)

    def transform(self, X: FrameLike) -> np.ndarray:
        """WOE (or bin index) of every binned column, as a float array in ``bins_`` order.

        ``X`` has the columns of fit time, in the same order (as scikit-learn requires): a different
        number of columns, or other names, raise :class:`~shipyard.errors.SchemaMismatch`."""
        check_is_fitted(self, "bins_")
        check_dense(X)
        names = list(self.input_columns_)
        df = as_frame(X, names)
        self._validate_columns(X, reset=False)
        if list(df.columns) != names:  # same count (validated): an array, or names fit did not record
            df = df.set_axis(names, axis=1)
        return self.transform_arrays({c: df[c] for c in self.bins_}, len(df))

    def transform_arrays(self, columns: Mapping[str, Any], n_rows: int | None = None) -> np.ndarray:
        """NumPy fast path: ``{column: 1-D array}`` (the binned columns, by name; others are
        ignored) -> ``(n_rows, n_binned)`` float array."""
        check_is_fitted(self, "bins_")
        names = list(self.bins_)
        if n_rows is None:
            n_rows = len(next(iter(columns.values()))) if columns else 0
        out = np.empty((n_rows, len(names)), dtype=np.float64, order="F")  # column writes stay contiguous
        for j, c in enumerate(names):
            if c not in columns:
                raise MissingColumn(f"column {c!r} is missing; the binning spec needs it", {"field": c})
            fb = self.bins_[c]
            idx = fb.bin_index(self._column_values(fb, columns[c]))
            out[:, j] = fb.woe[idx] if self.output == "woe" else idx
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """The output columns: the binned ones, named as in ``input_features`` when given."""
        check_is_fitted(self, "bins_")
        names = [str(c) for c in self.input_columns_]
        if input_features is None:
            return np.asarray(list(self.bins_), dtype=object)
        given = [str(f) for f in input_features]
        if len(given) != len(names):
            raise InvalidInput(f"input_features has {len(given)} names, but Binner was fitted on {len(names)} "
                               "columns; give one name per input column", {"field": "input_features"})
        if hasattr(self, "feature_names_in_") and given != names:
            raise InvalidInput(f"input_features is not equal to feature_names_in_ ({_preview(names)}); pass "
                               "those names or None", {"field": "input_features"})
        rename = dict(zip(names, given, strict=True))
        return np.asarray([rename[c] for c in self.bins_], dtype=object)

    # ------------------------------------------------------------------ tables
    def iv_table(self) -> pd.DataFrame:
        """One row per column: IV, number of regular bins, method; sorted by IV (descending)."""
        check_is_fitted(self, "bins_")
        rows = [{"variable": c, "iv": fb.iv, "n_bins": fb.n_regular, "kind": fb.kind, "method": fb.method}
                for c, fb in self.bins_.items()]
        return pd.DataFrame(rows).sort_values(["iv", "variable"], ascending=[False, True], ignore_index=True)

    def merged_table(self) -> pd.DataFrame:
        """Categories too rare for a bin of their own that were merged into another bin: variable,
        category, share of rows, the bin joined, reason (``min_bin_share`` or ``rare_share``), and the
        variable's IV with one bin per category (``iv_unmerged``) next to its fitted IV."""
        check_is_fitted(self, "bins_")
        rows = [{"variable": c, **m, "iv_unmerged": fb.iv_unmerged, "iv": fb.iv}
                for c, fb in self.bins_.items() for m in fb.merged]
        return pd.DataFrame(rows, columns=["variable", "category", "share", "bin", "reason", "iv_unmerged", "iv"])

    def bin_table(self, column: str) -> pd.DataFrame:
        """Bins of one column: label, count, bad, good, bad rate, WOE, IV."""
        check_is_fitted(self, "bins_")
        d = self.bins_[column].to_dict()
        t = pd.DataFrame(d["bins"])
        with np.errstate(invalid="ignore", divide="ignore"):
            t.insert(5, "bad_rate", t["bad"] / t["count"])
        return t

    # ------------------------------------------------------------------ spec
    def to_spec(self) -> dict[str, Any]:
        """JSON-ready dict that fully determines ``transform`` (no pickle)."""
        check_is_fitted(self, "bins_")
        return {
            "format": SPEC_FORMAT, "version": SPEC_VERSION, "woe_sign": self.woe_sign,
            "smoothing": float(self.smoothing), "output": self.output, "method": METHODS[self.method],
            "total_bad": self.total_bad_, "total_good": self.total_good_,
            "input_columns": [str(c) for c in self.input_columns_],
            "input_columns_named": hasattr(self, "feature_names_in_"),  # fitted on named columns, not an array
            "features": [fb.to_dict() for fb in self.bins_.values()],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_spec(), sort_keys=False)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | str) -> Binner:
        """A fitted ``Binner`` from :meth:`to_spec` output (dict or JSON text)."""
        if isinstance(spec, str):
            spec = json.loads(spec)
        if not isinstance(spec, Mapping) or spec.get("format") != SPEC_FORMAT:
            raise InvalidInput(f"not a binning spec: 'format' must be {SPEC_FORMAT!r}", {"field": "format"})
        if int(spec.get("version", 0)) > SPEC_VERSION:
            raise InvalidInput(f"binning spec version {spec.get('version')} is newer than this Shipyard "
                               f"supports ({SPEC_VERSION}); upgrade shipyard-ml", {"field": "version"})
        b = cls(method=spec.get("method", "optimal"), woe_sign=spec.get("woe_sign", "bad_over_good"),
                smoothing=float(spec.get("smoothing", 0.5)), output=spec.get("output", "woe"))
        b._params()
        feats = [FeatureBins.from_dict(d) for d in spec.get("features", [])]
        b.bins_ = {fb.name: fb for fb in feats}
        inputs = [str(c) for c in spec.get("input_columns", [fb.name for fb in feats])]
        absent = [fb.name for fb in feats if fb.name not in inputs]
        if absent:
            raise InvalidInput(f"binning spec: features {absent} are not among its input_columns",
                               {"field": "input_columns"})
        b.input_columns_ = np.asarray(inputs, dtype=object)
        if spec.get("input_columns_named", True):
            b.feature_names_in_ = np.asarray(inputs, dtype=object)
        b.n_features_in_ = len(inputs)
        b.total_bad_ = float(spec.get("total_bad", 0.0))
        b.total_good_ = float(spec.get("total_good", 0.0))
        return b


def _small_numeric(data: np.ndarray, name: str) -> np.ndarray:
    """Object array of a few numbers (online scoring) to float64, without a pandas round trip."""
    out = np.empty(len(data), dtype=np.float64)
    for i, v in enumerate(data):
        if v is None or v is pd.NA:
            out[i] = np.nan
        elif isinstance(v, int | float | np.number | bool):
            out[i] = float(v)
        else:
            return numeric_values(pd.Series(data, name=name))  # text and other types: the full rules
    return out


def _preview(names: Any, limit: int = 20) -> str:
    shown = [str(n) for n in list(names)[:limit]]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f", ... ({more} more)" if more > 0 else "")
