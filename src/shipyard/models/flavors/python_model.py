"""Custom Python models (``shipyard.models.python_model.PythonModel`` subclasses).

Saved as ``python_model.pkl`` (cloudpickle, or pickle when cloudpickle is absent) plus the
artifacts copied under ``artifacts/``; or, when ``save_model`` is given a ``"module:Class"``
string, by reference (no pickle: the class is imported and instantiated without arguments). A
pickled model — or one whose code ships in the model directory — loads only with ``trusted=True``.
"""

from __future__ import annotations

import importlib
import pickle
import shutil
from pathlib import Path
from typing import Any

from shipyard.errors import InvalidInput, ModelError, NotFound
from shipyard.models.flavors.base import LoadOptions, refuse_untrusted
from shipyard.models.loaded import LoadedModel
from shipyard.models.python_model import PythonModel, PythonModelContext

PICKLE_FILE = "python_model.pkl"


def _import_class(ref: str) -> type[PythonModel]:
    module, _, name = ref.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise NotFound(f"cannot import {ref!r} ({exc}); install the package that defines it") from exc
    if not (isinstance(cls, type) and issubclass(cls, PythonModel)):
        raise InvalidInput(f"{ref!r} is not a shipyard.models.PythonModel subclass")
    return cls


class PythonModelFlavor:
    name = "python_model"
    pip_requirements: tuple[str, ...] = ("cloudpickle", "pandas", "numpy")

    def matches(self, model: Any) -> bool:
        return isinstance(model, PythonModel) or (isinstance(model, str) and ":" in model)

    def feature_names(self, model: Any) -> list[str] | None:
        return None

    def save(self, model: Any, path: Path, *, artifacts: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:
        section: dict[str, Any] = {}
        if isinstance(model, str):
            _import_class(model)
            section["class"] = model
        else:
            try:
                import cloudpickle as pickler

                section["serialization_format"] = "cloudpickle"
                section["cloudpickle_version"] = pickler.__version__
            except ImportError:
                pickler = pickle  # type: ignore[assignment]
                section["serialization_format"] = "pickle"
            with (path / PICKLE_FILE).open("wb") as fh:
                pickler.dump(model, fh)
            section["python_model"] = PICKLE_FILE
        if artifacts:
            (path / "artifacts").mkdir()
            stored = {}
            for key, src in artifacts.items():
                src_path = Path(src)
                if not src_path.exists():
                    raise NotFound(f"artifact {key!r} points at {str(src_path)!r}, which does not exist")
                target = path / "artifacts" / key
                if src_path.is_dir():
                    shutil.copytree(src_path, target)
                else:
                    target.mkdir()
                    shutil.copy2(src_path, target / src_path.name)
                    target = target / src_path.name
                stored[key] = target.relative_to(path).as_posix()
            section["artifacts"] = stored
        return section

    def load(self, path: Path, section: dict[str, Any], options: LoadOptions) -> LoadedModel:
        if (path / "code").is_dir():
            refuse_untrusted(path, "code", options)
        if "class" in section:
            model = _import_class(str(section["class"]))()
        else:
            file = str(section.get("python_model") or PICKLE_FILE)
            if not (path / file).is_file():
                raise NotFound(
                    f"model file {file!r} named in MLmodel is missing from {str(path)!r}; re-save the model",
                    {"path": str(path / file), "file": file},
                )
            refuse_untrusted(path, file, options)
            with (path / file).open("rb") as fh:
                model = pickle.load(fh)  # noqa: S301 - trusted store (checked above)
        context = PythonModelContext(
            artifacts={k: str((path / v).resolve()) for k, v in (section.get("artifacts") or {}).items()},
            path=path,
        )
        try:
            model.load_context(context)
        except Exception as exc:
            raise ModelError(f"{type(model).__name__}.load_context raised {type(exc).__name__}: {exc}",
                             {"exception": type(exc).__name__}) from exc
        model.context = context  # type: ignore[attr-defined]
        return LoadedModel(
            self.name,
            model,
            predict_array=model.predict_array if model.has_array_path() else None,
            predict_frame=model.run,
            classes=model.classes,
        )


FLAVOR = PythonModelFlavor()
