"""What a monitoring plugin is: a name, a calculation over the day's data and how it is shown.

Its own module so that the built-in plugins (``builtin.py``) and the loader (``plugins.py``, which
lists the built-ins) both depend on it instead of on each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd


@dataclass
class Plugin:
    name: str
    calculate_metrics: Callable[[pd.DataFrame, Any, pd.DataFrame], tuple[Any, Any]]
    display_metrics: Callable[[Any], Any]
    title: str = ""
    origin: str = "builtin"


__all__ = ["Plugin"]
