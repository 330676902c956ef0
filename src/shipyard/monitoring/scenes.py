"""Per-scene monitoring settings and stored baselines."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa

from shipyard.errors import InvalidInput, NotFound
from shipyard.monitoring.baseline import Baseline
from shipyard.store import MetadataStore
from shipyard.store.database import now_ms
from shipyard.store.schema import monitoring_baselines as B
from shipyard.store.schema import monitoring_scenes as SC

APPROVE_DEFAULT = ("approve", "approved", "accept", "accepted", "pass")


@dataclass
class PluginRef:
    name: str
    path: str | None = None  # a .py file or an importable module; None = built-in or entry point


@dataclass
class SceneSettings:
    """What the daily report and label metrics need to know about a scene's outputs."""

    scene: str
    baseline: str | None = None
    score: str | None = None        # numeric output judged by AUC/KS and drawn as the score distribution
    decision: str | None = None     # categorical output counted as decisions
    approve: tuple[str, ...] = APPROVE_DEFAULT
    entity: str | None = None       # input field identifying the entity (labels by entity and time)
    plugins: list[PluginRef] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["approve"] = list(self.approve)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SceneSettings:
        plugins = [PluginRef(**p) if isinstance(p, dict) else PluginRef(str(p)) for p in data.get("plugins") or []]
        return cls(data["scene"], data.get("baseline"), data.get("score"), data.get("decision"),
                   tuple(data.get("approve") or APPROVE_DEFAULT), data.get("entity"), plugins)


class SceneStore:
    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    # -- settings -----------------------------------------------------------------------------------
    def settings(self, scene: str) -> SceneSettings:
        with self.store.read() as conn:
            row = conn.execute(sa.select(SC.c.config).where(SC.c.scene == scene)).first()
        return SceneSettings.from_dict({**row[0], "scene": scene}) if row else SceneSettings(scene)

    def save_settings(self, settings: SceneSettings, actor: str) -> SceneSettings:
        if not settings.scene:
            raise InvalidInput("scene is empty; name the scene to monitor", {"field": "scene"})
        if settings.baseline is not None:
            self.baseline(settings.baseline)  # refuses an unknown baseline before anything is written
        data = settings.to_dict()
        with self.store.begin() as conn:
            exists = conn.execute(sa.select(SC.c.scene).where(SC.c.scene == settings.scene)).first()
            values = {"config": data, "updated_at": now_ms(), "updated_by": actor}
            if exists:
                conn.execute(SC.update().where(SC.c.scene == settings.scene).values(**values))
            else:
                conn.execute(SC.insert().values(scene=settings.scene, **values))
        return settings

    # -- baselines ----------------------------------------------------------------------------------
    def save_baseline(self, baseline: Baseline, actor: str, scene: str | None = None) -> Baseline:
        if not baseline.name:
            raise InvalidInput("a baseline needs a name", {"field": "name"})
        spec = baseline.to_dict()
        with self.store.begin() as conn:
            conn.execute(B.delete().where(B.c.name == baseline.name))
            conn.execute(B.insert().values(name=baseline.name, scene=scene, rows=baseline.rows,
                                           source=baseline.source, spec=spec, created_at=baseline.created_at or now_ms(),
                                           created_by=actor))
        return baseline

    def baseline(self, name: str) -> Baseline:
        with self.store.read() as conn:
            row = conn.execute(sa.select(B.c.spec).where(B.c.name == name)).first()
        if row is None:
            raise NotFound(f"no baseline named {name!r}; create it with 'shipyard monitor baseline' or "
                           "Monitoring.create_baseline", {"field": "baseline", "baseline": name})
        return Baseline.from_dict(row[0])

    def baselines(self) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            rows = conn.execute(sa.select(B.c.name, B.c.scene, B.c.rows, B.c.source, B.c.created_at, B.c.created_by)
                                .order_by(B.c.name)).mappings().all()
        return [dict(r) for r in rows]
