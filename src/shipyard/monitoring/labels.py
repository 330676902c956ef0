"""Label feedback: delayed outcomes joined to served predictions, and performance by version and day.

Labels arrive by request id (and record index inside a batch request, default 0) or by
(entity, time): the latest prediction for that entity at or before the label's time, within
``tolerance``. Matching reads the prediction log's light columns (ids, time, version, arm and the
score and decision outputs). Every label is stored; those that match no prediction are kept with
``matched = false`` and counted in the result, never dropped silently.

Performance per (version, day): labelled rows, bad rate, approval rate, AUC and KS — the AUC and
KS of :mod:`shipyard.risk.metrics` (1 = bad, higher score = riskier).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from shipyard.artifacts import ArtifactStore
from shipyard.errors import InvalidInput
from shipyard.monitoring.logread import Fields, iter_day, log_days
from shipyard.monitoring.scenes import SceneSettings, SceneStore
from shipyard.store import MetadataStore
from shipyard.store.database import now_ms
from shipyard.store.schema import monitoring_labels as L

DAY_MS = 86_400_000


@dataclass
class IngestResult:
    labels: int
    matched: int
    unmatched: int
    duplicates: int
    unmatched_sample: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _day(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d")


def _binary(values: pd.Series, column: str) -> np.ndarray:
    from shipyard.risk.metrics import to_binary_target

    s = values.reset_index(drop=True)
    if s.isna().any():
        raise InvalidInput(f"label column {column!r} has {int(s.isna().sum())} missing values; drop those rows",
                           {"field": "label_column"})
    uniq = set(pd.unique(s).tolist())
    if uniq <= {0, 1}:
        return s.astype(float).to_numpy()
    try:
        return to_binary_target(s, field=column).astype(float)
    except InvalidInput as exc:
        raise InvalidInput(f"label column {column!r}: {exc.message}", {"field": "label_column"}) from None


class LabelStore:
    def __init__(self, store: MetadataStore, artifacts: ArtifactStore) -> None:
        self.store = store
        self.artifacts = artifacts

    def served(self, scene: str, settings: SceneSettings, days: list[str] | None = None,
               progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
        """The scene's served records: request_id, row, ts, day, version, arm, score, decision, entity."""
        outputs = {k: t for k, t in (((settings.score, "DOUBLE"), (settings.decision, "VARCHAR"))) if k}
        inputs = {settings.entity: "VARCHAR"} if settings.entity else {}
        fields = Fields(inputs, {}, outputs)
        frames = []
        all_days = days if days is not None else log_days(self.artifacts, scene)
        for i, day in enumerate(all_days):
            for table in iter_day(self.artifacts, scene, day, fields):
                frame = table.to_pandas()
                frame["day"] = day
                frames.append(frame)
            if progress is not None:
                progress(i + 1, len(all_days))
        cols = ["request_id", "row", "ts", "day", "version", "arm", "score", "decision", "entity"]
        if not frames:
            return pd.DataFrame(columns=cols)
        frame = pd.concat(frames, ignore_index=True)
        frame["score"] = frame[settings.score] if settings.score in frame.columns else np.nan
        frame["decision"] = frame[settings.decision] if settings.decision in frame.columns else None
        frame["entity"] = frame[settings.entity].astype(str) if settings.entity in frame.columns else None
        return frame[cols]

    def ingest(self, scene: str, labels: pd.DataFrame, settings: SceneSettings, *, id_column: str = "request_id",
               label_column: str = "bad", row_column: str | None = None, entity_column: str | None = None,
               time_column: str | None = None, tolerance_s: float = 30 * 86_400, source: str = "",
               days: list[str] | None = None, progress: Callable[[int, int], None] | None = None) -> IngestResult:
        """Store ``labels`` for ``scene``, joined to its predictions; returns matched/unmatched counts."""
        if not isinstance(labels, pd.DataFrame) or labels.empty:
            raise InvalidInput("no labels given; pass a file or table with at least one row", {"field": "labels"})
        if label_column not in labels.columns:
            raise InvalidInput(f"label column {label_column!r} is not in the labels; columns are "
                               f"{list(labels.columns)[:20]}", {"field": "label_column"})
        by_entity = entity_column is not None
        if by_entity:
            for col, fld in ((entity_column, "entity_column"), (time_column, "time_column")):
                if col is None or col not in labels.columns:
                    raise InvalidInput(f"labels by entity need {fld} naming a column of the labels (got {col!r})",
                                       {"field": fld})
            if not settings.entity:
                raise InvalidInput(f"scene {scene!r} has no entity field set; configure it (monitor configure "
                                   "--entity FIELD) before ingesting labels by entity", {"field": "entity"})
        elif id_column not in labels.columns:
            raise InvalidInput(f"id column {id_column!r} is not in the labels; columns are {list(labels.columns)[:20]}",
                               {"field": "id_column"})
        y = _binary(labels[label_column], label_column)
        served = self.served(scene, settings, days, progress)
        frame = labels.reset_index(drop=True).copy()
        frame["sy_label"] = y
        if by_entity:
            frame["sy_t"] = pd.to_datetime(frame[time_column], utc=True).dt.as_unit("ms").astype("int64")
            frame["sy_entity"] = frame[entity_column].astype(str)
            merged = _match_entity(frame, served, int(tolerance_s * 1000))
        else:
            frame["sy_rid"] = frame[id_column].astype(str)
            frame["sy_row"] = frame[row_column].astype(int) if row_column else 0
            merged = frame.merge(served, left_on=["sy_rid", "sy_row"], right_on=["request_id", "row"], how="left")
            merged["request_id"], merged["row"] = merged["sy_rid"], merged["sy_row"]
        before = len(merged)
        merged = merged.drop_duplicates(subset=["request_id", "row"], keep="last")
        duplicates = before - len(merged)
        matched = merged["ts"].notna()
        ingested = now_ms()
        records = []
        for r in merged.itertuples(index=False):
            ok = not (isinstance(r.ts, float) and math.isnan(r.ts)) and r.ts is not None
            score = None if not ok or r.score is None or (isinstance(r.score, float) and math.isnan(r.score)) \
                else float(r.score)
            records.append({
                "scene": scene, "request_id": str(r.request_id)[:128], "row": int(r.row), "label": float(r.sy_label),
                "matched": bool(ok), "ts": int(r.ts) if ok else None, "day": r.day if ok else None,
                "version": int(r.version) if ok and r.version is not None else None,
                "arm": r.arm if ok else None, "score": score,
                "decision": None if not ok or r.decision is None or (isinstance(r.decision, float)) else str(r.decision),
                "source": source[:255], "ingested_at": ingested})
        with self.store.begin() as conn:
            keys = [(rec["request_id"], rec["row"]) for rec in records]
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                conn.execute(L.delete().where((L.c.scene == scene) & sa.tuple_(L.c.request_id, L.c.row).in_(chunk)))
            for start in range(0, len(records), 1000):
                conn.execute(L.insert(), records[start:start + 1000])
        unmatched = merged.loc[~matched, "request_id"].astype(str).tolist()
        return IngestResult(len(labels), int(matched.sum()), len(unmatched), duplicates, unmatched[:20])

    def day_labels(self, scene: str, day: str) -> pd.DataFrame:
        with self.store.read() as conn:
            rows = conn.execute(sa.select(L.c.request_id, L.c.row, L.c.label).where(
                (L.c.scene == scene) & (L.c.day == day) & L.c.matched)).all()
        return pd.DataFrame(rows, columns=["request_id", "row", "label"])

    def metrics(self, scene: str, since: str | None = None, until: str | None = None) -> LabelMetrics:
        # days are compared as text: anything but YYYY-MM-DD would silently select nothing
        since, until = _window_day(since, "since"), _window_day(until, "until")
        cond = L.c.scene == scene
        with self.store.read() as conn:
            unmatched = conn.execute(sa.select(sa.func.count()).select_from(L).where(cond & ~L.c.matched)).scalar_one()
            if since:
                cond &= L.c.day >= since
            if until:
                cond &= L.c.day <= until
            rows = conn.execute(sa.select(L.c.day, L.c.version, L.c.label, L.c.score, L.c.decision)
                                .where(cond & L.c.matched)).all()
        frame = pd.DataFrame(rows, columns=["day", "version", "label", "score", "decision"])
        approve = SceneStore(self.store).settings(scene).approve
        return LabelMetrics(scene, per_group(frame, ["version", "day"], approve), per_group(frame, ["version"], approve),
                            len(frame), int(unmatched), per_group(frame.assign(all="all"), ["all"], approve))


def _window_day(value: str | None, name: str) -> str | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise InvalidInput(f"{name} {value!r} is not a date; use YYYY-MM-DD", {"field": name}) from None


@dataclass
class LabelMetrics:
    scene: str
    by_day: pd.DataFrame
    by_version: pd.DataFrame
    matched: int
    unmatched: int
    pooled: pd.DataFrame = field(default_factory=pd.DataFrame)

    def overall(self) -> pd.DataFrame:
        """All versions and days pooled (one row, or none without labels)."""
        return self.pooled

    def to_dict(self) -> dict[str, Any]:
        from shipyard.reports import to_jsonable

        return {"scene": self.scene, "matched": self.matched, "unmatched": self.unmatched,
                "overall": to_jsonable(self.pooled.drop(columns=["all"], errors="ignore")),
                "by_version": to_jsonable(self.by_version), "by_day": to_jsonable(self.by_day)}


def per_group(frame: pd.DataFrame, keys: list[str], approve: tuple[str, ...]) -> pd.DataFrame:
    from shipyard.risk.metrics import auc, ks

    cols = [*keys, "labelled", "bad_rate", "approval_rate", "auc", "ks"]
    if frame.empty:
        return pd.DataFrame(columns=cols)
    out = []
    for key, g in frame.groupby(keys, sort=True):
        y = g["label"].to_numpy(dtype=float)
        s = g["score"].to_numpy(dtype=float)
        ok = ~np.isnan(s)
        both = 0 < y[ok].sum() < ok.sum()
        decided = g["decision"].notna()
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        row.update(labelled=len(g), bad_rate=float(y.mean()),
                   approval_rate=float(g.loc[decided, "decision"].isin(approve).mean()) if decided.any() else None,
                   auc=auc(y[ok].astype(int), s[ok]) if both else None,
                   ks=ks(y[ok].astype(int), s[ok]).statistic if both else None)
        out.append(row)
    return pd.DataFrame(out, columns=cols)


def _match_entity(frame: pd.DataFrame, served: pd.DataFrame, tolerance_ms: int) -> pd.DataFrame:
    """Each label to the latest prediction for its entity at or before its time (within tolerance)."""
    frame = frame.sort_values("sy_t").reset_index(drop=True)
    right = served.dropna(subset=["entity"]).copy()
    right["ts"] = right["ts"].astype("int64")
    right = right.sort_values("ts")
    merged = pd.merge_asof(frame, right, left_on="sy_t", right_on="ts", left_by="sy_entity", right_by="entity",
                           direction="backward", tolerance=tolerance_ms)
    miss = merged["ts"].isna()
    merged.loc[miss, "request_id"] = "entity:" + merged.loc[miss, "sy_entity"] + "@" + merged.loc[miss, "sy_t"].astype(str)
    merged.loc[miss, "row"] = 0
    merged["row"] = merged["row"].astype(int)
    return merged
