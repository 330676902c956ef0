"""Where the Redis online store connects, read from its URL, and the redis-py clients for it.

    redis://[user:password@]host:6379/0            one server (``rediss://`` for TLS, ``unix:///path``)
    redis+sentinel://[user:password@]h1:26379,h2:26379/<master name>[/db]
    redis+cluster://[user:password@]h1:7000[,h2:7001]   Redis Cluster (db 0 only)

``rediss+sentinel://`` and ``rediss+cluster://`` use TLS to every node. Query parameters:
``prefix``, ``socket_timeout`` and ``socket_connect_timeout`` (seconds, 5 unless given, whatever
redis-py's own default is), ``ssl_ca_certs``, ``ssl_ca_path``, ``ssl_certfile``, ``ssl_keyfile``,
``ssl_cert_reqs`` (required|optional|none), ``ssl_check_hostname`` (true|false), and for Sentinel
``sentinel_username`` / ``sentinel_password`` when the Sentinels have credentials of their own.

Everything goes through redis-py's public API: a connection pool (or a Sentinel-managed pool, or
a ``RedisCluster``) and, per thread, a client holding one connection of that pool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import parse_qsl, unquote, urlsplit

from shipyard.errors import ConfigError

if TYPE_CHECKING:
    import redis
    from redis.cluster import RedisCluster

    RedisClient: TypeAlias = "redis.Redis | RedisCluster"

DEFAULT_TIMEOUT = 5.0  # seconds; documented in docs/features-online.md
SCHEMES = {"redis": ("server", False), "rediss": ("server", True), "unix": ("server", False),
           "redis+sentinel": ("sentinel", False), "rediss+sentinel": ("sentinel", True),
           "redis+cluster": ("cluster", False), "rediss+cluster": ("cluster", True)}
_SECONDS = ("socket_timeout", "socket_connect_timeout")
_TLS = ("ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")
_SENTINEL = ("sentinel_username", "sentinel_password")
_KNOWN = ("prefix", *_SECONDS, *_TLS, *_SENTINEL)
_EXAMPLE = "redis://host:6379/0, rediss://host:6380/0?ssl_ca_certs=/path/ca.pem, redis+cluster://host:7000"


def _bad(message: str) -> ConfigError:
    return ConfigError(f"online_store: {message}", {"field": "online_store"})


@dataclass(frozen=True)
class RedisTarget:
    """A parsed online-store URL: the mode, the nodes, the credentials and the connection options."""

    mode: str  # "server", "sentinel" or "cluster"
    url: str  # the server URL without query (mode "server": handed to redis-py as is)
    nodes: tuple[tuple[str, int], ...] = ()  # Sentinels or cluster seed nodes
    service: str = ""  # the Sentinel master name
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    prefix: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # socket and TLS keyword arguments
    sentinel_auth: dict[str, str] = field(default_factory=dict)

    @property
    def cluster(self) -> bool:
        return self.mode == "cluster"


def parse_url(url: str) -> RedisTarget:
    """The target named by an online-store URL; a clear error naming the part that is wrong."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise _bad(f"{url!r} is not a Redis URL; use one of {_EXAMPLE}")
    mode, tls = SCHEMES[scheme]
    parts = urlsplit(url)
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _KNOWN:
            raise _bad(f"unknown parameter {key!r} in {_redacted(url)!r}; known: {', '.join(_KNOWN)}")
        query[key] = value
    options: dict[str, Any] = {}
    for key in _SECONDS:
        raw = query.get(key)
        try:
            seconds = DEFAULT_TIMEOUT if raw is None else float(raw)
        except ValueError:
            seconds = -1.0
        if not seconds > 0:
            raise _bad(f"{key}={raw!r} is not a positive number of seconds; e.g. {key}=0.5")
        options[key] = seconds
    for key in _TLS:
        if key in query:
            if not tls:
                raise _bad(f"{key} needs TLS; use rediss:// (or rediss+sentinel://, rediss+cluster://)")
            options[key] = _tls_value(key, query[key])
    sentinel_auth = {k.removeprefix("sentinel_"): query[k] for k in _SENTINEL if k in query}
    if sentinel_auth and mode != "sentinel":
        raise _bad("sentinel_username and sentinel_password only apply to redis+sentinel:// URLs")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    prefix = query.get("prefix")
    base = url.split("?", 1)[0].split("#", 1)[0]
    if mode == "server":
        return RedisTarget(mode, base, username=username, password=password, tls=tls, prefix=prefix,
                           options=options)
    nodes = _nodes(parts.netloc.rpartition("@")[2], 26379 if mode == "sentinel" else 6379)
    path = [p for p in parts.path.split("/") if p]
    if mode == "sentinel":
        if not path or len(path) > 2:
            raise _bad(f"{_redacted(url)!r} names no master; use redis+sentinel://host:26379/<master name>/0")
        db = _db(path[1]) if len(path) == 2 else 0
        return RedisTarget(mode, base, nodes, path[0], db, username, password, tls, prefix, options, sentinel_auth)
    if path and path != ["0"]:
        raise _bad("Redis Cluster has only database 0; drop the path from the redis+cluster:// URL")
    return RedisTarget(mode, base, nodes, "", 0, username, password, tls, prefix, options)


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def _tls_value(key: str, raw: str) -> Any:
    if key == "ssl_check_hostname":
        if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise _bad(f"ssl_check_hostname={raw!r} must be true or false")
        return raw.lower() in ("true", "1", "yes")
    if key == "ssl_cert_reqs":
        if raw.lower() not in ("required", "optional", "none"):
            raise _bad(f"ssl_cert_reqs={raw!r} must be required, optional or none")
        return raw.lower()
    if not raw:
        raise _bad(f"{key} is empty; give a file path, e.g. {key}=/etc/ssl/redis/ca.pem")
    return raw


def _db(text: str) -> int:
    if not text.isdigit():
        raise _bad(f"database {text!r} is not a number; e.g. /0")
    return int(text)


def _nodes(netloc: str, default_port: int) -> tuple[tuple[str, int], ...]:
    out = []
    for item in filter(None, netloc.split(",")):
        host, _, port = item.rpartition(":") if item.rsplit(":", 1)[-1].isdigit() else (item, "", "")
        host = host.strip("[]")
        if not host:
            raise _bad(f"host {item!r} has no name; e.g. 127.0.0.1:{default_port}")
        out.append((host, int(port) if port else default_port))
    if not out:
        raise _bad(f"no host given; e.g. {_EXAMPLE}")
    return tuple(out)


def connection_options(target: RedisTarget) -> dict[str, Any]:
    """Keyword arguments of every connection: timeouts, credentials, TLS, and no automatic retry
    (the store retries reads itself, once; a repeated write would report its rows as duplicates)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    kwargs: dict[str, Any] = {**target.options, "retry": Retry(NoBackoff(), 0)}
    if target.mode != "server":  # a server URL carries these itself
        if target.username is not None:
            kwargs["username"] = target.username
        if target.password is not None:
            kwargs["password"] = target.password
    if target.tls and target.mode != "server":
        kwargs["ssl"] = True
    return kwargs


def open_client(target: RedisTarget) -> RedisClient:
    """The shared client of a target: a ``Redis`` over a pool (one server or the Sentinel-managed
    master) or a ``RedisCluster``. Per-thread clients are made from its pool (``thread_client``)."""
    import redis

    kwargs = connection_options(target)
    try:
        if target.mode == "server":
            pool = redis.ConnectionPool.from_url(target.url, **kwargs)
            return redis.Redis(connection_pool=pool)
        if target.mode == "sentinel":
            from redis.sentinel import Sentinel

            own = {k: v for k, v in kwargs.items() if k not in ("username", "password")}
            sentinel = Sentinel(list(target.nodes), sentinel_kwargs={**own, **target.sentinel_auth}, **kwargs)
            return sentinel.master_for(target.service, db=target.db)
        from redis.cluster import ClusterNode, RedisCluster

        kwargs.pop("retry")  # the cluster client retries through slot moves and failovers on its own
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in target.nodes], **kwargs)
    except ValueError as exc:
        raise _bad(f"{_redacted(target.url)!r} is not a valid Redis URL ({exc}); use one of {_EXAMPLE}") from None


def thread_client(shared: RedisClient) -> RedisClient:
    """A client holding one connection of ``shared``'s pool, for one thread: no pool checkout per
    command. A cluster client is shared as it is (it keeps a pool per node and is thread-safe)."""
    import redis

    if not isinstance(shared, redis.Redis):
        return shared
    return redis.Redis(connection_pool=shared.connection_pool, single_connection_client=True)
