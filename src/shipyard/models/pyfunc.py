"""MLflow's ``python_function`` semantics for a loaded package, without importing mlflow.

``mlflow.pyfunc.load_model(path).predict(frame)`` calls the loader module named in the package's
``MLmodel``. Shipyard answers ``/invocations`` with exactly that, so the rule is the package's, not
Shipyard's:

- a package Shipyard saved names ``shipyard.models.pyfunc_loader``: its pyfunc is
  ``LoadedModel.predict`` (a classifier's positive-class probability, or the probability matrix);
- a package MLflow saved with a flavor Shipyard reads natively is scored as MLflow's wrapper for
  that flavor scores it: ``mlflow.sklearn`` calls the estimator's ``predict_fn`` (``predict`` —
  class labels for a classifier — unless the package says ``predict_proba`` and the like),
  ``mlflow.xgboost`` calls ``predict`` of the scikit-learn wrapper or ``Booster.predict`` on a
  ``DMatrix``, ``mlflow.lightgbm`` calls the model's ``predict``;
- any other MLflow package is loaded through mlflow itself (the ``mlflow_pyfunc`` flavor), whose
  ``predict`` is the answer.

``pyfunc_function`` returns ``None`` for the first case (the caller uses ``predict``) and the
function ``(frame, params) -> output`` otherwise.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from shipyard.models.mlmodel import LOADER_MODULE, PYFUNC

PyfuncFn = Callable[[Any, dict[str, Any] | None], Any]

#: what MLflow's scikit-learn wrapper exposes besides ``predict`` (``pyfunc_predict_fn``)
SKLEARN_PREDICT_FNS = ("predict", "predict_proba", "predict_log_proba", "predict_joint_log_proba", "score")


def pyfunc_function(mlmodel: Mapping[str, Any], flavor: str, native: Any) -> PyfuncFn | None:
    """The package's pyfunc prediction function, or None when it is ``LoadedModel.predict``."""
    section = (mlmodel.get("flavors") or {}).get(PYFUNC) or {}
    loader = str(section.get("loader_module") or "")
    if loader == LOADER_MODULE or not loader:
        return None
    if flavor == "mlflow_pyfunc":
        return _mlflow_pyfunc(native)
    predict_fn = str(section.get("predict_fn") or "predict")
    if loader == "mlflow.sklearn":
        return _sklearn(native, predict_fn)
    if loader == "mlflow.xgboost":
        return _xgboost(native)
    if loader == "mlflow.lightgbm":
        return _lightgbm(native)
    return None


def _mlflow_pyfunc(model: Any) -> PyfuncFn:
    def call(frame: Any, params: dict[str, Any] | None) -> Any:
        return model.predict(frame, params=params) if params else model.predict(frame)

    return call


def _sklearn(model: Any, predict_fn: str) -> PyfuncFn:
    name = predict_fn if predict_fn in SKLEARN_PREDICT_FNS else "predict"
    fn = getattr(model, name)
    return lambda frame, params: fn(frame)


def _xgboost(model: Any) -> PyfuncFn:
    import xgboost as xgb

    if isinstance(model, xgb.Booster):
        def booster(frame: Any, params: dict[str, Any] | None) -> Any:
            return model.predict(xgb.DMatrix(frame), validate_features=True, **_accepted(model.predict, params))

        return booster

    def wrapper(frame: Any, params: dict[str, Any] | None) -> Any:
        return model.predict(frame, validate_features=True, **_accepted(model.predict, params))

    return wrapper


def _lightgbm(model: Any) -> PyfuncFn:
    fn = model.predict  # MLflow's LightGBM wrapper has predict only
    return lambda frame, params: fn(frame)


def _accepted(fn: Callable[..., Any], params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The params a predict function takes (MLflow drops the others for XGBoost)."""
    if not params:
        return {}
    names = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in names.values()):
        return dict(params)
    return {k: v for k, v in params.items() if k in names and k not in ("validate_features",)}
