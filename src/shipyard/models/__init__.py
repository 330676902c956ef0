"""Model packages: MLflow-compatible model directories, flavors and the NumPy fast path.

    from shipyard.models import save_model, load_model
    save_model(clf, "models/credit", input_example=X_train.head(5))
    model = load_model("models/credit")
    model.predict({"age": 35, "income": 4200.0})        # validated against the signature
    model.predict_array(np.array([[35.0, 4200.0]]))     # fast path, signature order
"""

from shipyard.models.flavors.base import FLAVORS, Flavor, LoadOptions, get_flavor
from shipyard.models.loaded import LoadedModel
from shipyard.models.mlmodel import read_mlmodel
from shipyard.models.package import load_model, read_input_example, save_model
from shipyard.models.signature import ColSpec, Signature, TensorSpec
from shipyard.models.trust import CodePart, code_parts, package_runs_code

__all__ = [
    "FLAVORS",
    "CodePart",
    "ColSpec",
    "Flavor",
    "LoadOptions",
    "LoadedModel",
    "Signature",
    "TensorSpec",
    "code_parts",
    "get_flavor",
    "load_model",
    "package_runs_code",
    "read_input_example",
    "read_mlmodel",
    "save_model",
]
