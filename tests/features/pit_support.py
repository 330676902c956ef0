"""Shared pieces of the point-in-time tests: a project writer and a random-data strategy.

``stats`` (one integer key, created timestamps) and ``shop_stats`` (one string key) take the DuckDB
engine's numpy join; ``pair_stats`` (a composite key) takes its ASOF JOIN.
"""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from hypothesis import strategies as st

T0 = datetime(2024, 1, 1, tzinfo=UTC)

VIEW_FILE = """
from datetime import timedelta
from shipyard.features import Entity, FeatureView, Field, FileSource, Float64, Int64, String, Timestamp

user = Entity("user", join_keys=["user_id"], value_types="int64")
pair = Entity("pair", join_keys=["user_id", "shop"], value_types={{"user_id": "int64", "shop": "string"}})

stats = FeatureView(
    "stats", entities=[user], fields=[Field("x", Float64), Field("n", Int64)],
    source=FileSource("stats.parquet"), timestamp_field="ts", created_timestamp_field="created",
    ttl={ttl},
)
pair_stats = FeatureView(
    "pair_stats", entities=[pair], fields=[Field("y", Float64), Field("label", String)],
    source=FileSource("pairs.parquet"), timestamp_field="ts", ttl=None,
)
"""

SHOP_VIEW = """
shop = Entity("shop", join_keys=["shop"], value_types="string")
shop_stats = FeatureView(
    "shop_stats", entities=[shop], fields=[Field("z", Float64), Field("seen", Timestamp)],
    source=FileSource("shops.parquet"), timestamp_field="ts", created_timestamp_field="created",
    ttl=timedelta(hours=12),
)
"""


def write_project(root: Path, stats: pd.DataFrame, pairs: pd.DataFrame, ttl_hours: float | None,
                  shops: pd.DataFrame | None = None) -> Path:
    """Views ``stats`` and ``pair_stats``, and ``shop_stats`` when ``shops`` is given."""
    (root / "features").mkdir(parents=True, exist_ok=True)
    stats.to_parquet(root / "stats.parquet")
    pairs.to_parquet(root / "pairs.parquet")
    ttl = "None" if ttl_hours is None else f"timedelta(hours={ttl_hours})"
    text = VIEW_FILE.format(ttl=ttl)
    if shops is not None:
        shops.to_parquet(root / "shops.parquet")
        text += SHOP_VIEW
    (root / "features" / "views.py").write_text(textwrap.dedent(text))
    return root


@st.composite
def pit_data(draw: Any) -> dict[str, Any]:
    """Random view rows with ties, duplicates and late arrivals, and entity rows around them."""
    n_users = draw(st.integers(1, 4))
    # Far-apart ids make the numpy join look keys up by hash instead of using them as offsets.
    scale = draw(st.sampled_from([1, 1, -7, 10**12]))
    hours = st.integers(0, 48)
    stats = []
    for _ in range(draw(st.integers(0, 25))):
        user = draw(st.integers(0, n_users)) * scale
        ts = T0 + timedelta(hours=draw(hours))
        # created may come long after the event (late-arriving rows); ties on created are exact duplicates
        created = ts + timedelta(hours=draw(st.integers(0, 5)))
        stats.append({"user_id": user, "ts": ts, "created": created, "x": float(draw(st.integers(-50, 50))),
                      "n": draw(st.integers(0, 9))})
    dedup: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in stats:
        dedup.setdefault((row["user_id"], row["ts"], row["created"]), row)
    stats = [dict(r) for r in dedup.values()]
    if stats and draw(st.booleans()):
        stats.append(dict(stats[0]))  # an exact duplicate row
    pairs = []
    shops = ["a", "b"]
    for _ in range(draw(st.integers(0, 15))):
        ts = T0 + timedelta(hours=draw(hours))
        pairs.append({"user_id": draw(st.integers(0, n_users)) * scale, "shop": draw(st.sampled_from(shops)), "ts": ts,
                      "y": float(draw(st.integers(0, 9))), "label": draw(st.sampled_from(["p", "q"]))})
    seen_pairs: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in pairs:
        seen_pairs.setdefault((row["user_id"], row["shop"], row["ts"]), row)
    pairs = list(seen_pairs.values())
    shop_rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for _ in range(draw(st.integers(0, 15))):
        # shop "c" has values but no entity rows
        shop, ts = draw(st.sampled_from(["a", "b", "c"])), T0 + timedelta(hours=draw(hours))
        created = ts + timedelta(hours=draw(st.integers(0, 3)))
        shop_rows.setdefault((shop, ts, created), {"shop": shop, "ts": ts, "created": created,
                                                   "z": float(draw(st.integers(0, 9))),
                                                   "seen": ts - timedelta(minutes=draw(st.integers(0, 90)))})
    entity = []
    for _ in range(draw(st.integers(1, 20))):
        # shop "d" has no values; None has no key at all
        entity.append({"user_id": draw(st.integers(0, n_users + 1)) * scale,
                       "shop": draw(st.sampled_from([*shops, "d", None])),
                       "event_timestamp": T0 + timedelta(hours=draw(st.integers(-2, 60)),
                                                         minutes=draw(st.sampled_from([0, 0, 30])))})
    ttl_hours = draw(st.sampled_from([None, 1, 6, 24]))
    return {"stats": stats, "pairs": pairs, "shops": list(shop_rows.values()), "entity": entity,
            "ttl_hours": ttl_hours}


def frames(data: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    stats, pairs = view_frames(data)
    entity = pd.DataFrame(data["entity"])
    entity["event_timestamp"] = pd.to_datetime(entity["event_timestamp"], utc=True)
    return stats, pairs, entity


def view_frames(data: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two views' rows of ``data`` as typed frames (times UTC-aware)."""
    stats = pd.DataFrame(data["stats"], columns=["user_id", "ts", "created", "x", "n"])
    stats = stats.astype({"user_id": "int64", "x": "float64", "n": "int64"})
    stats["ts"] = pd.to_datetime(stats["ts"], utc=True)
    stats["created"] = pd.to_datetime(stats["created"], utc=True)
    pairs = pd.DataFrame(data["pairs"], columns=["user_id", "shop", "ts", "y", "label"])
    pairs = pairs.astype({"user_id": "int64", "y": "float64", "shop": "str", "label": "str"})
    pairs["ts"] = pd.to_datetime(pairs["ts"], utc=True)
    return stats, pairs


def shop_frame(data: dict[str, Any]) -> pd.DataFrame:
    shops = pd.DataFrame(data["shops"], columns=["shop", "ts", "created", "z", "seen"])
    shops = shops.astype({"shop": "str", "z": "float64"})
    for col in ("ts", "created", "seen"):
        shops[col] = pd.to_datetime(shops[col], utc=True)
    return shops
