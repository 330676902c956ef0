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
    "binary_target": "shipyard.risk.target",
    "select_variables": "shipyard.risk.selection",
    "SelectionResult": "shipyard.risk.selection",
    "Scorecard": "shipyard.risk.scorecard",
    "auc": "shipyard.risk.metrics",
    "ks": "shipyard.risk.metrics",
    "gini": "shipyard.risk.metrics",
    "psi": "shipyard.risk.metrics",
    "psi_table": "shipyard.risk.metrics",
    "lift_table": "shipyard.risk.metrics",
    "ModelReport": "shipyard.risk.report",
    "Rule": "shipyard.risk.rules",
    "RuleSet": "shipyard.risk.rules",
    "threshold_rules": "shipyard.risk.rules",
    "tree_rules": "shipyard.risk.rules",
    "select_rules": "shipyard.risk.rules",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'shipyard.risk' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = sorted(_LAZY)
