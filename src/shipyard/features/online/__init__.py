"""Online stores, chosen by the ``online_store`` setting's URL scheme.

    sqlite                  embedded SQLite file in <project>/.shipyard/online.sqlite (default)
    sqlite:///path/file.db  embedded SQLite at a given path
    lmdb | lmdb:///path     embedded LMDB environment (needs the ``lmdb`` package)
    redis://host:6379/0     Redis; add ``?prefix=team-a:`` to isolate key spaces; also rediss:// (TLS),
                            redis+sentinel://, redis+cluster:// (see ``redis_connect``)
"""

from __future__ import annotations

import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from shipyard.config import Settings
from shipyard.errors import ConfigError
from shipyard.features.online.base import OnlineStore, ViewStats, WriteResult

if TYPE_CHECKING:
    from shipyard.workspace import Workspace


__all__ = ["OnlineStore", "ViewStats", "WriteResult", "online_store_of", "open_online_store", "workspace_of"]


def open_online_store(settings: Settings | None = None, url: str | None = None, **options: object) -> OnlineStore:
    """The online store named by ``url`` (default: ``settings.online_store``)."""
    spec = url if url is not None else (settings.online_store if settings is not None else "sqlite")
    spec = spec or "sqlite"
    state = settings.state_dir if settings is not None else Path(".shipyard")
    scheme = spec.split("://", 1)[0].lower() if "://" in spec else spec.lower()
    if scheme in ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster"):
        from shipyard.features.online.redis_store import RedisOnlineStore

        return RedisOnlineStore(spec, **options)  # type: ignore[arg-type]
    if scheme == "sqlite":
        from shipyard.features.online.sqlite_store import SQLiteOnlineStore

        path = spec[len("sqlite:///") :] if spec.startswith("sqlite:///") else ""
        return SQLiteOnlineStore(Path(path) if path else state / "online.sqlite")
    if scheme == "lmdb":
        from shipyard.features.online.lmdb_store import LMDBOnlineStore

        path = spec[len("lmdb:///") :] if spec.startswith("lmdb:///") else ""
        return LMDBOnlineStore(Path(path) if path else state / "online.lmdb")
    raise ConfigError(
        f"online_store {spec!r} is not supported; use 'sqlite' (embedded), 'lmdb', redis://host:6379/0, rediss://, "
        "redis+sentinel:// or redis+cluster://",
        {"field": "online_store"},
    )


# -- one online store per feature store ---------------------------------------------------------
_OPEN: weakref.WeakKeyDictionary[Any, OnlineStore] = weakref.WeakKeyDictionary()
_OPEN_LOCK = threading.Lock()


def workspace_of(store: object) -> Workspace:
    """The workspace behind a FeatureStore (or the workspace itself)."""
    for name in ("ws", "workspace", "_ws"):
        ws = getattr(store, name, None)
        if ws is not None:
            return cast("Workspace", ws)
    if hasattr(store, "settings") and hasattr(store, "artifacts"):
        return cast("Workspace", store)
    raise ConfigError(f"{type(store).__name__} does not expose its workspace (.ws)")


def online_store_of(store: Any) -> OnlineStore:
    """The online store configured for ``store``'s workspace, opened once and then reused."""
    explicit = getattr(store, "online_store", None)
    if explicit is not None and isinstance(explicit, OnlineStore):
        return explicit
    found = getattr(store, "opened_online_store", None)  # a FeatureStore keeps its own
    if found is not None:
        return found
    found = _OPEN.get(store)  # other objects' are in a weak map; lookups need no lock, opening takes it
    if found is not None:
        return found
    with _OPEN_LOCK:
        found = getattr(store, "opened_online_store", None) or _OPEN.get(store)
        if found is None:
            found = open_online_store(workspace_of(store).settings)
            if hasattr(store, "opened_online_store"):
                store.opened_online_store = found
            else:
                _OPEN[store] = found
        return found
