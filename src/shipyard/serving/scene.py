"""Scenes: named, versioned decision flows with their traffic policy, limits and fallback.

A scene document (YAML or JSON, or built in Python)::

    name: credit_apply
    description: approve / review / reject a credit application
    inputs: {applicant_id: string, amount: double, income: "double?"}
    outputs: [decision, score]              # fields returned (default: everything steps write)
    flow: [...steps, see shipyard.serving.flow...]
    traffic:                                # optional, see shipyard.serving.traffic
      key: applicant_id
      split: {control: 90, challenger: 10}
      arms: {challenger: {models: {credit_gbm: "5"}}}
    fallback: {decision: review}            # served (flagged) when a feature store or model fails
    limits: {timeout_ms: 200, max_concurrency: 64, rate_per_s: 500, client_rate_per_s: 50,
             error_rate: 0.05, p99_ms: 50, psi: 0.25, scope: server}   # scope: global -> Redis, fleet-wide
    log: {sample_rate: 1.0}

``apply_scene`` validates the document by compiling every arm against the registry and feature
store, then stores it as a new immutable version (re-applying an unchanged document is a no-op).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import yaml

from shipyard.errors import InvalidInput, NotFound, SchemaMismatch
from shipyard.jsontypes import JSON
from shipyard.serving.flow import CompiledFlow, compile_flow, parse_type
from shipyard.serving.traffic import TrafficPolicy
from shipyard.store.database import now_ms
from shipyard.store.events import record_event
from shipyard.store.schema import scene_versions, scenes

if TYPE_CHECKING:
    from shipyard.serving.flow import SceneLoader
    from shipyard.serving.sources import FeatureSource, ModelSource
    from shipyard.workspace import Workspace


TOP_KEYS = ("name", "description", "inputs", "outputs", "flow", "traffic", "fallback", "limits", "log")
LIMIT_KEYS = ("timeout_ms", "max_concurrency", "rate_per_s", "burst", "client_rate_per_s", "error_rate",
              "p99_ms", "psi", "min_requests", "threads", "scope")
LIMIT_SCOPES = ("server", "global")
"""``limits.scope``: ``server`` (default) splits the rate, per-client and concurrency limits over one
server's workers; ``global`` keeps them for the whole fleet in Redis (see serving.global_limits)."""
CONTROL = "control"


@dataclass(frozen=True)
class SceneVersion:
    name: str
    version: int
    spec: dict[str, Any]
    sha256: str
    created_at: int = 0
    created_by: str = ""
    comment: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256, "spec": self.spec,
                "created_at": self.created_at, "created_by": self.created_by, "comment": self.comment}


def load_scene_file(path: str | Path) -> dict[str, Any]:
    """Read a scene document from YAML or JSON."""
    file = Path(path)
    if not file.is_file():
        raise NotFound(f"scene file {str(file)!r} does not exist")
    try:
        doc = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{file} is not valid YAML/JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidInput(f"{file} must hold one scene mapping with 'name', 'inputs' and 'flow'")
    return doc


def normalise(spec: object) -> dict[str, Any]:
    """Check the document's shape (not its references) and fill defaults."""
    if not isinstance(spec, Mapping):
        raise InvalidInput("a scene must be a mapping with 'name', 'inputs' and 'flow'")
    unknown = sorted(set(spec) - set(TOP_KEYS))
    if unknown:
        raise InvalidInput(f"unknown scene key(s) {unknown}; allowed: {', '.join(TOP_KEYS)}", {"field": unknown[0]})
    name = spec.get("name")
    if not isinstance(name, str) or not name or len(name) > 200 or not all(c.isalnum() or c in "-_." for c in name):
        raise InvalidInput("scene 'name' must be 1-200 letters, digits, '-', '_' or '.'", {"field": "name"})
    inputs = spec.get("inputs")
    if not isinstance(inputs, Mapping) or not inputs:
        raise InvalidInput("scene 'inputs' must map each request field to a type, e.g. {amount: double}",
                           {"field": "inputs"})
    for key, declared in inputs.items():
        parse_type(declared, str(key))
    if spec.get("flow") is None:
        raise InvalidInput("scene 'flow' is missing; give a step or a list of steps", {"field": "flow"})
    limits = dict(spec.get("limits") or {})
    bad = sorted(set(limits) - set(LIMIT_KEYS))
    if bad:
        raise InvalidInput(f"unknown limit(s) {bad}; allowed: {', '.join(LIMIT_KEYS)}", {"field": "limits"})
    scope = limits.get("scope", "server")
    if scope not in LIMIT_SCOPES:
        raise InvalidInput(f"limits.scope is {scope!r}; use 'server' (each server enforces the limits by itself) "
                           "or 'global' (the whole fleet shares them through Redis)", {"field": "limits.scope"})
    if scope == "global" and not any(limits.get(k) for k in ("rate_per_s", "client_rate_per_s", "max_concurrency")):
        raise InvalidInput("limits.scope is 'global' but the scene sets none of rate_per_s, client_rate_per_s or "
                           "max_concurrency; set one of them or drop the scope", {"field": "limits.scope"})
    for key, value in limits.items():
        if key == "scope":
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise InvalidInput(f"limit {key!r} must be a non-negative number", {"field": f"limits.{key}"})
    threads = limits.get("threads")
    if threads is not None and (threads != int(threads) or not 1 <= threads <= 1024):
        raise InvalidInput(f"limit 'threads' is {threads!r}; give a whole number of threads per arm from 1 to 1024",
                           {"field": "limits.threads"})
    outputs = spec.get("outputs")
    if outputs is not None and (not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs)):
        raise InvalidInput("scene 'outputs' must be a list of field names", {"field": "outputs"})
    fallback = spec.get("fallback")
    if fallback is not None and not isinstance(fallback, Mapping):
        raise InvalidInput("scene 'fallback' must map output fields to default values", {"field": "fallback"})
    log = dict(spec.get("log") or {})
    rate = log.get("sample_rate", None)
    if rate is not None and (not isinstance(rate, (int, float)) or not 0 <= rate <= 1):
        raise InvalidInput("log.sample_rate must be between 0 and 1", {"field": "log.sample_rate"})
    out = {"name": name, "description": str(spec.get("description", "")),
           "inputs": {str(k): str(v) for k, v in inputs.items()}, "flow": spec["flow"]}
    for key, value in (("outputs", outputs), ("traffic", spec.get("traffic")), ("fallback", fallback),
                       ("limits", limits or None), ("log", log or None)):
        if value is not None:
            out[key] = value
    return json.loads(json.dumps(out))  # plain JSON types only


def spec_sha256(spec: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# -- compiled scene -----------------------------------------------------------------------------
_CHECKS = {
    "double": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "any": lambda v: True,
}
_CHECKS["float"] = _CHECKS["double"]
_CHECKS["long"] = _CHECKS["integer"]


@dataclass
class CompiledScene:
    name: str
    version: int
    spec: dict[str, Any]
    plans: dict[str, CompiledFlow]
    traffic: TrafficPolicy
    outputs: list[str]
    fallback: dict[str, Any] | None
    limits: dict[str, Any] = field(default_factory=dict)
    sample_rate: float | None = None

    def __post_init__(self) -> None:
        inputs = self.spec["inputs"]
        self._types = {k: parse_type(v, k) for k, v in inputs.items()}
        self._required = frozenset(k for k, (_, req) in self._types.items() if req)
        self._allowed = frozenset(self._types)
        self._checks = {k: (t, _CHECKS[t]) for k, (t, _) in self._types.items()}

    @property
    def models(self) -> dict[str, int]:
        return self.plans[CONTROL].models

    def check(self, records: list[Any]) -> None:
        """Reject a record with a missing, extra, wrongly typed or non-finite field (naming it)."""
        for i, record in enumerate(records):
            where = f"record {i}: " if len(records) > 1 else ""
            if not isinstance(record, dict):
                raise SchemaMismatch(f"{where}each record must be a JSON object of field: value",
                                     {"record": i})
            keys = record.keys()
            if not self._required <= keys:
                missing = sorted(self._required - keys)
                raise SchemaMismatch(f"{where}missing field(s) {', '.join(map(repr, missing))}; scene "
                                     f"{self.name!r} needs {sorted(self._required)}", {"field": missing[0], "record": i})
            if not keys <= self._allowed:
                extra = sorted(keys - self._allowed)
                raise SchemaMismatch(f"{where}unknown field(s) {', '.join(map(repr, extra))}; scene {self.name!r} "
                                     f"accepts {sorted(self._allowed)}", {"field": extra[0], "record": i})
            for key, value in record.items():
                kind, ok = self._checks[key]
                if value is None:
                    if key in self._required:
                        raise SchemaMismatch(f"{where}field {key!r} is null but required; send a {kind} or "
                                             f"declare it optional ('{kind}?')", {"field": key, "record": i})
                    continue
                if not ok(value):
                    raise SchemaMismatch(f"{where}field {key!r} must be {kind}, got {type(value).__name__} "
                                         f"{_short(value)}", {"field": key, "record": i})
                if type(value) is float and not math.isfinite(value):
                    raise SchemaMismatch(f"{where}field {key!r} is {value}; numbers must be finite",
                                         {"field": key, "record": i})

    def select(self, row: dict[str, Any]) -> dict[str, Any]:
        return {k: row.get(k) for k in self.outputs}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


def compile_scene(spec: Mapping[str, Any], version: int, *, models: ModelSource, features: FeatureSource | None = None,
                  scenes: SceneLoader | None = None) -> CompiledScene:
    """Compile every arm of a normalised scene; raises ``InvalidInput`` naming the step or arm."""
    spec = normalise(spec)
    traffic = TrafficPolicy.from_spec(spec.get("traffic"), spec["name"])
    plans: dict[str, CompiledFlow] = {}
    for arm in traffic.arm_names():
        arm_spec = traffic.arm_spec(arm)
        try:
            plans[arm] = compile_flow(arm_spec.get("flow", spec["flow"]), inputs=spec["inputs"], models=models,
                                      features=features, scenes=scenes, overrides=arm_spec.get("models") or {},
                                      scene_name=spec["name"])
        except InvalidInput as exc:
            if arm != CONTROL:
                exc.message = f"arm {arm!r}: {exc.message}"
                exc.args = (exc.message,)
                exc.details["arm"] = arm
            raise
    control = plans[CONTROL]
    outputs = spec.get("outputs") or [k for k in control.writes if k not in control.feature_names]
    missing = sorted(set(outputs) - set(control.writes) - set(spec["inputs"]))
    if missing:
        raise InvalidInput(f"scene outputs {missing} are not written by any step", {"field": "outputs"})
    fallback = spec.get("fallback")
    for plan in plans.values():
        for node in plan.root.walk():
            if getattr(node, "on_missing", None) == "fallback" and not fallback:
                raise InvalidInput(f"step {node.id!r} has on_missing: fallback but the scene has no 'fallback'; "
                                   "add one (e.g. fallback: {decision: review}) or use on_missing: error",
                                   {"field": "fallback", "step": node.id})
    if fallback:
        unknown = sorted(set(fallback) - set(outputs))
        if unknown:
            raise InvalidInput(f"fallback field(s) {unknown} are not scene outputs {outputs}", {"field": "fallback"})
    return CompiledScene(spec["name"], version, spec, plans, traffic, list(outputs), fallback,
                         dict(spec.get("limits") or {}), (spec.get("log") or {}).get("sample_rate"))


# -- storage ------------------------------------------------------------------------------------
def _row_to_version(row: Any) -> SceneVersion:
    m = row._mapping
    return SceneVersion(m["scene"], m["version"], m["spec"], m["sha256"], m["created_at"], m["created_by"], m["comment"])


def get_scene(ws: Workspace, name: str, version: int | None = None) -> SceneVersion:
    """The latest (or a given) version of a scene; ``NotFound`` names what exists."""
    query = sa.select(scene_versions).where(scene_versions.c.scene == name)
    if version is not None:
        query = query.where(scene_versions.c.version == int(version))
    with ws.store.read() as conn:
        row = conn.execute(query.order_by(scene_versions.c.version.desc()).limit(1)).first()
    if row is None:
        what = f"scene {name!r}" + (f" version {version}" if version is not None else "")
        raise NotFound(f"{what} does not exist; apply it with 'shipyard scenes apply FILE'", {"scene": name})
    return _row_to_version(row)


def latest_versions(ws: Workspace) -> dict[str, int]:
    with ws.store.read() as conn:
        return {r.name: r.latest_version for r in conn.execute(sa.select(scenes.c.name, scenes.c.latest_version))}


def list_scenes(ws: Workspace) -> list[dict[str, Any]]:
    with ws.store.read() as conn:
        rows = conn.execute(sa.select(scenes).order_by(scenes.c.name)).all()
    return [dict(r._mapping) for r in rows]


def list_versions(ws: Workspace, name: str) -> list[SceneVersion]:
    query = sa.select(scene_versions).where(scene_versions.c.scene == name).order_by(scene_versions.c.version)
    with ws.store.read() as conn:
        return [_row_to_version(r) for r in conn.execute(query)]


def scene_loader(ws: Workspace) -> SceneLoader:
    def load(name: str, version: int | None) -> tuple[int, Mapping[str, Any]]:
        found = get_scene(ws, name, version)
        return found.version, found.spec
    return load


def apply_scene(ws: Workspace, spec: Mapping[str, Any] | JSON, *, models: ModelSource | None = None,
                features: FeatureSource | None = None, comment: str = "") -> SceneVersion:
    """Validate and store ``spec`` as the scene's next version (unchanged documents are not re-stored)."""
    from shipyard.serving.sources import RegistryModels, StoreFeatures

    doc = normalise(spec)
    own: RegistryModels | None = None  # made here, so closed here
    if models is None:
        own = models = RegistryModels(ws)
    try:
        compile_scene(doc, 0, models=models, features=features or StoreFeatures(ws), scenes=scene_loader(ws))
    finally:
        if own is not None:
            own.close()  # stops the workers of models served from their own environments
    digest = spec_sha256(doc)
    name, now, actor = doc["name"], now_ms(), ws.user
    with ws.store.begin() as conn:
        head = conn.execute(sa.select(scenes).where(scenes.c.name == name)).first()
        if head is not None:
            latest = conn.execute(sa.select(scene_versions).where(
                scene_versions.c.scene == name, scene_versions.c.version == head.latest_version)).first()
            if latest is not None and latest.sha256 == digest:
                return _row_to_version(latest)
            version = head.latest_version + 1
            conn.execute(scenes.update().where(scenes.c.name == name).values(
                latest_version=version, updated_at=now, description=doc["description"]))
        else:
            version = 1
            conn.execute(scenes.insert().values(name=name, description=doc["description"], latest_version=1,
                                                created_at=now, updated_at=now, created_by=actor))
        conn.execute(scene_versions.insert().values(scene=name, version=version, spec=doc, sha256=digest,
                                                    comment=comment, created_at=now, created_by=actor))
        record_event(conn, actor, "scene.applied", f"scene:{name}", {"version": version, "sha256": digest})
    return SceneVersion(name, version, doc, digest, now, actor, comment)
