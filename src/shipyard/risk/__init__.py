"""Credit-risk modelling: binning, WOE/IV, variable selection, scorecards, metrics, reports, rules.

Names are imported lazily so ``import shipyard.risk`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "Binner": "shipyard.risk.binning",
    "WOETransformer": "shipyard.risk.binning",
    "FeatureBins": "shipyard.risk.binning",
    "woe_iv": "shipyard.risk.woe",
    "select_variables": "shipyard.risk.selection",
    "SelectionResult": "shipyard.risk.selection",
    "Scorecard": "shipyard.risk.scorecard",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'shipyard.risk' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = sorted(_LAZY)
