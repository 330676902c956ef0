"""Custom-metric plugins for the daily model report.

A plugin is two functions::

    def calculate_metrics(history_stats, day_log, bins):
        # history_stats: DataFrame, this plugin's day_stats of earlier days (column "day" + its keys)
        # day_log:       DayLog, the day's served rows (day_log["col"], day_log.frame()) and statistics
        # bins:          DataFrame, the baseline's bins (column, bin, lower, upper, expected_count, expected_pct)
        return display_df, day_stats       # day_stats: dict (or one-row DataFrame) of numbers

    def display_metrics(display_df):
        return ...  # a DataFrame, text, a dict of headline numbers, report blocks, or a list of them

``day_stats`` is stored with the day, feeds the plugin's history and trends, and can be alerted
on as ``custom:<plugin>.<key>``. A plugin is registered by entry point (group
``shipyard.monitoring_plugins``, the entry point's name is the plugin's) or by path
(``path/to/file.py`` or ``package.module``) in the scene's monitoring settings. Each call runs
inside an error boundary: an exception is shown with its traceback in the plugin's section and
the rest of the report is built as usual.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import math
import re
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path, PurePath
from types import ModuleType
from typing import Any

import pandas as pd

from shipyard.errors import InvalidInput, NotFound
from shipyard.monitoring.plugin import Plugin
from shipyard.reports import Chart, Metrics, Section, Table, Text

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "shipyard.monitoring_plugins"
Block = Text | Metrics | Table | Chart


@dataclass
class PluginResult:
    name: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    day_stats: dict[str, float | int | str | None] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None

    def section(self) -> Section:
        if self.error is None:
            return Section(self.title or self.name, list(self.blocks))
        return Section(f"{self.title or self.name} (failed)", [
            Text(f"The plugin {self.name!r} raised {self.error}. The other sections are not affected."),
            Text(self.traceback or ""),
        ])


def plugin_from(obj: Any, name: str, origin: str) -> Plugin:
    calc = getattr(obj, "calculate_metrics", None)
    show = getattr(obj, "display_metrics", None)
    if not callable(calc) or not callable(show):
        raise InvalidInput(f"plugin {name!r} ({origin}) must define calculate_metrics(history_stats, day_log, bins) "
                           "and display_metrics(display_df)", {"field": "plugins", "plugin": name})
    title = getattr(obj, "TITLE", None) or getattr(obj, "title", None) or name
    return Plugin(name, calc, show, str(title), origin)


_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def check_plugin_path(spec: str) -> str:
    """A plugin's path: a .py file or an importable module's dotted name. Checked when a scene's
    settings are saved and again when the plugin is loaded."""
    if spec.endswith(".py"):
        return spec
    if not _MODULE.match(spec):
        raise InvalidInput(f"plugin path {spec!r} is neither a .py file nor a module name; give e.g. "
                           "'monitoring/high_scores.py' or 'mypackage.plugins.high_scores'",
                           {"field": "plugins.path"})
    return spec


def _load_path(spec: str) -> ModuleType:
    check_plugin_path(spec)
    path = Path(spec)
    if spec.endswith(".py"):
        if not path.is_file():
            raise NotFound(f"plugin file {spec!r} does not exist; give the path of a .py file", {"field": "plugins"})
        mod_name = f"shipyard_monitoring_plugin_{path.stem}_{abs(hash(str(path.resolve()))) % 10**8}"
        loader_spec = importlib.util.spec_from_file_location(mod_name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise InvalidInput(f"cannot load plugin file {spec!r}", {"field": "plugins"})
        module = importlib.util.module_from_spec(loader_spec)
        loader_spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(spec)
    except ImportError as exc:
        raise NotFound(f"plugin module {spec!r} cannot be imported ({exc}); give a .py path or an importable "
                       "module", {"field": "plugins"}) from None


def load_plugin(name: str, path: str | None = None) -> Plugin:
    """A plugin by path (file or module), else by entry point or built-in name."""
    if path:
        return plugin_from(_load_path(path), name, f"path {path}")
    found = available()
    if name not in found:
        raise NotFound(f"no monitoring plugin named {name!r}; known: {sorted(found)}. Register it by entry point "
                       f"({ENTRY_POINT_GROUP}) or give its path", {"field": "plugins", "plugin": name})
    return found[name]()


def available() -> dict[str, Callable[[], Plugin]]:
    """Plugin factories by name: built-ins, then entry points (which may not shadow a built-in)."""
    from shipyard.monitoring.builtin import BUILTIN

    out: dict[str, Callable[[], Plugin]] = {name: (lambda p=p: p) for name, p in BUILTIN.items()}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in out:
            continue
        out[ep.name] = lambda ep=ep: plugin_from(ep.load(), ep.name, f"entry point {ep.value}")
    return out


def _traceback_without_paths(exc: BaseException) -> str:
    """The last frames of the traceback with file names only: the report is served over HTTP, where
    answers never show where the server keeps its files."""
    tb = traceback.TracebackException.from_exception(exc, limit=-8)
    for frame in tb.stack:
        frame.filename = PurePath(frame.filename).name
    return "".join(tb.format())


def run_plugin(plugin: Plugin, history: pd.DataFrame, day_log: Any, bins: pd.DataFrame) -> PluginResult:
    """Both calls of one plugin inside an error boundary."""
    result = PluginResult(plugin.name, plugin.title)
    try:
        display_df, day_stats = plugin.calculate_metrics(history, day_log, bins)
        result.day_stats = _scalars(day_stats, plugin.name)
        result.blocks = to_blocks(plugin.display_metrics(display_df))
    except Exception as exc:  # the boundary: a broken plugin shows its error in its own section
        result.error = f"{type(exc).__name__}: {exc}"
        result.traceback = _traceback_without_paths(exc)
        result.blocks = []
        log.warning("monitoring plugin %s failed: %s", plugin.name, result.error)
    return result


def _scalars(day_stats: Any, name: str) -> dict[str, float | int | str | None]:
    if day_stats is None:
        return {}
    if isinstance(day_stats, pd.DataFrame):
        if len(day_stats) != 1:
            raise InvalidInput(f"plugin {name!r}: day_stats must be one row, got {len(day_stats)}",
                               {"field": "day_stats"})
        day_stats = day_stats.iloc[0].to_dict()
    if isinstance(day_stats, pd.Series):
        day_stats = day_stats.to_dict()
    if not isinstance(day_stats, Mapping):
        raise InvalidInput(f"plugin {name!r}: day_stats must be a dict of numbers, got {type(day_stats).__name__}",
                           {"field": "day_stats"})
    out: dict[str, float | int | str | None] = {}
    for k, v in day_stats.items():
        if v is None or isinstance(v, str):
            out[str(k)] = v
        elif isinstance(v, bool):
            out[str(k)] = int(v)
        else:
            try:
                f = float(v)
            except (TypeError, ValueError):
                raise InvalidInput(f"plugin {name!r}: day_stats[{k!r}] is {type(v).__name__}; use numbers or text",
                                   {"field": "day_stats"}) from None
            out[str(k)] = f if math.isfinite(f) else None
    return out


def to_blocks(shown: Any) -> list[Block]:
    """What ``display_metrics`` returned, as report blocks."""
    if shown is None:
        return []
    if isinstance(shown, Text | Metrics | Table | Chart):
        return [shown]
    if isinstance(shown, pd.DataFrame):
        return [Table.from_frame(shown)]
    if isinstance(shown, str):
        return [Chart(shown)] if shown.lstrip().startswith("<svg") else [Text(shown)]
    if isinstance(shown, Mapping):
        return [Metrics(dict(shown))]
    if isinstance(shown, list | tuple):
        out: list[Block] = []
        for item in shown:
            out.extend(to_blocks(item))
        return out
    raise InvalidInput(f"display_metrics returned {type(shown).__name__}; return a DataFrame, text, a dict, "
                       "report blocks or a list of them", {"field": "display_metrics"})
