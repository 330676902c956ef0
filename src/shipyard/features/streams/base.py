"""What every stream consumer shares, whatever the transport.

A consumer reads batches from its transport, hands them to a :class:`StreamIngestor` (decode,
validate, write online and offline), acknowledges what was written and dead-letters the rest. The
transport-specific part is ``setup()`` (create streams, groups, durable consumers) and
``_consume()`` (the read loop); ``run()``, the limits, the statistics, dead-letter logging and
``close()`` are here, once.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from shipyard.features.streams.core import BatchOutcome, ConsumeStats, RunLimits, StreamIngestor

if TYPE_CHECKING:
    from shipyard.features.store import FeatureStore

class StreamConsumer(ABC):
    """Consume one stream (Redis stream, NATS subject) into one feature view."""

    #: the name of what is read, for messages (a Redis stream, a NATS subject)
    source_name: str

    def __init__(self, store: FeatureStore, view: str, *, dead_letter: str, batch_size: int,
                 to_offline: bool) -> None:
        self.view = view
        self.dead_letter = dead_letter
        self.batch_size = batch_size
        self.ingestor = StreamIngestor(store, view, to_offline=to_offline)

    @abstractmethod
    def setup(self) -> dict[str, Any]:
        """Create what the transport needs before anything is published or read; what was created."""

    @abstractmethod
    def _consume(self, stats: ConsumeStats, limits: RunLimits, stop: threading.Event | None) -> None:
        """Read, ingest and acknowledge until ``limits.done(stats, stop)``."""

    def run(
        self,
        *,
        max_messages: int | None = None,
        timeout: float | None = None,
        idle_timeout: float | None = None,
        stop: threading.Event | None = None,
    ) -> ConsumeStats:
        """Consume until ``max_messages`` were handled, ``timeout`` seconds passed, the source stayed
        empty for ``idle_timeout`` seconds, or ``stop`` was set."""
        stats = ConsumeStats()
        limits = RunLimits(self.batch_size, max_messages, timeout, idle_timeout)
        self._consume(stats, limits, stop)
        stats.seconds = limits.elapsed()
        return stats

    def _log_dead_letters(self, outcome: BatchOutcome) -> None:
        if outcome.dead:
            # logged under the transport's module, where an operator looks for its messages
            logging.getLogger(type(self).__module__).warning(
                "%d message(s) from %s dead-lettered to %s; first: %s", len(outcome.dead), self.source_name,
                self.dead_letter, outcome.dead[0].reason)

    def close(self) -> None:
        """Release the transport's connections (none by default: a run opens and closes its own)."""
        return None

    def __enter__(self) -> StreamConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["StreamConsumer"]
