"""Where a version comes from: a local model folder, a run's artifact, or an uploaded archive.

Everything here runs before the registry touches the database, so a bad source fails with a clear
error and leaves nothing behind.
"""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from tempfile import TemporaryDirectory
from typing import TYPE_CHECKING, Any

from shipyard.config import in_hosted_projects
from shipyard.errors import Forbidden, InvalidInput, NotFound, PayloadTooLarge

if TYPE_CHECKING:
    from shipyard.workspace import Workspace

RUN_SCHEME = "runs:/"
ARTIFACT_SCHEME = "artifacts:/"
PYFUNC = "python_function"


def model_flavor(mlmodel: dict[str, Any], path: Path) -> str:
    """The flavor Shipyard will load the model with (the same choice ``load_model`` makes)."""
    from shipyard.models.flavors.base import FLAVORS, LOAD_ONLY, get_flavor
    from shipyard.models.mlmodel import read_shipyard_file

    flavors = mlmodel.get("flavors") or {}
    pyfunc = flavors.get(PYFUNC) or {}
    wanted = read_shipyard_file(path).get("flavor") or pyfunc.get("shipyard_flavor")
    if wanted:
        if wanted not in FLAVORS and wanted not in LOAD_ONLY:
            get_flavor(str(wanted))  # InvalidInput naming the known flavors
        return str(wanted)
    for key in flavors:
        if key in FLAVORS:
            return key
    if str(pyfunc.get("loader_module") or "").startswith("mlflow."):
        return "mlflow_pyfunc"
    raise InvalidInput(
        f"model in {str(path)!r} has flavor(s) {sorted(flavors)} and Shipyard loads none of them; "
        f"save it with one of {sorted(FLAVORS)} (shipyard.models.save_model or mlflow)",
        {"field": "flavors", "flavors": sorted(flavors), "known": sorted(FLAVORS)},
    )


def model_signature(mlmodel: dict[str, Any]) -> dict[str, Any] | None:
    """MLmodel's signature with its JSON-in-YAML strings parsed."""
    raw = mlmodel.get("signature")
    if not isinstance(raw, dict):
        return None
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, str):
            try:
                out[key] = json.loads(value)
            except json.JSONDecodeError:
                out[key] = value
        else:
            out[key] = value
    return out


def inspect_model_dir(path: Path) -> tuple[str, dict[str, Any] | None]:
    """(flavor, signature) of a model folder; NotFound/InvalidInput when it is not one."""
    from shipyard.models.mlmodel import read_mlmodel

    if not path.is_dir():
        raise NotFound(
            f"model folder {str(path)!r} does not exist; give the folder that holds the MLmodel file",
            {"field": "path", "path": str(path)},
        )
    mlmodel = read_mlmodel(path)
    return model_flavor(mlmodel, path), model_signature(mlmodel)


@contextmanager
def resolve_source(ws: Workspace, source: str | Path, run_id: str | None) -> Iterator[tuple[Path, str | None]]:
    """Yield (local model folder, source run id) for a folder, ``runs:/ID/PATH`` or ``artifacts:/PATH``."""
    text = str(source)
    if text.startswith(RUN_SCHEME):
        rest = text[len(RUN_SCHEME):].strip("/")
        found_run, _, sub = rest.partition("/")
        if not found_run or not sub:
            raise InvalidInput(
                f"run artifact {text!r} must look like runs:/<run_id>/<artifact path>, e.g. runs:/3f2a/model",
                {"field": "source"},
            )
        with TemporaryDirectory(prefix="shipyard-register-") as tmp:
            yield _run_artifact(ws, found_run, sub, Path(tmp) / "model"), run_id or found_run
        return
    if text.startswith(ARTIFACT_SCHEME):
        key = text[len(ARTIFACT_SCHEME):].strip("/")
        if in_hosted_projects(ws.settings, key):
            raise Forbidden(f"source {text!r} names another project's artifacts; register from artifacts of "
                            "this project, or ask that project's modeler", {"field": "source"})
        with _downloaded(ws, key, text) as folder:
            yield folder, run_id
        return
    yield Path(source).expanduser().resolve(), run_id


def _run_artifact(ws: Workspace, run_id: str, path: str, dst: Path) -> Path:
    """Download a run's logged model folder through the tracking API (bytes checked on the way)."""
    try:
        tracking = ws.tracking
    except ImportError as exc:
        raise InvalidInput(
            "registering from runs:/ needs run tracking, which is not installed here; register the "
            "model folder instead",
            {"field": "source"},
        ) from exc
    folder = tracking.download_artifacts(run_id, path, dst)
    if not Path(folder).is_dir():
        raise InvalidInput(
            f"runs:/{run_id}/{path} is a single file, not a model folder; give the folder holding MLmodel",
            {"field": "source"},
        )
    return Path(folder)


@contextmanager
def _downloaded(ws: Workspace, prefix: str, shown: str) -> Iterator[Path]:
    with TemporaryDirectory(prefix="shipyard-register-") as tmp:
        try:
            folder = ws.artifacts.download(prefix, Path(tmp) / "model")
        except NotFound:
            raise NotFound(
                f"no artifact at {shown!r} (looked under {prefix!r}); check the run id and the path "
                "the model was logged at",
                {"field": "source", "path": prefix},
            ) from None
        yield folder


def extract_archive(data: bytes, dest: Path, max_bytes: int) -> Path:
    """Unpack a .tar.gz/.tar or .zip model upload into ``dest``; returns the model folder.

    Refuses absolute paths, ``..``, links and devices, and stops when the unpacked size passes
    ``max_bytes``. An archive holding one top-level folder (``model/MLmodel``) is unwrapped.
    """
    if not data:
        raise InvalidInput("the upload is empty; send the model folder as a .tar.gz or .zip body", {"field": "body"})
    dest.mkdir(parents=True, exist_ok=True)
    total = 0

    def target(name: str) -> Path | None:
        pure = PurePosixPath(name.replace("\\", "/"))
        if pure.is_absolute() or ".." in pure.parts:
            raise InvalidInput(
                f"archive member {name!r} escapes the model folder; pack paths relative to it",
                {"field": "body", "member": name},
            )
        parts = [p for p in pure.parts if p not in ("", ".")]
        return dest.joinpath(*parts) if parts else None

    def count(size: int) -> None:
        nonlocal total
        total += size
        if total > max_bytes:
            raise PayloadTooLarge(
                f"the unpacked model is larger than {max_bytes} bytes (max_request_bytes); raise the "
                "setting or register from a run artifact",
                {"field": "body", "limit": max_bytes},
            )

    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                out = target(info.filename)
                if out is None or info.is_dir():
                    continue
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise InvalidInput(f"archive member {info.filename!r} is a link; pack real files", {"field": "body"})
                count(info.file_size)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(archive.read(info))
    else:
        try:
            archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
        except tarfile.TarError:
            raise InvalidInput(
                "the upload is neither a tar(.gz) nor a zip archive; pack the model folder with "
                "'tar czf model.tar.gz -C MODEL_DIR .'",
                {"field": "body"},
            ) from None
        with archive:
            for member in archive.getmembers():
                out = target(member.name)
                if out is None or member.isdir():
                    continue
                if not member.isfile():
                    raise InvalidInput(
                        f"archive member {member.name!r} is a link or device; pack real files",
                        {"field": "body", "member": member.name},
                    )
                count(member.size)
                handle = archive.extractfile(member)
                assert handle is not None
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(handle.read())
    entries = [p for p in dest.iterdir()]
    if len(entries) == 1 and entries[0].is_dir() and not (dest / "MLmodel").exists():
        return entries[0]
    return dest


def pack_archive(folder: Path) -> bytes:
    """A .tar.gz of a folder's files, paths relative to it (the download format)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.add(file, arcname=file.relative_to(folder).as_posix(), recursive=False)
    return buffer.getvalue()
