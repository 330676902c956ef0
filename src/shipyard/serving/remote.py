"""``Client.scenes``: scenes and predictions on a remote server, with the same errors as local calls."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shipyard.errors import Conflict
from shipyard.jsontypes import JSON

if TYPE_CHECKING:
    from shipyard.connection import Connection


class RemoteServing:
    def __init__(self, client: Connection) -> None:
        self.client = client

    def predict(self, scene: str, record: dict[str, Any] | None = None, *,
                records: list[dict[str, Any]] | None = None, arm: str | None = None) -> dict[str, Any]:
        """One record (``outputs`` is an object) or a batch (``outputs`` is a list)."""
        if (record is None) == (records is None):
            raise ValueError("pass one record or records=[...]")
        headers = {"x-shipyard-arm": arm} if arm else {}
        body = record if record is not None else {"records": records}
        return self.client.post(f"/v1/scenes/{scene}/predict", json=body, headers=headers)

    def predict_model(self, name: str, ref: str = "champion", records: Any = None) -> JSON:
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

    # -- canary rollouts: they run inside the server, where the traffic they judge is ----------
    def rollout(self, name: str, arm: str, steps: Sequence[float] = (5, 25, 50, 100), *,
                min_requests: int | None = None, interval_s: float | None = None,
                timeout_s: float | None = None) -> dict[str, Any]:
        """Start a rollout of ``arm`` on the server; the release with its first step."""
        body: dict[str, Any] = {"arm": arm, "steps": list(steps)}
        for key, value in (("min_requests", min_requests), ("interval_s", interval_s), ("timeout_s", timeout_s)):
            if value is not None:
                body[key] = value
        return self.client.post(f"/api/v1/scenes/{quote(name, safe='')}/rollout", json=body)

    def rollout_status(self, name: str) -> dict[str, Any]:
        """The scene's newest release: status, percent, steps, checks, reason."""
        return self.client.get(f"/api/v1/scenes/{quote(name, safe='')}/rollout")

    def abort_rollout(self, name: str) -> dict[str, Any]:
        """Abort the running rollout (recorded as 'aborted' at 0 %)."""
        return self.client.delete(f"/api/v1/scenes/{quote(name, safe='')}/rollout")

    def watch_rollout(self, name: str, *, poll_s: float = 1.0, timeout_s: float | None = None) -> Iterator[dict[str, Any]]:
        """Yield the release each time its status, percent or checks change, until it ends."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        seen = None
        while True:
            state = self.rollout_status(name)
            key = (state["release"], state["status"], state["percent"], len(state["checks"]))
            if key != seen:
                seen = key
                yield state
            if state["status"] != "running":
                return
            if deadline is not None and time.monotonic() > deadline:
                raise Conflict(f"rollout of scene {name!r} is still running after {timeout_s:g} s; it goes on "
                               "in the server", {"scene": name, "release": state["release"]})
            time.sleep(poll_s)
