"""Feature definitions as code: entities, feature views, on-demand views and services.

Definitions are plain Python objects written in files under a project's ``features/`` folder. Each
one remembers the file and line it was written at (``.location``) so that plan-time errors point
there, serialises to a JSON ``spec`` for the registry, and is rebuilt from that spec with its applied
``version`` (0 while not applied).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from shipyard.errors import InvalidInput, ModelError, SchemaMismatch
from shipyard.features.location import Location, caller_location
from shipyard.features.sources import PushSource, RequestSource, Source, source_from_spec
from shipyard.features.types import Field, normalize_dtype
from shipyard.features.udf import PythonCode


def spec_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name or not name.replace("-", "_").isidentifier():
        raise InvalidInput(
            f"{what} name {name!r} is not valid; use letters, digits, '_' or '-' (e.g. 'customer_stats')",
            {"field": "name"},
        )
    return name


class Definition:
    """Common behaviour: kind, name, location, version, spec and spec hash."""

    kind = "definition"
    name: str
    version: int = 0
    location: Location = Location()

    def to_spec(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def spec_hash(self) -> str:
        return spec_hash(self.to_spec())

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.to_spec() == self.to_spec()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.kind, self.name))

    def __repr__(self) -> str:
        version = f", version={self.version}" if self.version else ""
        return f"{type(self).__name__}(name={self.name!r}{version})"


class Entity(Definition):
    """A business object features describe, identified by one or more join keys."""

    kind = "entity"

    def __init__(
        self,
        name: str,
        join_keys: Sequence[str] | None = None,
        value_types: dict[str, str] | str | None = None,
        description: str = "",
        owner: str = "",
        tags: dict[str, str] | None = None,
    ) -> None:
        self.location = caller_location()
        self.name = _check_name(name, "entity")
        self.join_keys = list(join_keys or [name])
        if not self.join_keys or not all(isinstance(k, str) and k.isidentifier() for k in self.join_keys):
            raise InvalidInput(f"entity {name!r}: join_keys must be column names, got {join_keys!r}",
                               {"field": "join_keys", "entity": name})
        if isinstance(value_types, str):
            value_types = {k: value_types for k in self.join_keys}
        self.value_types = {k: normalize_dtype(t, f"entity {name!r} key {k!r}") for k, t in (value_types or {}).items()}
        unknown = set(self.value_types) - set(self.join_keys)
        if unknown:
            raise InvalidInput(f"entity {name!r}: value_types names {sorted(unknown)} which are not join keys",
                               {"field": "value_types", "entity": name})
        self.description = description
        self.owner = owner
        self.tags = dict(tags or {})

    def to_spec(self) -> dict[str, Any]:
        return {"name": self.name, "join_keys": list(self.join_keys), "value_types": dict(self.value_types),
                "description": self.description, "owner": self.owner, "tags": dict(self.tags)}

    @classmethod
    def from_spec(cls, spec: dict[str, Any], version: int = 0) -> Entity:
        obj = cls(spec["name"], spec["join_keys"], spec.get("value_types") or None, spec.get("description", ""),
                  spec.get("owner", ""), spec.get("tags"))
        obj.version = version
        obj.location = Location()
        return obj


class FeatureSelection:
    """``view[["a", "b"]]``: some features of one view, for a feature service."""

    def __init__(self, view: str, features: list[str]) -> None:
        self.view = view
        self.features = features

    @property
    def refs(self) -> list[str]:
        return [f"{self.view}:{f}" for f in self.features]


class _Selectable(Definition):
    fields: list[Field]

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.fields]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise InvalidInput(
            f"{self.kind.replace('_', ' ')} {self.name!r} has no feature {name!r}; its features are "
            f"{', '.join(self.feature_names)}",
            {"view": self.name, "feature": name},
        )

    def __getitem__(self, names: str | Sequence[str]) -> FeatureSelection:
        chosen = [names] if isinstance(names, str) else list(names)
        for n in chosen:
            self.field(n)
        return FeatureSelection(self.name, chosen)


class FeatureView(_Selectable):
    """Typed features of one or more entities, read from a source at event timestamps."""

    kind = "feature_view"

    def __init__(
        self,
        name: str,
        entities: Sequence[Entity],
        fields: Sequence[Field],
        source: Source,
        timestamp_field: str = "event_timestamp",
        created_timestamp_field: str | None = None,
        ttl: timedelta | int | float | None = None,
        sql: str | None = None,
        transform: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
        online: bool = True,
        owner: str = "",
        tags: dict[str, str] | None = None,
        description: str = "",
        *,
        _code: PythonCode | None = None,
    ) -> None:
        self.location = caller_location()
        self.name = _check_name(name, "feature view")
        where = f"feature view {name!r}"
        self.entities = list(entities)
        for ent in self.entities:
            if not isinstance(ent, Entity):
                raise InvalidInput(f"{where}: entities must be Entity objects, got {ent!r}",
                                   {"view": name, "field": "entities"})
        self.fields = list(fields)
        if not self.fields:
            raise InvalidInput(f"{where} has no fields; give fields=[Field('name', Float64), ...]",
                               {"view": name, "field": "fields"})
        if not isinstance(source, Source) or isinstance(source, RequestSource):
            raise InvalidInput(f"{where}: source must be a FileSource, SqlSource, DuckDBSource, DatasetSource or "
                               "PushSource",
                               {"view": name, "field": "source"})
        self.source = source
        self.timestamp_field = timestamp_field
        self.created_timestamp_field = created_timestamp_field or None
        if isinstance(ttl, int | float) and not isinstance(ttl, bool):
            ttl = timedelta(seconds=ttl)
        if ttl is not None and (not isinstance(ttl, timedelta) or ttl <= timedelta(0)):
            raise InvalidInput(f"{where}: ttl must be a positive timedelta or None (no limit), got {ttl!r}",
                               {"view": name, "field": "ttl"})
        self.ttl: timedelta | None = ttl
        if sql is not None and transform is not None:
            raise InvalidInput(f"{where}: give either sql= or transform=, not both", {"view": name, "field": "sql"})
        self.sql = sql
        self.code = _code or (PythonCode.of(transform, f"{where} transform") if transform is not None else None)
        self._transform = transform
        self.online = online
        self.owner = owner
        self.tags = dict(tags or {})
        self.description = description
        self._check_columns()

    def _check_columns(self) -> None:
        seen: dict[str, str] = {}
        for col, role in [(k, "join key") for k in self.join_keys] + [(self.timestamp_field, "timestamp field")] + (
            [(self.created_timestamp_field, "created timestamp field")] if self.created_timestamp_field else []
        ) + [(f.name, "feature") for f in self.fields]:
            if col in seen:
                raise InvalidInput(
                    f"feature view {self.name!r}: column {col!r} is both a {seen[col]} and a {role}; rename one",
                    {"view": self.name, "field": col},
                )
            seen[col] = role

    @property
    def join_keys(self) -> list[str]:
        keys: list[str] = []
        for ent in self.entities:
            keys.extend(k for k in ent.join_keys if k not in keys)
        return keys

    @property
    def key_types(self) -> dict[str, str]:
        types: dict[str, str] = {}
        for ent in self.entities:
            types.update(ent.value_types)
        return types

    @property
    def is_push(self) -> bool:
        return isinstance(self.source, PushSource)

    def transform_function(self) -> Callable[[pd.DataFrame], pd.DataFrame] | None:
        if self.code is None:
            return None
        if self._transform is None:
            self._transform = self.code.compile()
        return self._transform

    def to_spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "entities": [e.to_spec() for e in self.entities],
            "fields": [f.to_spec() for f in self.fields],
            "source": self.source.to_spec(),
            "timestamp_field": self.timestamp_field,
            "created_timestamp_field": self.created_timestamp_field,
            "ttl_seconds": self.ttl.total_seconds() if self.ttl else None,
            "sql": self.sql,
            "transform": self.code.to_spec() if self.code else None,
            "online": self.online,
            "owner": self.owner,
            "tags": dict(self.tags),
            "description": self.description,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any], version: int = 0) -> FeatureView:
        code = PythonCode.from_spec(spec["transform"]) if spec.get("transform") else None
        obj = cls(
            spec["name"],
            [Entity.from_spec(e) for e in spec["entities"]],
            [Field.from_spec(f) for f in spec["fields"]],
            source_from_spec(spec["source"]),
            timestamp_field=spec["timestamp_field"],
            created_timestamp_field=spec.get("created_timestamp_field"),
            ttl=spec.get("ttl_seconds"),
            sql=spec.get("sql"),
            online=spec.get("online", True),
            owner=spec.get("owner", ""),
            tags=spec.get("tags"),
            description=spec.get("description", ""),
            _code=code,
        )
        obj.version = version
        obj.location = Location()
        return obj


class OnDemandFeatureView(_Selectable):
    """Features computed by a Python function from request data and other views' features.

    ``execute(frame)`` is the one code path: training sets call it on the point-in-time joined
    frame, online serving on the rows it just read. The function takes a pandas DataFrame holding
    the input features (by feature name) and request fields and returns one with ``fields``.
    """

    kind = "on_demand_feature_view"

    def __init__(
        self,
        name: str,
        sources: Sequence[FeatureView | FeatureSelection | RequestSource],
        fields: Sequence[Field],
        udf: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
        owner: str = "",
        tags: dict[str, str] | None = None,
        description: str = "",
        *,
        _code: PythonCode | None = None,
        _inputs: dict[str, Any] | None = None,
    ) -> None:
        self.location = caller_location()
        self.name = _check_name(name, "on-demand feature view")
        where = f"on-demand feature view {name!r}"
        self.fields = list(fields)
        if not self.fields:
            raise InvalidInput(f"{where} has no fields", {"view": name, "field": "fields"})
        if _code is None and udf is None:
            raise InvalidInput(f"{where} needs udf= (a function DataFrame -> DataFrame)", {"view": name, "field": "udf"})
        self.code = _code or PythonCode.of(udf, f"{where} udf")  # type: ignore[arg-type]
        self._udf = udf
        if _inputs is not None:
            self.feature_inputs: list[str] = list(_inputs["features"])
            self.request_sources = [RequestSource(r["name"], [Field.from_spec(f) for f in r["schema"]])
                                    for r in _inputs["request_sources"]]
        else:
            self.feature_inputs = []
            self.request_sources = []
            for src in sources:
                if isinstance(src, FeatureView):
                    self.feature_inputs.extend(f"{src.name}:{f}" for f in src.feature_names)
                elif isinstance(src, FeatureSelection):
                    self.feature_inputs.extend(src.refs)
                elif isinstance(src, RequestSource):
                    self.request_sources.append(src)
                else:
                    raise InvalidInput(f"{where}: sources must be feature views, view[[...]] selections or "
                                       f"RequestSource, got {src!r}", {"view": name, "field": "sources"})
        self.owner = owner
        self.tags = dict(tags or {})
        self.description = description
        self.entities: list[Entity] = []

    @property
    def join_keys(self) -> list[str]:
        return []

    @property
    def request_fields(self) -> list[Field]:
        return [f for src in self.request_sources for f in src.schema]

    @property
    def input_columns(self) -> list[str]:
        return [ref.split(":", 1)[1] for ref in self.feature_inputs] + [f.name for f in self.request_fields]

    def udf(self) -> Callable[[pd.DataFrame], pd.DataFrame]:
        if self._udf is None:
            self._udf = self.code.compile()
        return self._udf

    def execute(self, frame: pd.DataFrame, *, owned: bool = False) -> pd.DataFrame:
        """Run the function on ``frame`` (input columns by name); returns the typed output columns.

        ``owned``: the caller built ``frame`` for this call alone and holds exactly the inputs, so
        the function may get it as it is (online reads, where a copy costs as much as the function)."""
        inputs = self.input_columns
        missing = [c for c in inputs if c not in frame.columns]
        if missing:
            raise SchemaMismatch(
                f"on-demand feature view {self.name!r} needs inputs {missing}; include them in the request "
                "data or the features asked for",
                {"view": self.name, "missing": missing},
            )
        given = frame if owned and list(frame.columns) == inputs else frame[inputs].copy()
        try:
            out = self.udf()(given)
        except Exception as exc:  # noqa: BLE001 - user code: keep its message and traceback
            raise ModelError(f"on-demand feature view {self.name!r} raised {type(exc).__name__}: {exc}",
                             {"view": self.name, "step": "on_demand"}) from exc
        if not isinstance(out, pd.DataFrame):
            raise ModelError(f"on-demand feature view {self.name!r} must return a pandas DataFrame, "
                             f"got {type(out).__name__}", {"view": self.name})
        absent = [f.name for f in self.fields if f.name not in out.columns]
        if absent:
            raise ModelError(f"on-demand feature view {self.name!r} did not return columns {absent}",
                             {"view": self.name, "missing": absent})
        if len(out) != len(frame):
            raise ModelError(f"on-demand feature view {self.name!r} returned {len(out)} rows for {len(frame)}",
                             {"view": self.name})
        return pd.DataFrame({f.name: _cast_series(out[f.name].to_numpy(), f, self.name) for f in self.fields},
                            index=frame.index)

    def to_spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "fields": [f.to_spec() for f in self.fields],
            "inputs": {"features": list(self.feature_inputs),
                       "request_sources": [r.to_spec() for r in self.request_sources]},
            "udf": self.code.to_spec(),
            "owner": self.owner,
            "tags": dict(self.tags),
            "description": self.description,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any], version: int = 0) -> OnDemandFeatureView:
        obj = cls(spec["name"], [], [Field.from_spec(f) for f in spec["fields"]],
                  owner=spec.get("owner", ""), tags=spec.get("tags"), description=spec.get("description", ""),
                  _code=PythonCode.from_spec(spec["udf"]), _inputs=spec["inputs"])
        obj.version = version
        obj.location = Location()
        return obj


def on_demand_feature_view(
    sources: Sequence[FeatureView | FeatureSelection | RequestSource], fields: Sequence[Field], **kwargs: Any
) -> Callable[[Callable[[pd.DataFrame], pd.DataFrame]], OnDemandFeatureView]:
    """Decorator form: ``@on_demand_feature_view(sources=[...], fields=[...])`` over ``def name(df)``."""

    def wrap(func: Callable[[pd.DataFrame], pd.DataFrame]) -> OnDemandFeatureView:
        view = OnDemandFeatureView(kwargs.pop("name", func.__name__), sources, fields, udf=func, **kwargs)
        return view

    return wrap


def _cast_series(values: Any, f: Field, view: str) -> Any:
    try:
        if f.dtype == "float64":
            if getattr(values, "dtype", None) == np.float64:  # already the type: nothing to convert
                return values
            return pd.to_numeric(pd.Series(values), errors="raise").astype("float64").to_numpy()
        if f.dtype == "int64":
            return pd.Series(values).astype("Int64").to_numpy()
        if f.dtype == "bool":
            return pd.Series(values).astype("boolean").to_numpy()
        if f.dtype == "timestamp":
            return pd.to_datetime(pd.Series(values), utc=True).to_numpy()
        return pd.Series(values).astype("string").to_numpy()
    except (TypeError, ValueError) as exc:
        raise SchemaMismatch(f"on-demand feature view {view!r}: output {f.name!r} is not {f.dtype}: {exc}",
                             {"view": view, "field": f.name}) from None


class FeatureService(Definition):
    """A named set of features a model uses; ``.features`` are ``"view:feature"`` references."""

    kind = "feature_service"

    def __init__(
        self,
        name: str,
        features: Iterable[FeatureView | OnDemandFeatureView | FeatureSelection | str],
        description: str = "",
        owner: str = "",
        tags: dict[str, str] | None = None,
    ) -> None:
        self.location = caller_location()
        self.name = _check_name(name, "feature service")
        refs: list[str] = []
        for item in features:
            if isinstance(item, _Selectable):
                refs.extend(f"{item.name}:{f}" for f in item.feature_names)
            elif isinstance(item, FeatureSelection):
                refs.extend(item.refs)
            elif isinstance(item, str):
                refs.append(item)
            else:
                raise InvalidInput(f"feature service {name!r}: cannot use {item!r} as a feature; give a view, "
                                   "view[['a', 'b']] or 'view:feature'", {"service": name, "field": "features"})
        if not refs:
            raise InvalidInput(f"feature service {name!r} has no features", {"service": name, "field": "features"})
        self.features = list(dict.fromkeys(refs))
        self.description = description
        self.owner = owner
        self.tags = dict(tags or {})

    def to_spec(self) -> dict[str, Any]:
        return {"name": self.name, "features": list(self.features), "description": self.description,
                "owner": self.owner, "tags": dict(self.tags)}

    @classmethod
    def from_spec(cls, spec: dict[str, Any], version: int = 0) -> FeatureService:
        obj = cls(spec["name"], spec["features"], spec.get("description", ""), spec.get("owner", ""), spec.get("tags"))
        obj.version = version
        obj.location = Location()
        return obj


KINDS: dict[str, type[Definition]] = {
    "entity": Entity,
    "feature_view": FeatureView,
    "on_demand_feature_view": OnDemandFeatureView,
    "feature_service": FeatureService,
}


def from_spec(kind: str, spec: dict[str, Any], version: int = 0) -> Definition:
    return KINDS[kind].from_spec(spec, version)  # type: ignore[attr-defined]
