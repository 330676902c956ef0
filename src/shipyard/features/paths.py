"""Where the feature store keeps its files in the artifact store.

A leaf module: the facade (``store.py``), training sets, materialization and push all need these
names, and none of them should import another just for a path.
"""

OFFLINE_LOG_PREFIX = "features/offline"

__all__ = ["OFFLINE_LOG_PREFIX"]
