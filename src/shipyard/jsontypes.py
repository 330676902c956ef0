"""The JSON value types, named once for every module that passes JSON along.

``JSON`` is what ``json.loads`` returns (and what ``json.dumps`` takes without a ``default``);
``JSONObject`` is a decoded JSON object. This module sits at the bottom: it imports nothing.
"""

from __future__ import annotations

from typing import Any, TypeAlias

JSON: TypeAlias = "dict[str, JSON] | list[JSON] | str | int | float | bool | None"
# a decoded object's values are read by key without narrowing each one, as callers of an API expect
JSONObject: TypeAlias = dict[str, Any]
