"""Save and load model directories (MLflow-compatible; see ``mlmodel.py`` for the layout).

``save_model`` writes into a temporary sibling directory and renames it into place at the end, so a
half-written model is never visible. It records the model's output on the input example in
``shipyard.json`` (the registry validates a version against it) together with the sha256 of every
file, which ``load_model`` checks (``IntegrityError`` on mismatch).

The ``python_function`` flavor names ``shipyard.models.pyfunc_loader`` as its loader, so
``mlflow.pyfunc.load_model(path)`` loads a Shipyard model; Shipyard never imports mlflow to write
one.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shipyard.errors import AlreadyExists, InvalidInput
from shipyard.jsontypes import JSON
from shipyard.models import mlmodel as mm
from shipyard.models.flavors.base import FLAVORS, LOAD_ONLY, Flavor, LoadOptions, detect_flavor, get_flavor
from shipyard.models.loaded import LoadedModel
from shipyard.models.pyfunc import pyfunc_function
from shipyard.models.signature import Signature, to_frame

if TYPE_CHECKING:
    import pandas as pd

INPUT_EXAMPLE = "input_example.json"
SERVING_EXAMPLE = "serving_input_example.json"
SHIPYARD_VERSION = "0.1.0"


def save_model(
    model: object,
    path: str | Path,
    *,
    flavor: str | None = None,
    input_example: Any = None,
    signature: Signature | Mapping[str, Any] | None = None,
    code_paths: Sequence[str | Path] | None = None,
    artifacts: Mapping[str, str | Path] | None = None,
    metadata: Mapping[str, Any] | None = None,
    pip_requirements: Sequence[str] | None = None,
    extra_pip_requirements: Sequence[str] | None = None,
    overwrite: bool = False,
    **flavor_options: Any,
) -> Path:
    """Save ``model`` as a model directory at ``path`` and return the path.

    ``flavor``: a name from ``shipyard.models.flavors.base.FLAVORS``; detected from the model's
    type when omitted. ``input_example``: a DataFrame, record(s) or 2-D array; stored as
    ``input_example.json`` and used to infer the signature (else the model's fitted feature names
    are used, all ``double``). ``signature``: a ``Signature`` or an MLmodel-style mapping.
    ``code_paths``: files/folders copied to ``code/`` and put on ``sys.path`` when loading (custom
    Python models). ``artifacts``: ``{name: local path}`` for custom Python models. Remaining
    keyword options go to the flavor (e.g. ``serialization_format="pickle"`` for sklearn).
    """
    dest = Path(path)
    if dest.exists() and any(dest.iterdir()) and not overwrite:
        raise AlreadyExists(
            f"{str(dest)!r} already exists and is not empty; choose another path or pass overwrite=True",
            {"path": str(dest)},
        )
    fl: Flavor = get_flavor(flavor) if flavor else detect_flavor(model)
    if flavor in LOAD_ONLY:
        raise InvalidInput(f"flavor {flavor!r} can only be loaded; save with one of {sorted(FLAVORS)}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        pyfunc: dict[str, Any] = {"loader_module": mm.LOADER_MODULE, "python_version": mm.python_version()}
        if code_paths:
            code_dir = tmp / "code"
            code_dir.mkdir()
            for item in code_paths:
                src = Path(item)
                if src.is_dir():
                    shutil.copytree(src, code_dir / src.name, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(src, code_dir / src.name)
            pyfunc["code"] = "code"
            sys.path.insert(0, str(code_dir))
        section = fl.save(model, tmp, artifacts=artifacts, input_example=input_example, **flavor_options)
        sig = _resolve_signature(signature, input_example, fl.feature_names(model))
        doc: dict[str, Any] = {"artifact_path": None, "flavors": {}}
        requirements_of = getattr(fl, "requirements", None)
        base = requirements_of(section.get("serialization_format", "")) if requirements_of else fl.pip_requirements
        reqs = list(pip_requirements) if pip_requirements is not None else mm.pinned([*base, "shipyard-ml"])
        reqs += list(extra_pip_requirements or [])
        pyfunc["env"] = mm.write_environment(tmp, reqs)
        pyfunc["predict_fn"] = "predict"
        pyfunc["shipyard_flavor"] = fl.name
        doc["flavors"] = {"python_function": pyfunc, fl.name: section}
        doc["model_uuid"] = uuid.uuid4().hex
        doc["utc_time_created"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        if sig is not None:
            doc["signature"] = sig.to_mlmodel()
        example = None
        if input_example is not None:
            example = to_frame(input_example, sig.input_names if sig else None)
            _write_example(tmp, example)
            doc["saved_input_example_info"] = {
                "artifact_path": INPUT_EXAMPLE,
                "pandas_orient": "split",
                "serving_input_path": SERVING_EXAMPLE,
                "type": "dataframe",
            }
        if metadata:
            doc["metadata"] = dict(metadata)
        doc["shipyard_version"] = SHIPYARD_VERSION
        doc["model_size_bytes"] = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
        mm.write_yaml(tmp / mm.MLMODEL, doc)
        record: dict[str, Any] = {"format": 1, "flavor": fl.name}
        if example is not None:
            loaded = _load(tmp, trusted=True, verify=False)
            record["expected_output"] = encode_output(loaded.predict(example))
        record["files"] = mm.file_digests(tmp)
        (tmp / mm.SHIPYARD_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def load_model(path: str | Path, *, trusted: bool = False, verify: bool = True) -> LoadedModel:
    """Load a model directory written by Shipyard or MLflow.

    ``trusted=True`` allows pickle-based files (see ``flavors/base.py``): pass it only for a
    directory from a store you trust (the registry does, after checking the sha256).
    ``verify=False`` skips the per-file sha256 check against ``shipyard.json``.
    """
    return _load(Path(path), trusted=trusted, verify=verify)


def _load(path: Path, *, trusted: bool, verify: bool) -> LoadedModel:
    doc = mm.read_mlmodel(path)
    record = mm.read_shipyard_file(path)
    if verify and isinstance(record.get("files"), dict):
        mm.verify_digests(path, record["files"])
    name, section = choose_flavor(path, doc, record)
    code = doc["flavors"].get("python_function", {}).get("code")
    if code and (path / code).is_dir() and str(path / code) not in sys.path:
        sys.path.insert(0, str(path / code))
    signature = Signature.from_mlmodel(doc.get("signature"))
    options = LoadOptions(trusted=trusted, input_names=tuple(signature.input_names) if signature else None)
    loaded = get_flavor(name).load(path, section, options)
    loaded.signature = signature
    loaded.mlmodel = doc
    loaded.path = path
    loaded.metadata = {
        **(doc.get("metadata") or {}),
        "flavor": name,
        "model_uuid": doc.get("model_uuid"),
        "created": doc.get("utc_time_created"),
        "saved_by": "shipyard" if doc.get("shipyard_version") else ("mlflow" if doc.get("mlflow_version") else None),
    }
    loaded.pyfunc_fn = pyfunc_function(doc, name, loaded.native)
    loaded.input_example = read_input_example(path, doc)
    if "expected_output" in record:
        loaded.expected_output = decode_output(record["expected_output"])
    return loaded


def choose_flavor(path: Path, doc: dict[str, Any], record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(flavor name, its MLmodel section): the flavor ``load_model`` loads the package with."""
    flavors: dict[str, Any] = doc["flavors"]
    pyfunc = flavors.get("python_function") or {}
    wanted = record.get("flavor") or pyfunc.get("shipyard_flavor")
    if wanted:
        if wanted not in FLAVORS and wanted not in LOAD_ONLY:
            get_flavor(wanted)  # raises InvalidInput naming the known flavors
        return wanted, flavors.get(wanted) or {}
    for key in flavors:
        if key in FLAVORS:
            return key, flavors[key] or {}
    loader = str(pyfunc.get("loader_module") or "")
    if loader.startswith("mlflow."):
        return "mlflow_pyfunc", pyfunc
    raise InvalidInput(
        f"the model in {str(path)!r} has flavors {sorted(flavors)}, none of which Shipyard can load; "
        f"known flavors are {sorted(FLAVORS)} and MLflow pyfunc models",
        {"path": str(path), "flavors": sorted(flavors), "known": sorted(FLAVORS)},
    )


def _resolve_signature(signature: Any, example: Any, names: list[str] | None) -> Signature | None:
    if isinstance(signature, Signature):
        return signature
    if isinstance(signature, Mapping):
        return Signature.from_mlmodel(signature)
    if example is not None:
        arr_like = isinstance(example, np.ndarray) or (
            isinstance(example, list) and example and not isinstance(example[0], Mapping)
        )
        return Signature.infer(example, names if arr_like else None)
    if names:
        return Signature.from_columns(names)
    return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value


def _write_example(path: Path, frame: Any) -> None:
    """MLflow's split orient; floats written with full precision (repr), NaN as null."""
    data = [[_jsonable(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    body = {"columns": [str(c) for c in frame.columns], "data": data}
    (path / INPUT_EXAMPLE).write_text(json.dumps(body), encoding="utf-8")
    (path / SERVING_EXAMPLE).write_text(json.dumps({"dataframe_split": body}, indent=2), encoding="utf-8")


def read_input_example(path: str | Path, doc: Mapping[str, Any] | None = None) -> pd.DataFrame | None:
    """The stored input example as a DataFrame (``None`` if the model has none)."""
    import pandas as pd

    path = Path(path)
    doc = doc if doc is not None else mm.read_mlmodel(path)
    info = doc.get("saved_input_example_info") or {}
    file = path / str(info.get("artifact_path") or INPUT_EXAMPLE)
    if not info or not file.is_file():
        return None
    body = json.loads(file.read_text(encoding="utf-8"))
    if isinstance(body, dict) and "dataframe_split" in body:
        body = body["dataframe_split"]
    if isinstance(body, dict) and "columns" in body:
        return pd.DataFrame(body["data"], columns=body["columns"])
    if isinstance(body, list):
        return pd.DataFrame(body)
    return pd.DataFrame([body]) if isinstance(body, dict) else None


def encode_output(out: Any) -> dict[str, Any]:
    """JSON form of a prediction (array, DataFrame or list) for ``shipyard.json``."""
    import pandas as pd

    if isinstance(out, pd.DataFrame):
        return {"type": "dataframe", "columns": [str(c) for c in out.columns], "data": out.to_numpy().tolist()}
    if isinstance(out, Mapping):
        return {"type": "mapping", "data": {str(k): plain_output(v) for k, v in out.items()}}
    if isinstance(out, pd.Series):
        out = out.to_numpy()
    arr = np.asarray(out)
    return {"type": "ndarray", "dtype": str(arr.dtype), "data": arr.tolist()}


def decode_output(doc: Mapping[str, Any]) -> pd.DataFrame | dict[str, Any] | np.ndarray:
    import pandas as pd

    if doc.get("type") == "dataframe":
        return pd.DataFrame(doc["data"], columns=doc["columns"])
    if doc.get("type") == "mapping":
        return dict(doc["data"])
    dtype = doc.get("dtype")
    try:
        return np.asarray(doc["data"], dtype=dtype)
    except (TypeError, ValueError):
        return np.asarray(doc["data"])


def plain_output(value: Any) -> JSON:
    """A model output (or a part of one) as JSON-ready Python values (arrays as lists)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): plain_output(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_output(v) for v in value]
    return _jsonable(value)
