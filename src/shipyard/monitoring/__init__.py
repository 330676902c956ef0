"""Monitoring: operational time series, drift statistics, daily model reports with custom-metric
plugins, label feedback, alert rules and notifiers.

    import shipyard as sy
    report = sy.monitoring.drift(reference_df, current_df)
    report.to_dict(); report.save_html("drift.html")
"""

from shipyard.monitoring.baseline import Baseline, ColumnBaseline, ColumnStats
from shipyard.monitoring.drift import ColumnDrift, DriftReport, DriftThresholds, drift

__all__ = [
    "Baseline",
    "ColumnBaseline",
    "ColumnDrift",
    "ColumnStats",
    "DriftReport",
    "DriftThresholds",
    "drift",
]
