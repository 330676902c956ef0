"""Load-only flavor for MLflow pyfunc models that have no native flavor Shipyard reads
(``mlflow.pyfunc.save_model(python_model=...)`` and other ``mlflow.*`` loaders).

These models are MLflow code plus a pickle, so loading needs mlflow installed and
``trusted=True``; the model is then scored through ``mlflow.pyfunc`` on a DataFrame (no NumPy
fast path). Shipyard imports mlflow only here, and only when such a model is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shipyard.errors import MissingDependency
from shipyard.models.flavors.base import LoadOptions, refuse_untrusted
from shipyard.models.loaded import LoadedModel


class MlflowPyfuncFlavor:
    name = "mlflow_pyfunc"
    pip_requirements: tuple[str, ...] = ("mlflow",)

    def matches(self, model: Any) -> bool:
        return False

    def feature_names(self, model: Any) -> list[str] | None:
        return None

    def save(self, model: Any, path: Path, **_: Any) -> dict[str, Any]:
        raise NotImplementedError("MLflow pyfunc models are saved by mlflow; Shipyard only loads them")

    def load(self, path: Path, section: dict[str, Any], options: LoadOptions) -> LoadedModel:
        loader = section.get("loader_module", "mlflow.pyfunc.model")
        refuse_untrusted(path, str(section.get("python_model") or loader), options)
        try:
            import mlflow.pyfunc
        except ImportError as exc:
            raise MissingDependency(
                f"the model in {str(path)!r} is an MLflow pyfunc model (loader {loader!r}); loading it "
                "needs mlflow: pip install mlflow — or re-save it with shipyard.models.save_model",
                {"module": "mlflow", "path": str(path)},
            ) from exc
        model = mlflow.pyfunc.load_model(str(path), suppress_warnings=True)
        return LoadedModel(self.name, model, predict_frame=model.predict)


FLAVOR = MlflowPyfuncFlavor()
