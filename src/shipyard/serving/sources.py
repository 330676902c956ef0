"""Where a decision flow gets its models and features.

Two tiny interfaces keep the engine independent of the registry and the feature store:

``ModelSource``
    ``resolve(name, ref) -> int`` turns an alias or version into a version number (``NotFound``
    when either is unknown) and ``load(name, version) -> ServableModel`` returns a ready model
    (a ``LoadedModel``, or any object with its scoring members).
``FeatureSource``
    ``lookup(service, entity_rows) -> list[dict]`` reads online features, one dict per entity row;
    ``feature_names(service)`` lists what a service returns (``NotFound`` if unknown). A source
    may also have ``request_fields(service) -> {field: view}``, the request fields its on-demand
    views need, which a scene is then checked to pass when it is applied.

``RegistryModels`` and ``StoreFeatures`` adapt a workspace's registry and feature store;
``ModelCatalog`` and ``StaticFeatures`` hold objects in memory (notebooks, tests, edge runtimes).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from shipyard.errors import NotFound

if TYPE_CHECKING:
    import numpy as np

    from shipyard.workspace import Workspace


class ServableModel(Protocol):
    """What serving calls on a model (``LoadedModel`` has it all; ``signature``, ``pyfunc_is_predict``
    and ``predict_pyfunc`` are read when present)."""

    @property
    def input_names(self) -> list[str]: ...

    @property
    def has_fast_path(self) -> bool: ...

    def predict(self, data: Any, *, labels: bool = False) -> object: ...

    def predict_array(self, X: np.ndarray, *, labels: bool = False) -> object: ...


class ModelSource(Protocol):
    def resolve(self, name: str, ref: str) -> int: ...

    def load(self, name: str, version: int) -> ServableModel: ...


class FeatureSource(Protocol):
    def lookup(self, service: str, entity_rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]: ...

    def feature_names(self, service: str) -> list[str] | None: ...


def _version_of(record: Any) -> int:
    if isinstance(record, Mapping):
        return int(record["version"])
    return int(record.version)


class RegistryModels:
    """Models from the workspace registry (loads are sha256-checked and cached by the registry).

    ``resolve`` refuses (``Conflict``) a version named by number or ``latest`` that was not
    released for serving: not validated, rejected, or unapproved when the model requires approval
    (``registry.release.serving_refusal``); an alias serves what it points at."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._cache: dict[tuple[str, int], Any] = {}
        self._lock = threading.Lock()

    def resolve(self, name: str, ref: str) -> int:
        from shipyard.models.registry.release import serving_refusal

        registry = self.ws.registry
        mv = registry.get_version(name, str(ref))
        refusal = serving_refusal(registry.get_model(name), mv, str(ref))
        if refusal is not None:
            raise refusal
        return _version_of(mv)

    def load(self, name: str, version: int) -> ServableModel:
        key = (name, int(version))
        model = self._cache.get(key)
        if model is None:
            with self._lock:
                model = self._cache.get(key)
                if model is None:
                    # a version marked to run in its own environment comes back as a worker proxy
                    model = self.ws.registry.load_for_serving(name, str(version))
                    self._cache[key] = model
        return model

    def unload(self, name: str, version: int) -> None:
        with self._lock:
            model = self._cache.pop((name, int(version)), None)
        _close(model)

    def close(self) -> None:
        """Stop the worker processes of models served from their own environments."""
        with self._lock:
            models, self._cache = list(self._cache.values()), {}
        for model in models:
            _close(model)


def _close(model: Any) -> None:
    close = getattr(model, "close", None)
    if callable(close):
        close()


class ModelCatalog:
    """In-memory models: ``catalog.add("credit", model, version=1, aliases=["champion"])``."""

    def __init__(self) -> None:
        self._models: dict[str, dict[int, ServableModel]] = {}
        self._aliases: dict[str, dict[str, int]] = {}

    def add(self, name: str, model: ServableModel, *, version: int | None = None,
            aliases: Sequence[str] = ()) -> int:
        versions = self._models.setdefault(name, {})
        number = int(version) if version is not None else max(versions, default=0) + 1
        versions[number] = model
        for alias in aliases:
            self.set_alias(name, alias, number)
        return number

    def set_alias(self, name: str, alias: str, version: int) -> None:
        if version not in self._models.get(name, {}):
            raise NotFound(f"model {name!r} has no version {version}")
        self._aliases.setdefault(name, {})[alias] = int(version)

    def resolve(self, name: str, ref: str) -> int:
        versions = self._models.get(name)
        if versions is None:
            raise NotFound(f"model {name!r} is not registered; register it or fix the name",
                           {"model": name})
        ref = str(ref)
        if ref.isdigit() and int(ref) in versions:
            return int(ref)
        if ref == "latest":
            return max(versions)
        alias = self._aliases.get(name, {}).get(ref)
        if alias is None:
            raise NotFound(f"model {name!r} has no version or alias {ref!r}", {"model": name, "ref": ref})
        return alias

    def load(self, name: str, version: int) -> ServableModel:
        try:
            return self._models[name][int(version)]
        except KeyError:
            raise NotFound(f"model {name!r} has no version {version}", {"model": name}) from None


def _rows_from(result: Any, n: int) -> list[dict[str, Any]]:
    """Normalise a feature-store answer (records, dict of columns or DataFrame) to records."""
    if hasattr(result, "to_dict") and hasattr(result, "columns"):
        return result.to_dict(orient="records")
    if isinstance(result, Mapping):
        if "results" in result:
            return _rows_from(result["results"], n)
        columns = {k: list(v) for k, v in result.items()}
        return [{k: v[i] for k, v in columns.items()} for i in range(n)]
    if hasattr(result, "to_records") and callable(result.to_records):
        return list(result.to_records())
    return [dict(r) for r in result]


class StoreFeatures:
    """Online features through the workspace feature store's feature services."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    def lookup(self, service: str, entity_rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        result = self.ws.features.get_online_features(list(entity_rows), service=service)
        return _rows_from(result, len(entity_rows))

    def feature_names(self, service: str) -> list[str] | None:
        svc = self.ws.features.get_service(service)
        for attr in ("feature_names", "features"):
            names = svc.get(attr) if isinstance(svc, Mapping) else getattr(svc, attr, None)
            if callable(names):
                names = names()
            if names:
                # services list "view:feature" refs; rows come back keyed by the feature name
                return [(n if isinstance(n, str) else str(getattr(n, "name", n))).split(":")[-1] for n in names]
        return None

    def request_fields(self, service: str) -> dict[str, str]:
        """The request fields the on-demand views of ``service`` need: ``{field: view}``."""
        store = self.ws.features
        needed: dict[str, str] = {}
        for view_name in dict.fromkeys(ref.split(":", 1)[0] for ref in store.get_service(service).features):
            for f in getattr(store.get_view(view_name), "request_fields", None) or []:
                needed.setdefault(f.name, view_name)
        return needed

    def log_served(self, scene: str, records: Sequence[Mapping[str, Any]]) -> int:
        """Pass the served vectors of prediction-log ``records`` to the feature store's log.

        Runs on the prediction log's writer thread, never on the request path. Each record row
        becomes one logged vector with the request id (``<id>/<row>`` inside a batch), the
        request time and its entity keys; the store's log is flushed once per call so a write
        of the prediction log and of the feature log go out together. Returns vectors logged.
        """
        from shipyard.features.logging import flush_feature_logs

        store = self.ws.features
        logged = 0
        for rec in records:
            entities, vectors = rec.get("feature_entities"), rec.get("features")
            if not entities or not vectors or rec.get("kind", "live") != "live":
                continue
            ts = dt.datetime.fromtimestamp(rec["ts"] / 1000, tz=dt.UTC)
            batch = len(vectors) > 1
            for i, (keys, vector) in enumerate(zip(entities, vectors, strict=True)):
                request_id = f"{rec['request_id']}/{i}" if batch else str(rec["request_id"])
                store.log_features(request_id, ts, keys, vector)
                logged += 1
        if logged:
            flush_feature_logs(store)
        return logged


class StaticFeatures:
    """In-memory online features: ``{service: {"keys": [...], "rows": {key_tuple: {...}}}}``."""

    def __init__(self) -> None:
        self._services: dict[str, tuple[list[str], list[str], dict[tuple[Any, ...], dict[str, Any]]]] = {}
        self.fail: Exception | None = None

    def add_service(self, name: str, keys: Sequence[str], features: Sequence[str],
                    rows: Mapping[tuple[Any, ...], Mapping[str, Any]] | None = None) -> None:
        self._services[name] = (list(keys), list(features), {k: dict(v) for k, v in (rows or {}).items()})

    def put(self, service: str, key: tuple[Any, ...], values: Mapping[str, Any]) -> None:
        self._services[service][2][tuple(key)] = dict(values)

    def lookup(self, service: str, entity_rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        if self.fail is not None:
            raise self.fail
        keys, names, table = self._get(service)
        out = []
        for row in entity_rows:
            found = table.get(tuple(row.get(k) for k in keys), {})
            out.append({n: found.get(n) for n in names})
        return out

    def feature_names(self, service: str) -> list[str] | None:
        return list(self._get(service)[1])

    def _get(self, service: str) -> tuple[list[str], list[str], dict[tuple[Any, ...], dict[str, Any]]]:
        try:
            return self._services[service]
        except KeyError:
            raise NotFound(f"feature service {service!r} does not exist; apply it first",
                           {"service": service}) from None
