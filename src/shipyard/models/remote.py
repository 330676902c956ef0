"""``sy.Client(url).models``: the registry of a remote server, with the same method names."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shipyard.artifacts import sha256_dir
from shipyard.errors import IntegrityError, InvalidInput
from shipyard.models.registry.names import LATEST
from shipyard.models.registry.records import AliasMove, ModelVersion, RegisteredModel
from shipyard.models.registry.sources import pack_archive

if TYPE_CHECKING:
    from shipyard.connection import Connection
    from shipyard.models.loaded import LoadedModel

BASE = "/api/v1/models"


def model_cache_dir() -> Path:
    """Where downloaded versions are kept: SHIPYARD_CACHE_DIR, else ~/.cache/shipyard/models."""
    return Path(os.environ.get("SHIPYARD_CACHE_DIR") or Path.home() / ".cache" / "shipyard") / "models"


def _q(part: str | int) -> str:
    return quote(str(part), safe="")


class RemoteRegistry:
    """Acts as the client's token's user; the server decides who that is."""

    def __init__(self, client: Connection) -> None:
        self.client = client

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.client.request(method, BASE + path, **kwargs)

    # -- models --------------------------------------------------------------------------------
    def create_model(self, name: str, description: str = "", requires_approval: bool = True,
                     tags: Mapping[str, Any] | None = None) -> RegisteredModel:
        body = {"name": name, "description": description, "requires_approval": requires_approval,
                "tags": dict(tags or {})}
        return RegisteredModel.from_dict(self._call("POST", "", json=body))

    def get_model(self, name: str) -> RegisteredModel:
        return RegisteredModel.from_dict(self._call("GET", f"/{_q(name)}"))

    def get(self, name: str) -> RegisteredModel:
        """The same as ``get_model``."""
        return self.get_model(name)

    def list_models(self) -> list[RegisteredModel]:
        return [RegisteredModel.from_dict(m) for m in self._call("GET", "")]

    # -- versions ------------------------------------------------------------------------------
    def register(self, path_or_run_artifact: str | Path, name: str, run_id: str | None = None,
                 lineage: Mapping[str, Any] | None = None, tags: Mapping[str, Any] | None = None,
                 metrics: Mapping[str, Any] | None = None, await_validation: bool = False) -> ModelVersion:
        """Upload a local model folder (as .tar.gz), or register a ``runs:/``/``artifacts:/`` source."""
        text = str(path_or_run_artifact)
        if text.startswith(("runs:/", "artifacts:/")):
            body = {"source": text, "run_id": run_id, "lineage": dict(lineage or {}), "tags": dict(tags or {}),
                    "metrics": dict(metrics or {}), "await_validation": await_validation}
            return ModelVersion.from_dict(self._call("POST", f"/{_q(name)}/versions", json=body))
        folder = Path(path_or_run_artifact)
        if not folder.is_dir():
            raise InvalidInput(f"model folder {text!r} does not exist", {"field": "path"})
        params: dict[str, Any] = {"await_validation": str(bool(await_validation)).lower(),
                                  "metadata": json.dumps({"tags": dict(tags or {}), "metrics": dict(metrics or {}),
                                                          "lineage": dict(lineage or {})})}
        if run_id:
            params["run_id"] = run_id
        data = self._call("POST", f"/{_q(name)}/versions/upload", params=params, content=pack_archive(folder),
                          timeout=None)
        return ModelVersion.from_dict(data)

    def get_version(self, name: str, version_or_alias: int | str) -> ModelVersion:
        return ModelVersion.from_dict(self._call("GET", f"/{_q(name)}/versions/{_q(version_or_alias)}"))

    def list_versions(self, name: str, status: str | None = None) -> list[ModelVersion]:
        params = {"status": status} if status else None
        return [ModelVersion.from_dict(v) for v in self._call("GET", f"/{_q(name)}/versions", params=params)]

    def delete_version(self, name: str, version: int | str) -> None:
        self._call("DELETE", f"/{_q(name)}/versions/{_q(version)}")

    def validate(self, name: str, version: int | str, *, wait: bool | None = None,
                 timeout: float = 300.0) -> ModelVersion:
        """Run validation again; waits for the result unless ``wait=False`` (as ``ws.registry.validate``)."""
        params = {"wait": str(wait is None or bool(wait)).lower(), "timeout": timeout}
        return ModelVersion.from_dict(self._call("POST", f"/{_q(name)}/versions/{_q(version)}/validate",
                                                 params=params, timeout=timeout + 30))

    def wait_for_validation(self, name: str, version: int | str, timeout: float = 300.0) -> ModelVersion:
        import time

        from shipyard.errors import Conflict
        from shipyard.models.registry.records import FINISHED

        deadline = time.monotonic() + timeout
        while True:
            mv = self.get_version(name, version)
            if mv.status in FINISHED:
                return mv
            if time.monotonic() >= deadline:
                raise Conflict(f"model {name!r} version {version} is still {mv.status} after {timeout:g} s",
                               {"name": name, "version": version, "status": mv.status})
            time.sleep(0.2)

    def approve(self, name: str, version: int | str, comment: str = "") -> ModelVersion:
        body = {"comment": comment}
        return ModelVersion.from_dict(self._call("POST", f"/{_q(name)}/versions/{_q(version)}/approve", json=body))

    def reject(self, name: str, version: int | str, comment: str = "") -> ModelVersion:
        body = {"comment": comment}
        return ModelVersion.from_dict(self._call("POST", f"/{_q(name)}/versions/{_q(version)}/reject", json=body))

    def stress_test(self, name: str, version: int | str, *, rate: float = 200.0, count: int = 1000) -> dict[str, Any]:
        """Latency percentiles of ``count`` calls at ``rate``/s in the server; recorded on the version."""
        return self._call("POST", f"/{_q(name)}/versions/{_q(version)}/stress-test",
                          json={"rate": rate, "count": count})

    def download(self, name: str, version_or_alias: int | str, dst: str | Path) -> Path:
        """Download and unpack a version into ``dst``, checking the sha256 the server recorded."""
        from shipyard.models.registry.sources import extract_archive

        mv = self.get_version(name, version_or_alias)
        data = self._call("GET", f"/{_q(name)}/versions/{mv.version}/download")
        target = Path(dst)
        if target.exists() and any(target.iterdir()):
            raise InvalidInput(f"download target {str(target)!r} is not an empty folder", {"field": "dst"})
        extract_archive(data, target, max(len(data) * 100, 1 << 30))
        actual, _ = sha256_dir(target)
        if actual != mv.sha256:
            raise IntegrityError(f"downloaded model {name!r} version {mv.version} does not match its sha256",
                                 {"expected_sha256": mv.sha256, "actual_sha256": actual})
        return target

    def load(self, name: str, version_or_alias: int | str = LATEST) -> LoadedModel:
        """Download the version (once; kept in a local cache by sha256) and load it.

        The files are checked against the sha256 the server recorded before anything is loaded; the
        server is the trust boundary, as for ``ws.registry.load`` (only roles that may upload code
        register models)."""
        from shipyard.models.package import load_model

        mv = self.get_version(name, version_or_alias)
        host = "".join(c if c.isalnum() else "_" for c in self.client.url.split("://", 1)[-1])
        cache = model_cache_dir() / host / mv.name / f"{mv.version}-{mv.sha256[:16]}"
        if not (cache.is_dir() and sha256_dir(cache)[0] == mv.sha256):
            shutil.rmtree(cache, ignore_errors=True)
            partial = cache.with_name(f"{cache.name}.{os.getpid()}.part")
            shutil.rmtree(partial, ignore_errors=True)
            self.download(name, mv.version, partial)
            try:
                partial.rename(cache)
            except OSError:  # another process finished the same download first
                shutil.rmtree(partial, ignore_errors=True)
        return load_model(cache, trusted=True)

    def history(self, name: str, limit: int = 200) -> list[dict[str, Any]]:
        return self._call("GET", f"/{_q(name)}/events", params={"limit": limit})

    # -- aliases -------------------------------------------------------------------------------
    def set_alias(self, name: str, alias: str, version: int | str, force: bool = False) -> ModelVersion:
        body = {"version": int(version), "force": force}
        return ModelVersion.from_dict(self._call("PUT", f"/{_q(name)}/aliases/{_q(alias)}", json=body))

    def get_alias(self, name: str, alias: str) -> ModelVersion:
        return ModelVersion.from_dict(self._call("GET", f"/{_q(name)}/aliases/{_q(alias)}"))

    def list_aliases(self, name: str) -> dict[str, int]:
        return self._call("GET", f"/{_q(name)}/aliases")

    def delete_alias(self, name: str, alias: str) -> None:
        self._call("DELETE", f"/{_q(name)}/aliases/{_q(alias)}")

    def rollback(self, name: str, alias: str) -> ModelVersion:
        return ModelVersion.from_dict(self._call("POST", f"/{_q(name)}/aliases/{_q(alias)}/rollback"))

    def alias_history(self, name: str, alias: str) -> list[AliasMove]:
        return [AliasMove.from_dict(m) for m in self._call("GET", f"/{_q(name)}/aliases/{_q(alias)}/history")]


