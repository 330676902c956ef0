"""Release tooling of a scene, in three parts (this module re-exports their public names):

- ``release_checks``: stress tests, the shadow report and scene status;
- ``release_store``: the release rows and the rollout lease in the metadata store (status, abort,
  the canary shares every server applies, stale releases);
- ``rollout``: the canary state machine and the runner that drives rollouts, one process per
  rollout, continued by another server when that one dies.
"""

from __future__ import annotations

from shipyard.serving.release_checks import (
    MAX_STRESS_SECONDS,
    scene_status,
    shadow_report,
    stress_test,
    stress_test_model,
)
from shipyard.serving.release_store import (
    FINISHED,
    ROLLOUT_LEASE,
    STALE_AFTER_S,
    abandon_stale_releases,
    abort_rollout,
    latest_canaries,
    list_releases,
    rollout_status,
)
from shipyard.serving.rollout import WATCH_S, WINDOW_S, CanaryRollout, RolloutRunner, check_steps, set_canary

__all__ = [
    "FINISHED", "MAX_STRESS_SECONDS", "ROLLOUT_LEASE", "STALE_AFTER_S", "WATCH_S", "WINDOW_S", "CanaryRollout",
    "RolloutRunner", "abandon_stale_releases", "abort_rollout", "check_steps", "latest_canaries", "list_releases",
    "rollout_status", "scene_status", "set_canary", "shadow_report", "stress_test", "stress_test_model",
]
