"""Prometheus metrics for the prediction path, in a registry owned by one server instance."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServingMetrics:
    """Requests, errors and latency (total, features, model) per scene, version and arm."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("scene", "version", "arm")
        self.requests = Counter("shipyard_predictions", "Prediction requests served",
                                (*labels, "status"), registry=self.registry)
        self.errors = Counter("shipyard_prediction_errors", "Prediction requests that failed",
                              (*labels, "code"), registry=self.registry)
        self.fallbacks = Counter("shipyard_prediction_fallbacks", "Responses served from the fallback",
                                 labels, registry=self.registry)
        self.latency = Histogram("shipyard_prediction_latency_seconds", "Prediction latency by stage",
                                 (*labels, "stage"), buckets=BUCKETS, registry=self.registry)
        self.log_dropped = Counter("shipyard_prediction_log_dropped", "Prediction-log records dropped (queue full)",
                                   registry=self.registry)
        self._children: dict[tuple[str, str, str], tuple] = {}

    def _for(self, scene: str, version: str, arm: str) -> tuple:
        key = (scene, version, arm)
        found = self._children.get(key)
        if found is None:
            found = (
                self.requests.labels(scene, version, arm, "ok"),
                self.latency.labels(scene, version, arm, "total"),
                self.latency.labels(scene, version, arm, "features"),
                self.latency.labels(scene, version, arm, "model"),
            )
            self._children[key] = found
        return found

    def observe(self, scene: str, version: str, arm: str, total_s: float, features_s: float, model_s: float,
                fallback: bool = False) -> None:
        ok, total, feats, model = self._for(scene, version, arm)
        ok.inc()
        total.observe(total_s)
        if features_s:
            feats.observe(features_s)
        model.observe(model_s)
        if fallback:
            self.fallbacks.labels(scene, version, arm).inc()

    def error(self, scene: str, version: str, arm: str, code: str, status: int) -> None:
        self.requests.labels(scene, version, arm, str(status)).inc()
        self.errors.labels(scene, version, arm, code).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
