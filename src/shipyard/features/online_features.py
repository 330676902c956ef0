"""Online feature retrieval: the latest values for a batch of entities, in one call per view.

``get_online_features(store, entity_rows, features=["driver:rating", ...])`` or
``service="fraud_model"`` returns a dict of columns: the entity (and request) columns as given,
then one list per feature, ``None`` where an entity has no value or its value is older than the
view's TTL. On-demand feature views run the same ``execute`` used for training sets, on the rows
just read plus the request columns.

Feature references resolve to a small read plan that is cached per store for ``PLAN_CACHE_S``
seconds, so the hot path is: build keys, one read per view, decode.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shipyard.errors import InvalidInput
from shipyard.features.online import online_store_of

PLAN_CACHE_S = 10.0


@dataclass
class _ViewRead:
    view: str
    join_keys: tuple[str, ...]
    features: list[str]
    ttl: Any
    outputs: list[str | None]  # output column per feature, None when read only as an on-demand input
    as_read: bool = False  # every feature is output under its own name (no prefixes, no inputs)


@dataclass
class _OnDemand:
    definition: Any
    features: list[str]
    outputs: list[str]
    input_types: dict[str, str] = field(default_factory=dict)  # declared type of every input column


@dataclass
class OnlineReadPlan:
    reads: list[_ViewRead] = field(default_factory=list)
    on_demand: list[_OnDemand] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    join_keys: list[str] = field(default_factory=list)
    request_fields: list[str] = field(default_factory=list)
    # (online store, its prepared reader of ``reads``), made on first use
    reader: tuple[Any, Any] | None = None


_PLANS: weakref.WeakKeyDictionary[Any, dict[Any, tuple[float, OnlineReadPlan]]] = weakref.WeakKeyDictionary()
_PLANS_LOCK = threading.Lock()


def _split_ref(ref: str) -> tuple[str, str]:
    if not isinstance(ref, str) or ":" not in ref:
        raise InvalidInput(f"feature reference {ref!r} must look like 'view:feature'", {"field": "features"})
    view, name = ref.split(":", 1)
    return view, name


def _is_on_demand(definition: Any) -> bool:
    return hasattr(definition, "execute") and hasattr(definition, "feature_inputs")


def build_plan(store: Any, refs: Sequence[str], full_feature_names: bool = False) -> OnlineReadPlan:
    """Resolve feature references into per-view reads and on-demand steps."""
    plan = OnlineReadPlan()
    reads: dict[str, _ViewRead] = {}
    definitions: dict[str, Any] = {}

    def definition(name: str) -> Any:
        if name not in definitions:
            definitions[name] = store.get_view(name)
        return definitions[name]

    def add_read(view_name: str, feature: str, output: str | None) -> str:
        """Read ``feature`` of ``view_name``; returns its declared type."""
        view = definition(view_name)
        dtype = next((f.dtype for f in view.fields if f.name == feature), None)
        if dtype is None:
            raise InvalidInput(f"feature view {view_name!r} has no feature {feature!r}; its features are "
                               f"{', '.join(f.name for f in view.fields)}", {"view": view_name, "field": feature})
        read = reads.get(view_name)
        if read is None:
            read = reads[view_name] = _ViewRead(view_name, tuple(view.join_keys), [], view.ttl, [])
            for k in view.join_keys:
                if k not in plan.join_keys:
                    plan.join_keys.append(k)
        if feature in read.features:
            idx = read.features.index(feature)
            if output is not None and read.outputs[idx] is None:
                read.outputs[idx] = output
            return dtype
        read.features.append(feature)
        read.outputs.append(output)
        return dtype

    seen_outputs: dict[str, str] = {}
    for ref in refs:
        view_name, feature = _split_ref(ref)
        output = f"{view_name}__{feature}" if full_feature_names else feature
        if output in seen_outputs and seen_outputs[output] != ref:
            raise InvalidInput(f"features {seen_outputs[output]!r} and {ref!r} both produce column {output!r}; "
                               "pass full_feature_names=True to prefix columns with the view name",
                               {"field": "features"})
        seen_outputs[output] = ref
        view = definition(view_name)
        if _is_on_demand(view):
            if feature not in [f.name for f in view.fields]:
                raise InvalidInput(f"on-demand feature view {view_name!r} has no feature {feature!r}",
                                   {"view": view_name, "field": feature})
            step = next((s for s in plan.on_demand if s.definition.name == view_name), None)
            if step is None:
                step = _OnDemand(view, [], [])
                plan.on_demand.append(step)
                for input_ref in view.feature_inputs:
                    source, name = _split_ref(input_ref)
                    step.input_types[name] = add_read(source, name, None)
                for f in view.request_fields:
                    step.input_types[f.name] = f.dtype
                    if f.name not in plan.request_fields:
                        plan.request_fields.append(f.name)
            step.features.append(feature)
            step.outputs.append(output)
        else:
            add_read(view_name, feature, output)
        plan.outputs.append(output)
    plan.reads = list(reads.values())
    for read in plan.reads:
        read.as_read = read.outputs == read.features
    return plan


def _plans_of(store: Any) -> dict[Any, tuple[float, OnlineReadPlan]] | None:
    """The plan cache of ``store``: a FeatureStore keeps its own (a plain attribute is cheaper to
    reach than a weak map); other objects get one in a weak map."""
    own = getattr(store, "online_plans", None)
    if own is not None:
        return own
    try:
        per_store = _PLANS.get(store)
        if per_store is None:
            with _PLANS_LOCK:
                per_store = _PLANS.setdefault(store, {})
        return per_store
    except TypeError:  # store not weak-referenceable
        return None


def _cached_plan(store: Any, cache_key: Any, refs: Sequence[str] | None, service: str | None,
                 full_feature_names: bool) -> OnlineReadPlan:
    """The plan of feature references ``refs`` or of a ``service``, built at most every
    ``PLAN_CACHE_S`` seconds per store."""
    now = time.monotonic()
    plans = _plans_of(store)
    hit = None if plans is None else plans.get(cache_key)  # lookups need no lock: a plan is replaced whole
    if hit is not None and now - hit[0] < PLAN_CACHE_S:
        return hit[1]
    if service is not None:
        refs = list(store.get_service(service).features)
    plan = build_plan(store, refs, full_feature_names)  # type: ignore[arg-type]
    if plans is not None:
        plans[cache_key] = (now, plan)
    return plan


def clear_plan_cache(store: Any | None = None) -> None:
    with _PLANS_LOCK:
        if store is None:
            _PLANS.clear()
        else:
            _PLANS.pop(store, None)
            own = getattr(store, "online_plans", None)
            if own is not None:
                own.clear()


def _columns(entity_rows: Any) -> tuple[dict[str, list[Any]], int]:
    if type(entity_rows) is dict:
        # the common case, a dict of lists of one length, without the general conversions below
        copied: dict[str, list[Any]] = {}
        size = -1
        for k, v in entity_rows.items():
            if type(v) is not list or (size >= 0 and len(v) != size):
                break
            size = len(v)
            copied[k] = v.copy()
        else:
            if size >= 0:
                return copied, size
    if isinstance(entity_rows, Mapping):
        cols: dict[str, list[Any]] = {}
        for k, v in entity_rows.items():
            cols[k] = list(v) if isinstance(v, list | tuple) or hasattr(v, "tolist") else [v]
        lengths = {len(v) for v in cols.values()}
        if len(lengths) > 1:
            raise InvalidInput(f"entity columns have different lengths {sorted(lengths)}", {"field": "entities"})
        return cols, (lengths.pop() if lengths else 0)
    if hasattr(entity_rows, "to_dict") and hasattr(entity_rows, "columns"):
        return {c: entity_rows[c].tolist() for c in entity_rows.columns}, len(entity_rows)
    if isinstance(entity_rows, Sequence) and not isinstance(entity_rows, str):
        names: list[str] = []
        for row in entity_rows:
            if not isinstance(row, Mapping):
                raise InvalidInput("entity rows must be mappings like {'customer_id': 42}", {"field": "entities"})
            names.extend(k for k in row if k not in names)
        return {n: [row.get(n) for row in entity_rows] for n in names}, len(entity_rows)
    raise InvalidInput("entities must be a dict of columns or a list of row dicts", {"field": "entities"})


def get_online_features(
    store: Any,
    entity_rows: Any,
    features: Sequence[str] | None = None,
    service: str | None = None,
    *,
    full_feature_names: bool = False,
) -> dict[str, list[Any]]:
    """Latest feature values for each entity row, as a dict of columns."""
    if (features is None) == (service is None):
        raise InvalidInput("give either features=['view:feature', ...] or service='name'", {"field": "features"})
    if service is not None:
        plan = _cached_plan(store, ("service", service, full_feature_names), None, service, full_feature_names)
    else:
        refs = tuple(features)  # type: ignore[arg-type]
        if not refs:
            raise InvalidInput("features is empty; name at least one 'view:feature'", {"field": "features"})
        plan = _cached_plan(store, (refs, full_feature_names), refs, None, full_feature_names)
    columns, n = _columns(entity_rows)
    online = online_store_of(store)
    out: dict[str, list[Any]] = dict(columns)
    reader = plan.reader
    if reader is None or reader[0] is not online:
        reader = plan.reader = (online, online.prepare_read([(r.view, r.features, r.ttl) for r in plan.reads]))
    keys_per_view = []
    keys_of: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}  # views with the same join keys share theirs
    for read in plan.reads:
        keys = keys_of.get(read.join_keys)
        if keys is None:
            keys = keys_of[read.join_keys] = _entity_keys(read, columns)
        keys_per_view.append(keys)
    inputs: dict[str, list[Any]] = {}
    for read, values in zip(plan.reads, reader[1](keys_per_view), strict=True):
        if read.as_read:
            out.update(values)
        else:
            for name, output in zip(read.features, read.outputs, strict=True):
                if output is not None:
                    out[output] = values[name]
        if plan.on_demand:
            for name in read.features:
                inputs.setdefault(name, values[name])
    if plan.on_demand:
        _apply_on_demand(plan, columns, inputs, out, n)
    return out


def _entity_keys(read: _ViewRead, columns: dict[str, list[Any]]) -> list[tuple[Any, ...]]:
    """One key tuple per entity row, in the view's join-key order."""
    try:
        key_columns = [columns[k] for k in read.join_keys]
    except KeyError:
        missing = [k for k in read.join_keys if k not in columns]
        raise InvalidInput(f"feature view {read.view!r} needs join keys {missing} in the entity rows",
                           {"view": read.view, "field": missing[0]}) from None
    if len(key_columns) == 1:
        return [(v,) for v in key_columns[0]]
    return list(zip(*key_columns, strict=True))


def _apply_on_demand(plan: OnlineReadPlan, columns: dict[str, list[Any]], inputs: dict[str, list[Any]],
                     out: dict[str, list[Any]], n: int) -> None:
    import pandas as pd

    from shipyard.features.udf import input_frame

    for step in plan.on_demand:
        view = step.definition
        frame_data: dict[str, list[Any]] = {}
        for ref in view.feature_inputs:
            name = ref.split(":", 1)[1]
            frame_data[name] = inputs.get(name, [None] * n)
        for f in view.request_fields:
            if f.name not in columns:
                raise InvalidInput(f"on-demand feature view {view.name!r} needs request field {f.name!r} in "
                                   "each entity row", {"view": view.name, "field": f.name})
            frame_data[f.name] = columns[f.name]
        # inputs in their declared types, as training sets give them: an unknown or expired entity's
        # missing values are NaN/<NA> of the feature's type, not an object column of None
        frame = input_frame(frame_data, step.input_types, f"on-demand feature view {view.name!r}")
        result = view.execute(frame, owned=True)
        for name, output in zip(step.features, step.outputs, strict=True):
            series = result[name]
            out[output] = [None if pd.isna(v) else v for v in series.astype(object).tolist()]
