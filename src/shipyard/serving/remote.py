"""``Client.scenes``: scenes and predictions on a remote server, with the same errors as local calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class RemoteServing:
    def __init__(self, client: Any) -> None:
        self.client = client

    def predict(self, scene: str, record: dict[str, Any] | None = None, *,
                records: list[dict[str, Any]] | None = None, arm: str | None = None) -> dict[str, Any]:
        """One record (``outputs`` is an object) or a batch (``outputs`` is a list)."""
        if (record is None) == (records is None):
            raise ValueError("pass one record or records=[...]")
        headers = {"x-shipyard-arm": arm} if arm else {}
        body = record if record is not None else {"records": records}
        return self.client.post(f"/v1/scenes/{scene}/predict", json=body, headers=headers)

    def predict_model(self, name: str, ref: str = "champion", records: Any = None) -> Any:
        """Predictions of ``name@ref`` for a record or a list of records."""
        body = self.client.post(f"/v1/models/{name}/{ref}/predict", json=records)
        return body["predictions"]

    def apply(self, spec: dict[str, Any] | str | Path, comment: str = "") -> dict[str, Any]:
        if not isinstance(spec, dict):
            from shipyard.serving.scene import load_scene_file

            spec = load_scene_file(spec)
        return self.client.post("/api/v1/scenes", json=spec, params={"comment": comment} if comment else None)

    def list(self) -> list[dict[str, Any]]:
        return self.client.get("/api/v1/scenes")

    def show(self, name: str, version: int | None = None) -> dict[str, Any]:
        return self.client.get(f"/api/v1/scenes/{name}", params={"version": version} if version else None)

    def status(self, name: str) -> dict[str, Any]:
        return self.client.get(f"/api/v1/scenes/{name}/status")
