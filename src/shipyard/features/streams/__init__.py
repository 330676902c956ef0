"""Stream ingestion into feature views: Redis Streams and NATS JetStream.

``consumer_for(store, source, view)`` picks the consumer from the source URL:

    redis://host:6379/0/<stream>      Redis Streams (database 0, stream name last)
    nats://host:4222/<subject>        NATS JetStream (subject last)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from shipyard.errors import ConfigError
from shipyard.features.streams.base import StreamConsumer
from shipyard.features.streams.core import BatchOutcome, ConsumeStats, DeadLetter, StreamIngestor

if TYPE_CHECKING:
    from shipyard.features.store import FeatureStore

__all__ = ["BatchOutcome", "ConsumeStats", "DeadLetter", "StreamConsumer", "StreamIngestor", "consumer_for",
           "parse_source"]


def parse_source(source: str) -> tuple[str, str, str]:
    """``(kind, server URL, stream or subject)`` from a --source URL."""
    parts = urlsplit(source)
    segments = [s for s in parts.path.split("/") if s]
    if parts.scheme in ("redis", "rediss") and segments:
        db = segments[0] if len(segments) > 1 else "0"
        name = "/".join(segments[1:]) if len(segments) > 1 else segments[0]
        return "redis", urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, "")), name
    if parts.scheme in ("nats", "tls") and segments:
        return "nats", urlunsplit((parts.scheme, parts.netloc, "", "", "")), ".".join(segments)
    raise ConfigError(
        f"stream source {source!r} is not understood; use redis://host:6379/0/<stream> or nats://host:4222/<subject>",
        {"field": "source"},
    )


def consumer_for(store: FeatureStore, source: str, view: str, **options: Any) -> StreamConsumer:
    kind, url, name = parse_source(source)
    if kind == "redis":
        from shipyard.features.streams.redis_streams import RedisStreamConsumer

        return RedisStreamConsumer(store, view, url, name, **options)
    from shipyard.features.streams.nats_jetstream import NatsStreamConsumer

    return NatsStreamConsumer(store, view, url, name, **options)
