"""``LoadedModel``: one interface over every flavor, with a NumPy fast path.

Outputs: a classifier returns the probability of the positive class (``classes[1]``) as a 1-D
float array by default — the score risk teams cut on; a multi-class classifier returns the
``(n, k)`` probability matrix. Pass ``labels=True`` for class labels instead (binary: ``classes[1]``
when the probability is above 0.5, as scikit-learn, XGBoost and LightGBM decide). Regressors return
their prediction; custom Python models return what their ``postprocess`` returns.

Two ways to predict:

``predict(data)``
    ``data`` is a record (dict), a list of records, a pandas DataFrame or a 2-D array. It is checked
    against the signature (``SchemaMismatch`` names the wrong field) and put in signature order.
``predict_array(X)``
    the fast path for serving: ``X`` is a float array ``(n, len(input_names))`` (or one row of
    length ``len(input_names)``) already in ``input_names`` order. No validation, no pandas.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shipyard.errors import ModelError, SchemaMismatch, ShipyardError
from shipyard.models.signature import Signature, to_frame

if TYPE_CHECKING:
    import pandas as pd

ArrayFn = Callable[[np.ndarray], Any]
FrameFn = Callable[[Any], Any]


class LoadedModel:
    """A model ready to score. Built by a flavor's ``load``; completed by ``load_model``."""

    def __init__(
        self,
        flavor: str,
        native: Any,
        *,
        predict_array: ArrayFn | None = None,
        predict_frame: FrameFn | None = None,
        predict_labels: ArrayFn | None = None,
        classes: Sequence[Any] | None = None,
        feature_names: Sequence[str] | None = None,
    ) -> None:
        if predict_array is None and predict_frame is None:
            raise ValueError("a flavor must give predict_array or predict_frame")
        self.flavor = flavor
        self.native = native
        self.classes: list[Any] | None = list(classes) if classes is not None else None
        self._array_fn = predict_array
        self._frame_fn = predict_frame
        self._labels_fn = predict_labels
        self._feature_names = list(feature_names) if feature_names is not None else None
        self.signature: Signature | None = None
        self.metadata: dict[str, Any] = {}
        self.mlmodel: dict[str, Any] = {}
        self.path: Path | None = None
        self.input_example: Any = None
        self.expected_output: Any = None
        # the package's MLflow pyfunc entry point when it is not ``predict`` (set by load_model)
        self.pyfunc_fn: Callable[[Any, dict[str, Any] | None], Any] | None = None

    # -- description --------------------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        if self.signature is not None:
            return self.signature.input_names
        return list(self._feature_names or [])

    @property
    def output_names(self) -> list[str]:
        if self.signature is not None:
            names = [getattr(s, "name", None) for s in self.signature.outputs]
            if all(names):
                return [str(n) for n in names]
        if self.is_classifier and self.classes is not None and len(self.classes) > 2:
            return [f"proba_{c}" for c in self.classes]
        return ["score" if self.is_classifier else "prediction"]

    @property
    def is_classifier(self) -> bool:
        return self.classes is not None

    @property
    def has_fast_path(self) -> bool:
        """True when ``predict_array`` goes straight to the native model (no DataFrame)."""
        return self._array_fn is not None

    def __repr__(self) -> str:
        return f"LoadedModel(flavor={self.flavor!r}, inputs={len(self.input_names)}, path={str(self.path)!r})"

    # -- scoring ------------------------------------------------------------------------------
    def predict(self, data: Any, *, labels: bool = False) -> object:
        """Score a record, records, DataFrame or array (validated against the signature)."""
        if self._array_fn is None:
            frame = self._as_frame(data)
            return self._call(self._frame_fn, frame, labels)  # type: ignore[arg-type]
        if self.signature is not None:
            X = self.signature.validate(data)
        else:
            X = self._unchecked_array(data)
        return self._call(self._array_fn, X, labels)

    def predict_array(self, X: np.ndarray, *, labels: bool = False) -> object:
        """Fast path: ``X`` in ``input_names`` order; no validation, no pandas (see module doc)."""
        if X.ndim == 1:
            X = X.reshape(1, -1)
        elif not X.flags.c_contiguous:
            X = np.ascontiguousarray(X)  # same memory layout as predict(): identical BLAS results
        if self._array_fn is not None:
            return self._call(self._array_fn, X, labels)
        return self._call(self._frame_fn, to_frame(X, self.input_names or None), labels)  # type: ignore[arg-type]

    def predict_pyfunc(self, data: Any, params: Mapping[str, Any] | None = None) -> object:
        """What ``mlflow.pyfunc.load_model(<this package>).predict(data, params)`` returns.

        ``data`` is checked against the signature and typed by it (MLflow's schema enforcement);
        the call is then the package's own pyfunc entry point: for a package Shipyard saved,
        ``predict`` (``params={"labels": True}`` for labels); for one MLflow saved, the flavor's
        pyfunc function (``predict_fn`` of a scikit-learn model, ``Booster.predict`` on a DMatrix,
        ...). See ``shipyard.models.pyfunc``.
        """
        if self.signature is not None:
            frame: Any = self.signature.frame(data)
        else:
            frame = unsigned_input(data, self.input_names or None)
        params = declared_params(self.mlmodel, params)
        if self.pyfunc_fn is None:
            labels = bool((params or {}).get("labels", False))
            return self.predict(frame, labels=labels)
        fn = self.pyfunc_fn
        return self._call(lambda d: fn(d, dict(params) if params else None), frame, False)

    @property
    def pyfunc_is_predict(self) -> bool:
        """True when ``predict_pyfunc`` scores as ``predict`` does (a package Shipyard saved)."""
        return self.pyfunc_fn is None

    def _call(self, fn: Callable[[Any], Any], data: Any, labels: bool) -> Any:
        try:
            if labels:
                if self._labels_fn is not None:
                    return self._labels_fn(data)
                return self.labels_from_scores(fn(data))
            return fn(data)
        except ShipyardError as exc:
            # input errors are also ValueError/KeyError (e.g. MissingColumn): keep them the caller's (4xx)
            exc.details.setdefault("flavor", self.flavor)
            raise
        except Exception as exc:  # noqa: BLE001 - the model's own code (hooks included) may raise anything
            raise ModelError(
                f"the {self.flavor} model raised {type(exc).__name__}: {exc}",
                {"flavor": self.flavor, "exception": type(exc).__name__},
            ) from exc

    def labels_from_scores(self, scores: Any) -> np.ndarray:
        """Class labels from ``predict`` scores (positive-class probability or probability matrix)."""
        if self.classes is None:
            raise ModelError(f"the {self.flavor} model is not a classifier; it has no labels")
        classes = np.asarray(self.classes)
        scores = np.asarray(scores)
        if scores.ndim == 1:
            return classes[(scores > 0.5).astype(np.intp)]
        return classes[np.argmax(scores, axis=1)]

    def _as_frame(self, data: Any) -> Any:
        if self.signature is not None:
            return self.signature.frame(data)
        return to_frame(data, self.input_names or None)

    def _unchecked_array(self, data: Any) -> np.ndarray:
        import pandas as pd

        names = self.input_names
        if isinstance(data, np.ndarray):
            return data.reshape(1, -1) if data.ndim == 1 else data
        frame = data if isinstance(data, pd.DataFrame) else to_frame(data, names or None)
        if names:
            frame = frame[names]
        return frame.to_numpy(dtype=np.float64)


def unsigned_input(data: Any, names: Sequence[str] | None) -> pd.DataFrame | np.ndarray:
    """Input for a model without a signature, as MLflow's scoring server passes it: records become
    a DataFrame (pandas infers the types), rows a 2-D array; DataFrames and arrays pass as they are."""
    import pandas as pd

    if isinstance(data, pd.DataFrame | np.ndarray):
        return data
    if isinstance(data, Mapping):
        return pd.DataFrame([dict(data)])
    if isinstance(data, Sequence) and not isinstance(data, str | bytes):
        if data and all(isinstance(r, Mapping) for r in data):
            return pd.DataFrame(list(data))
        if data and all(isinstance(r, list | tuple) for r in data):
            widths = {len(r) for r in data}
            if len(widths) > 1:
                i = next(i for i, r in enumerate(data) if len(r) != len(data[0]))
                raise SchemaMismatch(f"row {i} has {len(data[i])} values and row 0 has {len(data[0])}; every row "
                                     "needs the same number", {"field": f"[{i}]", "record": i, "problem": "shape"})
            return np.asarray(data)
    return to_frame(data, names)


def declared_params(mlmodel: Mapping[str, Any], params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The params MLflow hands a model: those its signature declares (given, else their default);
    others are dropped, as ``mlflow.pyfunc`` drops them."""
    raw = (mlmodel.get("signature") or {}).get("params") if mlmodel else None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raw = None
    if not isinstance(raw, list) or not raw:
        return None
    given = dict(params or {})
    out = {str(p["name"]): given.get(p["name"], p.get("default")) for p in raw if isinstance(p, dict) and "name" in p}
    return out or None


def model_failure(exc: BaseException, name: str, version: int | str, what: str = "") -> ShipyardError:
    """The error a caller sees when a model's code failed: names the model and its version.

    A ``ShipyardError`` keeps its class and status (a 4xx stays the caller's fault) and gains
    ``details.model``/``details.version``; a ``ModelError`` (or any other exception, raised by the
    model's own code) becomes ``ModelError`` with the exception type and message."""
    if isinstance(exc, ShipyardError) and not isinstance(exc, ModelError):
        exc.details.setdefault("model", name)
        exc.details.setdefault("version", version)
        return exc
    kind = exc.details.get("exception") if isinstance(exc, ModelError) else type(exc).__name__
    message = exc.message if isinstance(exc, ModelError) else f"{type(exc).__name__}: {exc}"
    details = dict(exc.details) if isinstance(exc, ModelError) else {}
    details.update({"model": name, "version": version, "exception": kind or "ModelError"})
    prefix = f"model {name!r} version {version}"
    if isinstance(exc, ModelError) and message.startswith(prefix):
        return exc
    return ModelError(f"{prefix}{' ' + what if what else ''}: {message}", details)
