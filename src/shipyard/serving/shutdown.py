"""A serving process's graceful shutdown, phase by phase, in its own log.

On SIGTERM (or Ctrl-C) uvicorn stops accepting connections, closes idle ones and lets the requests
in flight finish; then the application shuts down: rollout runners free their leases (another
server continues their rollouts), hot swap stops polling, queued calls and mirrored (shadow) calls
still waiting are dropped, and the prediction log writes everything submitted. ``ShutdownLog``
logs each phase (logger ``shipyard.serving.shutdown``, INFO; ``shipyard server`` prints it on
stderr) with the time since the signal, so the order and the duration of a shutdown can be read
from the server's own output::

    INFO:     shutdown +0 ms: SIGTERM received; no new connections, 1 prediction request(s) in flight
    INFO:     shutdown +1008 ms: requests finished, rollout leases freed
    INFO:     shutdown +1009 ms: hot swap stopped
    INFO:     shutdown +1041 ms: prediction log flushed (2 records written, 0 dropped)
    INFO:     shutdown +1042 ms: complete

The signal is seen by chaining the handler uvicorn installs (in the main thread of each worker
process); the previous handler always runs, so uvicorn's own behaviour does not change.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ShutdownLog:
    """Timestamps and logs the phases of one shutdown; ``phases`` keeps (text, ms since signal)."""

    def __init__(self, inflight: Callable[[], int] = lambda: 0) -> None:
        self.inflight = inflight
        self.signalled: float | None = None
        self.phases: list[tuple[str, float]] = []
        self._lock = threading.Lock()

    def watch_signals(self) -> bool:
        """Log the moment SIGTERM/SIGINT arrives, then hand it to the handler installed before.
        Only from the main thread (where Python runs signal handlers); False elsewhere."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for sig in SIGNALS:
            previous = signal.getsignal(sig)
            if not callable(previous):  # default or ignored: the server does not drain on it anyway
                continue

            def handler(signum: int, frame: Any, previous: Callable[[int, Any], Any] = previous) -> None:
                self.signal_received(signal.Signals(signum).name)
                previous(signum, frame)

            signal.signal(sig, handler)
        return True

    def signal_received(self, name: str) -> None:
        if self.signalled is None:
            self.signalled = time.monotonic()
            self.phase(f"{name} received; no new connections, {self.inflight()} prediction request(s) in flight")

    def phase(self, text: str) -> None:
        with self._lock:
            if self.signalled is None:  # shut down without a signal (an in-process app, a test client)
                self.signalled = time.monotonic()
            elapsed_ms = (time.monotonic() - self.signalled) * 1000
            self.phases.append((text, elapsed_ms))
        log.info("shutdown +%.0f ms: %s", elapsed_ms, text)
