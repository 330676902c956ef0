"""Crash recovery for a workspace: records left in progress by processes that died are resumed or
marked abandoned (the mechanism: ``shipyard.store.leases``).

Each subsystem with job records contributes a ``RecoverableKind``: model versions left ``pending`` or
``validating`` are validated again (``abandoned`` after repeated deaths), materialization runs left
``running`` are marked ``abandoned``. Pipeline and scheduled runs join this list the same way.

``shipyard server`` runs ``RecoveryLoop``: once at start, then every ``recovery_interval_s``
seconds (default 30), in every worker; a record is recovered by exactly one of them. Without a
server, ``recover(ws)`` (or ``python -m shipyard.recovery``) does one pass.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

from shipyard.store import leases
from shipyard.workspace import Workspace

log = logging.getLogger(__name__)


def job_kinds(ws: Workspace) -> list[leases.RecoverableKind]:
    from shipyard.features.materialize import MaterializationRecovery

    return [ws.registry.recovery(), MaterializationRecovery(ws)]


def recover(ws: Workspace) -> list[leases.Recovery]:
    """One pass: resume or abandon every record whose process is gone (see the module doc)."""
    return leases.recover(ws.store, job_kinds(ws), ttl_s=ws.settings.lease_ttl_s)


class RecoveryLoop:
    """``recover(ws)`` at start and every ``interval`` seconds, in a background thread."""

    def __init__(self, ws: Workspace, interval: float | None = None) -> None:
        self.ws = ws
        self.interval = float(interval if interval is not None else ws.settings.recovery_interval_s)
        self.passes = 0
        self.recovered: list[leases.Recovery] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="shipyard-recovery", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.recovered.extend(recover(self.ws))
            except Exception:  # a store outage: try again next time
                log.exception("crash recovery pass failed")
            self.passes += 1
            if self.interval <= 0 or self._stop.wait(self.interval):
                return


def install(app: Any, ws: Workspace, **options: Any) -> None:
    """Run a ``RecoveryLoop`` for the app's lifetime (``recover=False`` to leave it out)."""
    if not options.get("recover", True):
        return
    loop = RecoveryLoop(ws, options.get("recovery_interval"))
    app.state.recovery = loop
    previous = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(asgi_app: Any) -> AsyncIterator[Any]:
        loop.start()
        try:
            async with previous(asgi_app) as value:
                yield value
        finally:
            loop.stop()

    app.router.lifespan_context = lifespan


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    from shipyard.workspace import connect

    parser = argparse.ArgumentParser(prog="python -m shipyard.recovery",
                                     description="Resume or abandon records left in progress by dead processes.")
    parser.add_argument("--project", default=None, help="project folder (default: found from the current one)")
    args = parser.parse_args(argv)
    ws = connect(args.project)
    try:
        for item in recover(ws):
            print(json.dumps(item.to_dict()))
    finally:
        ws.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
