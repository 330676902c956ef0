"""scikit-learn flavor: estimators and pipelines, saved with skops (pickle when skops is absent).

The ``sklearn`` section uses MLflow's keys (``pickled_model``, ``serialization_format``,
``sklearn_version``, ``skops_trusted_types``), so ``mlflow.sklearn.load_model`` reads Shipyard's
files and Shipyard reads MLflow's — skops (MLflow 3's default) and pickle/cloudpickle (older
MLflow, ``serialization_format="pickle"``; these load only with ``trusted=True``). A skops file
loads with the types its package recorded in ``skops_trusted_types`` and no other (MLflow passes
the same list to ``skops.io.load``); see ``shipyard.models.trust``.

Fast path: an estimator fitted on a DataFrame checks column names on every call, so the flavor
keeps a private copy with the fitted names removed and a cached column permutation from signature
order to training order; it scores NumPy rows directly. The copy is used only after it reproduces
the original on probe rows; otherwise (e.g. a ``ColumnTransformer`` selecting columns by name)
``predict_array`` falls back to building a DataFrame.
"""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.errors import Forbidden, InvalidInput, NotFound
from shipyard.models.flavors.base import LoadOptions, refuse_untrusted
from shipyard.models.loaded import LoadedModel
from shipyard.models.trust import sklearn_class, skops_types


def _has_skops() -> bool:
    try:
        import skops.io  # noqa: F401
    except ImportError:
        return False
    return True


class SklearnFlavor:
    name = "sklearn"
    pip_requirements: tuple[str, ...] = ("scikit-learn", "numpy")

    def matches(self, model: Any) -> bool:
        from sklearn.base import BaseEstimator

        return isinstance(model, BaseEstimator)

    def feature_names(self, model: Any) -> list[str] | None:
        names = getattr(model, "feature_names_in_", None)
        if names is not None:
            return [str(n) for n in names]
        n = getattr(model, "n_features_in_", None)
        return [f"f{i}" for i in range(n)] if n else None

    def requirements(self, fmt: str) -> tuple[str, ...]:
        extra = {"skops": ("skops",), "cloudpickle": ("cloudpickle",)}.get(fmt, ())
        return self.pip_requirements + extra

    def save(self, model: Any, path: Path, *, serialization_format: str | None = None, **_: Any) -> dict[str, Any]:
        import sklearn

        fmt = serialization_format or ("skops" if _has_skops() else "pickle")
        trusted_types = None
        if fmt == "skops":
            import skops.io as sio

            file = "model.skops"
            sio.dump(model, path / file)
            trusted_types = sio.get_untrusted_types(file=path / file) or None
        elif fmt in ("pickle", "cloudpickle"):
            file = "model.pkl"
            with (path / file).open("wb") as fh:
                if fmt == "cloudpickle":
                    import cloudpickle

                    cloudpickle.dump(model, fh)
                else:
                    pickle.dump(model, fh, protocol=pickle.HIGHEST_PROTOCOL)
        else:
            raise InvalidInput(
                f"unknown sklearn serialization_format {fmt!r}; use 'skops', 'pickle' or 'cloudpickle'"
            )
        section: dict[str, Any] = {
            "pickled_model": file,
            "serialization_format": fmt,
            "sklearn_version": sklearn.__version__,
            "code": None,
        }
        if fmt == "skops":
            section["skops_trusted_types"] = trusted_types
        return section

    def load(self, path: Path, section: dict[str, Any], options: LoadOptions) -> LoadedModel:
        file = str(section.get("pickled_model") or "model.pkl")
        fmt = str(section.get("serialization_format") or ("skops" if file.endswith(".skops") else "pickle"))
        target = path / file
        if not target.is_file():
            raise NotFound(
                f"model file {file!r} named in MLmodel is missing from {str(path)!r}; re-save or re-download the model",
                {"path": str(target), "file": file},
            )
        if fmt == "skops":
            model = _load_skops(target, section, options)
        else:
            refuse_untrusted(path, file, options)
            with target.open("rb") as fh:
                model = pickle.load(fh)  # noqa: S301 - trusted store (checked above)
        return build_loaded(model, options.input_names, flavor=self.name)


def _load_skops(target: Path, section: dict[str, Any], options: LoadOptions) -> Any:
    """Load with the types the package recorded (``skops_trusted_types``) and no other; without
    ``trusted`` only when each of them is a scikit-learn class (see ``shipyard.models.trust``)."""
    import skops.io as sio

    untrusted = skops_types(target)
    recorded = set(section.get("skops_trusted_types") or [])
    unlisted = [t for t in untrusted if t not in recorded]
    if unlisted:
        raise Forbidden(
            f"{target.name!r} holds types skops does not trust by default that the package does not list "
            f"in skops_trusted_types: {unlisted}; re-save the model with shipyard.models.save_model, which "
            "records them, if you trust where it came from",
            {"path": str(target), "types": unlisted},
        )
    foreign = [t for t in untrusted if not sklearn_class(t)]
    if foreign and not options.trusted:
        raise Forbidden(
            f"{target.name!r} holds types that are not scikit-learn classes: {foreign}; skops imports and "
            "builds them, which runs their code; load it with trusted=True only if the model comes from a "
            "store you trust",
            {"path": str(target), "types": foreign},
        )
    return sio.load(target, trusted=untrusted or None)


def _strip_feature_names(obj: Any, seen: set[int], depth: int = 0) -> None:
    from sklearn.base import BaseEstimator

    if id(obj) in seen or depth > 8:
        return
    seen.add(id(obj))
    if isinstance(obj, BaseEstimator):
        obj.__dict__.pop("feature_names_in_", None)
        children = list(vars(obj).values())
    elif isinstance(obj, list | tuple):
        children = list(obj)
    elif isinstance(obj, dict):
        children = list(obj.values())
    else:
        return
    for child in children:
        if isinstance(child, BaseEstimator | list | tuple | dict):
            _strip_feature_names(child, seen, depth + 1)


def _score_fn(est: Any) -> tuple[Any, list[Any] | None]:
    classes = getattr(est, "classes_", None)
    if classes is not None and hasattr(est, "predict_proba"):
        classes_list = np.asarray(classes).tolist()
        proba = est.predict_proba
        if len(classes_list) == 2:
            return (lambda X: proba(X)[:, 1]), classes_list
        return proba, classes_list
    return est.predict, None


def build_loaded(model: Any, input_names: tuple[str, ...] | None, *, flavor: str = "sklearn") -> LoadedModel:
    """A ``LoadedModel`` over a fitted estimator, with the NumPy fast path when it is safe."""
    import pandas as pd

    fitted = getattr(model, "feature_names_in_", None)
    names = [str(n) for n in fitted] if fitted is not None else None
    order = list(input_names) if input_names else names
    frame_fn, classes = _score_fn(model)

    def predict_frame(frame: Any) -> Any:
        return frame_fn(frame[names] if names is not None else frame)

    array_fn = None
    if names is None:
        array_fn = frame_fn
    elif order is not None and set(order) == set(names):
        perm = None if order == names else np.array([order.index(n) for n in names], dtype=np.intp)
        bare = copy.deepcopy(model)
        _strip_feature_names(bare, set())
        bare_fn, _ = _score_fn(bare)
        fast = bare_fn if perm is None else (lambda X, f=bare_fn, p=perm: f(X[:, p]))
        probe = np.vstack([np.zeros(len(order)), np.ones(len(order)), np.arange(len(order), dtype=float)])
        try:
            same = np.array_equal(
                np.asarray(fast(probe)), np.asarray(frame_fn(pd.DataFrame(probe, columns=order)[names])), equal_nan=True
            )
        except Exception:  # noqa: BLE001 - any failure means "no fast path", never an error
            same = False
        if same:
            array_fn = fast
    return LoadedModel(
        flavor,
        model,
        predict_array=array_fn,
        predict_frame=predict_frame,
        classes=classes,
        feature_names=order,
    )


FLAVOR = SklearnFlavor()
