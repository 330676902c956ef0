"""``PythonModel``: the template for custom models (pre-process → predict → post-process).

Subclass it, override ``predict`` and, as needed, the other hooks::

    class CreditModel(PythonModel):
        def load_context(self, context):          # once, after loading: open artifacts
            self.booster = lightgbm.Booster(model_file=context.artifacts["booster"])
        def preprocess(self, df):                 # DataFrame in signature order -> model input
            return df.assign(ratio=df.debt / df.income)
        def predict(self, df):                    # the real model
            return self.booster.predict(df.to_numpy())
        def postprocess(self, out):               # model output -> what clients get
            return np.round(out, 6)

    save_model(CreditModel(), "models/credit", artifacts={"booster": "booster.txt"},
               input_example=frame.head(3))

``LoadedModel.predict`` runs ``postprocess(predict(preprocess(frame)))``. A model that can score a
NumPy array directly may also override ``predict_array(X)`` (``X`` in signature order); serving then
uses it as the fast path, and it must return the same values as the hooks. Set ``classes`` (e.g.
``[0, 1]``) on a classifier whose ``predict`` returns the positive-class probability so that
``predict(..., labels=True)`` works.

The instance is saved with cloudpickle (pickle if cloudpickle is absent), or by reference when you
pass the class path instead of an instance: ``save_model("my_pkg.models:CreditModel", path)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class PythonModelContext:
    """Handed to ``load_context``: ``artifacts`` maps each name to its absolute path."""

    artifacts: dict[str, str] = field(default_factory=dict)
    model_config: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


class PythonModel:
    """Base class of custom Python models; see the module docstring."""

    classes: list[Any] | None = None

    def load_context(self, context: PythonModelContext) -> None:
        """Load artifacts; called once after the model is loaded (and once at save time)."""

    def preprocess(self, df: Any) -> object:
        return df

    def predict(self, df: Any) -> object:
        raise NotImplementedError("override predict(df) in your PythonModel subclass")

    def postprocess(self, out: Any) -> object:
        return out

    def run(self, df: Any) -> object:
        """The whole chain: ``postprocess(predict(preprocess(df)))``."""
        return self.postprocess(self.predict(self.preprocess(df)))

    def has_array_path(self) -> bool:
        return type(self).predict_array is not PythonModel.predict_array

    def predict_array(self, X: Any) -> object:
        """Optional fast path over a NumPy array in signature order."""
        raise NotImplementedError
