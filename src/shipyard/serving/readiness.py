"""Warm readiness: a server is ready once what it serves is loaded and warmed.

At start a background thread loads every scene of the server's project (compiling it loads its
models) and the ``--model`` of a one-model server, then warms each model with the hot-swap
warm-up (``hotswap.warm_up`` on the model's input example) and runs each scene's arms on the
same examples. ``report()`` says whether that is done: ``/readyz`` answers 503 with the scenes
and models still pending or failed, and 200 once all are warm. A load that fails is retried every
``retry_s`` seconds; after ``timeout_s`` the server reports ready anyway, naming what failed (one
broken scene must not keep a fleet out of rotation forever). With ``timeout_s`` 0 readiness does
not wait for warm-up. Scenes applied later, and projects other than the server's own, load on
their first request or the hot-swap poll as before.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from shipyard.errors import ShipyardError
from shipyard.serving.engine import ServedModel, ServingEngine
from shipyard.serving.hotswap import model_examples, warm_up
from shipyard.serving.scene import latest_versions

log = logging.getLogger(__name__)

PENDING, READY, FAILED = "pending", "ready", "failed"


class Readiness:
    def __init__(self, engine: ServingEngine, *, timeout_s: float = 300.0, single_model: tuple[str, str] | None = None,
                 retry_s: float = 5.0, max_warmup_s: float = 10.0) -> None:
        self.engine = engine
        self.timeout_s = float(timeout_s)
        self.single_model = single_model
        self.retry_s = retry_s
        self.max_warmup_s = max_warmup_s
        self.items: dict[str, dict[str, Any]] = {}
        self.listed = False  # the scenes to serve are known
        self.started_at = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        if self._thread is None and self.timeout_s > 0:
            self.started_at = time.monotonic()
            self._thread = threading.Thread(target=self._run, name="shipyard-warm-up", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    # -- the work ---------------------------------------------------------------------------------
    def _set(self, key: str, status: str, **info: Any) -> None:
        with self._lock:
            self.items[key] = {"status": status, **info}

    def _run(self) -> None:
        ws = self.engine.ws
        try:
            names = sorted(latest_versions(ws)) if ws is not None else []
        except Exception as exc:  # the metadata store is down: readiness says so, and tries again
            log.warning("warm-up: could not list scenes: %s", exc)
            names = None
        while names is None and not self._stop.wait(self.retry_s):
            try:
                names = sorted(latest_versions(ws)) if ws is not None else []
            except Exception:
                names = None
        if names is None:
            return
        for name in names:
            self._set(f"scene:{name}", PENDING)
        if self.single_model is not None:
            self._set("model:{}@{}".format(*self.single_model), PENDING)
        self.listed = True
        while not self._stop.is_set():
            for key in [k for k, v in list(self.items.items()) if v["status"] != READY]:
                if self._stop.is_set():
                    return
                self._warm(key)
            if all(v["status"] == READY for v in self.items.values()) or self.timed_out():
                return
            self._stop.wait(self.retry_s)

    def _warm(self, key: str) -> None:
        kind, _, name = key.partition(":")
        start = time.monotonic()
        try:
            if kind == "scene":
                info = self._warm_scene(name)
            else:
                model, _, ref = name.rpartition("@")
                info = self._warm_model(model, ref)
        except ShipyardError as exc:
            self._set(key, FAILED, reason=exc.message, code=exc.code)
            log.warning("warm-up: %s failed: %s", key, exc.message)
            return
        except Exception as exc:  # a model's own code may raise anything
            self._set(key, FAILED, reason=f"{type(exc).__name__}: {exc}"[:500], code="internal")
            log.exception("warm-up: %s failed", key)
            return
        self._set(key, READY, seconds=round(time.monotonic() - start, 3), **info)

    def _warm_scene(self, name: str) -> dict[str, Any]:
        served = self.engine.scene(name)  # compiles the scene: loads its models and feature services
        examples: list[dict[str, Any]] = []
        calls = 0
        for plan in served.compiled.plans.values():
            for node in plan.model_nodes():
                model = ServedModel(node.name, node.ref, node.version, node.model)
                found = model_examples(node.model)
                calls += warm_up(model.predict, found, 0.0, max_s=self.max_warmup_s, stop=self._stop)["warmup_calls"]
                examples.extend(found[:1])
        rows = [{**row} for row in examples] or [{}]
        for plan in served.compiled.plans.values():
            # the scene's own path (expressions, rules, feature reads) on the models' examples
            calls += warm_up(lambda rs, plan=plan: plan.run([dict(r) for r in rs]), rows, 0.0, min_calls=3,
                             max_s=self.max_warmup_s, stop=self._stop)["warmup_calls"]
        return {"version": served.version, "warmup_calls": calls}

    def _warm_model(self, name: str, ref: str) -> dict[str, Any]:
        served = self.engine.model(name, ref)
        info = warm_up(served.predict, model_examples(served.model), 0.0, max_s=self.max_warmup_s, stop=self._stop)
        return {"version": served.version, "warmup_calls": info["warmup_calls"]}

    # -- the answer -------------------------------------------------------------------------------
    def timed_out(self) -> bool:
        return time.monotonic() - self.started_at > self.timeout_s

    def report(self) -> tuple[bool, dict[str, Any]]:
        """(ready, details): details name every scene and model pending or failed."""
        if self.timeout_s <= 0:
            return True, {}
        with self._lock:
            items = {k: dict(v) for k, v in self.items.items()}
        pending = sorted(k for k, v in items.items() if v["status"] == PENDING)
        failed = {k: v.get("reason", "") for k, v in items.items() if v["status"] == FAILED}
        warm = sorted(k for k, v in items.items() if v["status"] == READY)
        details: dict[str, Any] = {"warm": warm, "pending": pending, "failed": failed}
        if not self.listed:
            details["pending"] = ["the list of scenes (metadata store)"]
        if (self.listed and not pending and not failed) or self.timed_out():
            if pending or failed:
                details["reason"] = (f"warm-up gave up after readiness_timeout_s={self.timeout_s:g} s: "
                                     + _describe(details["pending"], failed))
            return True, details
        details["reason"] = "warming up: " + _describe(details["pending"], failed)
        return False, details


def _describe(pending: list[str], failed: dict[str, str]) -> str:
    parts = []
    if pending:
        parts.append("pending " + ", ".join(pending))
    if failed:
        parts.append("failed " + "; ".join(f"{k} ({v})" for k, v in failed.items()))
    return "; ".join(parts)
