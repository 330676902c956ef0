"""Monitoring: operational time series, drift statistics, daily model reports with custom-metric
plugins, label feedback, alert rules and notifiers.

    import shipyard as sy
    report = sy.monitoring.drift(reference_df, current_df)
    report.to_dict(); report.save_html("drift.html")
"""

from shipyard.monitoring.alerts import AlertEvaluator, AlertRule
from shipyard.monitoring.baseline import Baseline, ColumnBaseline, ColumnStats
from shipyard.monitoring.daily import DailyReport
from shipyard.monitoring.daylog import DayLog
from shipyard.monitoring.drift import ColumnDrift, DriftReport, DriftThresholds, drift
from shipyard.monitoring.labels import IngestResult, LabelMetrics
from shipyard.monitoring.notifiers import SmtpNotifier, WebhookNotifier
from shipyard.monitoring.plugins import Plugin, PluginResult
from shipyard.monitoring.scenes import PluginRef, SceneSettings
from shipyard.monitoring.series import SeriesRecorder, SeriesResult
from shipyard.monitoring.service import Monitoring


def daily_report(ws: object, scene: str, day: object = None, **options: object) -> DailyReport:
    """The daily report of ``scene`` for ``day`` (default yesterday, UTC) from a workspace."""
    return ws.monitoring.daily_report(scene, day, ws.user, **options)  # type: ignore[attr-defined]

__all__ = [
    "AlertEvaluator",
    "AlertRule",
    "Baseline",
    "ColumnBaseline",
    "ColumnDrift",
    "ColumnStats",
    "DailyReport",
    "DayLog",
    "DriftReport",
    "DriftThresholds",
    "IngestResult",
    "LabelMetrics",
    "Monitoring",
    "Plugin",
    "PluginRef",
    "PluginResult",
    "SceneSettings",
    "SeriesRecorder",
    "SeriesResult",
    "SmtpNotifier",
    "WebhookNotifier",
    "daily_report",
    "drift",
]
