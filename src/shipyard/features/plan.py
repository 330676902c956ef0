"""Plan: what applying a features folder would change in the registry.

Each definition is compared with the registry's current version by spec. A change is *breaking* when
it alters what existing consumers read: a join key or key type, a feature's type, or a feature that
disappears. ``apply`` refuses breaking changes unless asked to accept them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shipyard.features.definitions import Definition, spec_hash

_ORDER = {"entity": 0, "feature_view": 1, "on_demand_feature_view": 2, "feature_service": 3}
_SYMBOL = {"added": "+", "changed": "~", "removed": "-", "unchanged": " "}


@dataclass
class Change:
    kind: str
    name: str
    action: str  # added | changed | removed | unchanged
    old_version: int | None = None
    old_spec: dict[str, Any] | None = None
    new_spec: dict[str, Any] | None = None
    definition: Definition | None = None
    details: list[str] = field(default_factory=list)
    breaking: list[str] = field(default_factory=list)
    new_version: int | None = None

    @property
    def new_hash(self) -> str:
        return spec_hash(self.new_spec or {})

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "name": self.name, "action": self.action, "old_version": self.old_version,
            "new_version": self.new_version, "details": list(self.details), "breaking": list(self.breaking),
            "location": str(self.definition.location) if self.definition is not None else "",
        }


@dataclass
class ApplyPlan:
    changes: list[Change]
    repo_path: str = ""
    applied: bool = False
    apply_id: str | None = None

    def _of(self, action: str) -> list[Change]:
        return [c for c in self.changes if c.action == action]

    @property
    def added(self) -> list[Change]:
        return self._of("added")

    @property
    def changed(self) -> list[Change]:
        return self._of("changed")

    @property
    def removed(self) -> list[Change]:
        return self._of("removed")

    @property
    def unchanged(self) -> list[Change]:
        return self._of("unchanged")

    @property
    def breaking(self) -> list[Change]:
        return [c for c in self.changes if c.breaking]

    @property
    def has_changes(self) -> bool:
        return any(c.action != "unchanged" for c in self.changes)

    def summary(self) -> dict[str, Any]:
        return {
            "added": [f"{c.kind}:{c.name}" for c in self.added],
            "changed": [f"{c.kind}:{c.name}" for c in self.changed],
            "removed": [f"{c.kind}:{c.name}" for c in self.removed],
            "breaking": [f"{c.kind}:{c.name}: {'; '.join(c.breaking)}" for c in self.breaking],
        }

    def to_dict(self) -> dict[str, Any]:
        return {"repo_path": self.repo_path, "applied": self.applied, "apply_id": self.apply_id,
                "summary": self.summary(), "changes": [c.to_dict() for c in self.changes]}

    def render(self) -> str:
        lines = []
        for c in self.changes:
            if c.action == "unchanged":
                continue
            version = f" (v{c.old_version})" if c.old_version else ""
            flag = "  [BREAKING]" if c.breaking else ""
            lines.append(f"{_SYMBOL[c.action]} {c.kind.replace('_', ' ')} {c.name}{version}{flag}")
            lines.extend(f"    {d}" for d in c.details)
            lines.extend(f"    ! {b}" for b in c.breaking)
        counts = (f"{len(self.added)} to add, {len(self.changed)} to change, {len(self.removed)} to remove, "
                  f"{len(self.unchanged)} unchanged")
        if not lines:
            return f"No changes. {counts}."
        if self.breaking:
            counts += f"; {len(self.breaking)} breaking (apply with --allow-breaking)"
        return "\n".join(lines + ["", f"Plan: {counts}."])


def make_plan(definitions: list[Definition], current: dict[tuple[str, str], dict[str, Any]],
              repo_path: str = "") -> ApplyPlan:
    changes: list[Change] = []
    seen: set[tuple[str, str]] = set()
    for obj in definitions:
        key = (obj.kind, obj.name)
        seen.add(key)
        new_spec = obj.to_spec()
        old = current.get(key)
        if old is None:
            changes.append(Change(obj.kind, obj.name, "added", new_spec=new_spec, definition=obj))
            continue
        if old["spec_hash"] == spec_hash(new_spec):
            changes.append(Change(obj.kind, obj.name, "unchanged", old["version"], old["spec"], new_spec, obj,
                                  new_version=old["version"]))
            continue
        details, breaking = _diff(obj.kind, old["spec"], new_spec)
        changes.append(Change(obj.kind, obj.name, "changed", old["version"], old["spec"], new_spec, obj,
                              details, breaking))
    for (kind, name), old in current.items():
        if (kind, name) not in seen:
            breaking = [f"{kind.replace('_', ' ')} removed"] if kind != "feature_service" else []
            changes.append(Change(kind, name, "removed", old["version"], old["spec"], breaking=breaking))
    changes.sort(key=lambda c: (_ORDER.get(c.kind, 9), c.name))
    return ApplyPlan(changes, repo_path)


def _fields(spec: dict[str, Any]) -> dict[str, str]:
    return {f["name"]: f["dtype"] for f in spec.get("fields", [])}


def _keys(spec: dict[str, Any], kind: str) -> tuple[list[str], dict[str, str]]:
    if kind == "entity":
        return list(spec["join_keys"]), dict(spec.get("value_types", {}))
    keys: list[str] = []
    types: dict[str, str] = {}
    for ent in spec.get("entities", []):
        keys.extend(k for k in ent["join_keys"] if k not in keys)
        types.update(ent.get("value_types", {}))
    return keys, types


def _diff(kind: str, old: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], list[str]]:
    details: list[str] = []
    breaking: list[str] = []
    if kind in ("entity", "feature_view"):
        old_keys, old_types = _keys(old, kind)
        new_keys, new_types = _keys(new, kind)
        if old_keys != new_keys:
            breaking.append(f"join keys changed from {old_keys} to {new_keys}")
        for key in set(old_types) | set(new_types):
            if key in old_types and key in new_types and old_types[key] != new_types[key]:
                breaking.append(f"join key {key!r} type changed from {old_types[key]} to {new_types[key]}")
    if kind in ("feature_view", "on_demand_feature_view"):
        old_fields, new_fields = _fields(old), _fields(new)
        for name in new_fields:
            if name not in old_fields:
                details.append(f"+ feature {name} ({new_fields[name]})")
            elif old_fields[name] != new_fields[name]:
                breaking.append(f"feature {name!r} type changed from {old_fields[name]} to {new_fields[name]}")
        for name in old_fields:
            if name not in new_fields:
                details.append(f"- feature {name}")
                breaking.append(f"feature {name!r} removed")
    if kind == "feature_service":
        old_refs, new_refs = set(old.get("features", [])), set(new.get("features", []))
        details.extend(f"+ {r}" for r in sorted(new_refs - old_refs))
        details.extend(f"- {r}" for r in sorted(old_refs - new_refs))
    skip = {"fields", "entities", "features", "join_keys", "value_types"}
    for key in sorted(set(old) | set(new)):
        if key in skip or old.get(key) == new.get(key):
            continue
        details.append(f"{key}: {_short(old.get(key))} -> {_short(new.get(key))}")
    return details, breaking


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
