"""ONNX flavor: any ONNX model, scored with onnxruntime.

Saved as ``model.onnx`` (section keys as MLflow's: ``data``, ``onnx_version``, ``providers``).
The fast path runs the inference session on the float32 array (ONNX models converted from
scikit-learn take one ``[n, k]`` tensor; models with one input per column get one ``[n, 1]``
tensor per signature column, matched by name). Classifier outputs (a probability tensor or
skl2onnx's list of ``{class: probability}`` maps) become the positive-class probability.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from shipyard.errors import NotFound, require
from shipyard.models.flavors.base import LoadOptions, module_of
from shipyard.models.loaded import LoadedModel

_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


class OnnxFlavor:
    name = "onnx"
    pip_requirements: tuple[str, ...] = ("onnx", "onnxruntime", "numpy")

    def matches(self, model: Any) -> bool:
        return module_of(model) == "onnx"

    def feature_names(self, model: Any) -> list[str] | None:
        inputs = list(model.graph.input)
        return [i.name for i in inputs] if len(inputs) > 1 else None

    def save(self, model: Any, path: Path, **_: Any) -> dict[str, Any]:
        onnx = require("onnx", "onnx")
        (path / "model.onnx").write_bytes(model.SerializeToString())
        return {
            "onnx_version": onnx.__version__,
            "data": "model.onnx",
            "providers": ["CPUExecutionProvider"],
            "code": None,
        }

    def load(self, path: Path, section: dict[str, Any], options: LoadOptions) -> LoadedModel:
        ort = require("onnxruntime", "onnx")
        file = str(section.get("data") or "model.onnx")
        target = path / file
        if not target.is_file():
            raise NotFound(
                f"model file {file!r} named in MLmodel is missing from {str(path)!r}; re-save or re-download the model",
                {"path": str(target), "file": file},
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(str(target), opts, providers=list(section.get("providers") or ["CPUExecutionProvider"]))
        return build_loaded(session, options.input_names, self.name)


def build_loaded(session: Any, input_names: tuple[str, ...] | None, flavor: str) -> LoadedModel:
    inputs = session.get_inputs()
    outputs = session.get_outputs()
    run = session.run
    if len(inputs) == 1:
        name = inputs[0].name
        dtype = _DTYPES.get(inputs[0].type, np.float32)

        def feed(X: np.ndarray) -> dict[str, np.ndarray]:
            return {name: X.astype(dtype, copy=False)}
        names = list(input_names) if input_names else None
    else:
        order = list(input_names) if input_names else [i.name for i in inputs]
        cols = [(i.name, order.index(i.name), _DTYPES.get(i.type, np.float32)) for i in inputs]

        def feed(X: np.ndarray) -> dict[str, np.ndarray]:
            return {n: X[:, j : j + 1].astype(t, copy=False) for n, j, t in cols}
        names = order

    prob = next((o for o in outputs if "prob" in o.name.lower()), None)
    classes: list[Any] | None = None
    if prob is not None:
        out_name = prob.name
        is_map = prob.type.startswith("seq(map")

        def scores(X: np.ndarray) -> np.ndarray:
            res = run([out_name], feed(X))[0]
            if is_map:
                keys = list(res[0].keys())
                res = np.array([[row[k] for k in keys] for row in res], dtype=np.float64)
            res = np.asarray(res)
            return res[:, 1] if res.shape[1] == 2 else res

        probe = np.zeros((1, len(names) if names else (inputs[0].shape[1] or 1)))
        try:
            raw = run([out_name], feed(probe))[0]
            classes = list(raw[0].keys()) if is_map else list(range(np.asarray(raw).shape[1]))
        except Exception:  # noqa: BLE001 - a probe the model rejects: assume binary
            classes = [0, 1]
        # labels come from the probability columns (argmax / > 0.5), as the native models decide
        predict_array = scores
    else:
        out_name = outputs[0].name

        def predict_array(X: np.ndarray) -> np.ndarray:
            res = np.asarray(run([out_name], feed(X))[0])
            return res.ravel() if res.ndim == 2 and res.shape[1] == 1 else res

    return LoadedModel(flavor, session, predict_array=predict_array, classes=classes, feature_names=names)


FLAVOR = OnnxFlavor()
