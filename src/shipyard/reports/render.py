"""Report model and rendering: sections of blocks → self-contained HTML and its JSON twin.

A report is a title, optional metadata and a list of :class:`Section`; a section holds blocks:
:class:`Text`, :class:`Metrics` (key → value), :class:`Table` (columns + rows) and :class:`Chart`
(an SVG string plus, optionally, the numbers behind it). :func:`render_report` turns them into one
HTML page with inline CSS (Jinja2 template shipped as package data); :func:`report_dict` gives the
JSON twin with exactly the same numbers (charts contribute their ``data``, not their SVG).
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, overload

import numpy as np
import orjson
import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from shipyard.jsontypes import JSON

__all__ = [
    "Chart",
    "Metrics",
    "Section",
    "Table",
    "Text",
    "dumps_json",
    "render_report",
    "report_dict",
    "to_jsonable",
]


@overload
def to_jsonable(obj: Mapping[Any, Any]) -> dict[str, JSON]: ...
@overload
def to_jsonable(obj: object) -> JSON: ...
def to_jsonable(obj: object) -> JSON:
    """Convert NumPy/pandas scalars and containers to plain JSON types; NaN/inf become ``None``."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, pd.DataFrame):
        return [to_jsonable(r) for r in obj.to_dict(orient="records")]
    if isinstance(obj, pd.Series | np.ndarray | list | tuple):
        return [to_jsonable(v) for v in (obj.tolist() if hasattr(obj, "tolist") else obj)]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        f = float(obj)
        return f if math.isfinite(f) else None
    if obj is None or isinstance(obj, str):
        return obj
    if obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, _dt.datetime | _dt.date | pd.Timestamp):
        return obj.isoformat()
    if hasattr(obj, "to_dict"):
        return to_jsonable(obj.to_dict())
    return str(obj)


def dumps_json(obj: Any, indent: bool = True) -> str:
    """Serialise ``obj`` (after :func:`to_jsonable`) to a JSON string."""
    opt = orjson.OPT_INDENT_2 if indent else 0
    return orjson.dumps(to_jsonable(obj), option=opt).decode()


def format_value(v: Any) -> str:
    """Display format used in HTML tables: ints with separators, floats with 4 significant digits."""
    if v is None or (isinstance(v, float | np.floating) and math.isnan(v)):
        return "—"
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return f"{int(v):,}"
    if isinstance(v, float | np.floating):
        f = float(v)
        if math.isinf(f):
            return "∞" if f > 0 else "−∞"
        if f != 0 and (abs(f) >= 1e7 or abs(f) < 1e-4):
            return f"{f:.4g}"
        if f == int(f) and abs(f) < 1e7:
            return f"{int(f):,}"
        return f"{f:,.4g}" if abs(f) >= 1000 else f"{f:.4g}"
    return str(v)


@dataclass
class Text:
    """A paragraph of plain text (escaped in HTML)."""

    text: str
    kind = "text"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "text", "text": self.text}


@dataclass
class Metrics:
    """Headline numbers shown as tiles."""

    values: Mapping[str, Any]
    title: str = ""
    kind = "metrics"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "metrics", "title": self.title, "values": to_jsonable(dict(self.values))}


@dataclass
class Table:
    """A table; build it from a DataFrame with :meth:`from_frame` or from columns and rows."""

    columns: list[str]
    rows: list[list[Any]]
    title: str = ""
    name: str = ""
    kind = "table"

    @classmethod
    def from_frame(cls, df: pd.DataFrame, title: str = "", name: str = "") -> Table:
        return cls([str(c) for c in df.columns], df.to_numpy(dtype=object).tolist(), title, name)

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]], title: str = "", name: str = "") -> Table:
        cols: list[str] = []
        for r in records:
            cols.extend(k for k in r if k not in cols)
        return cls(cols, [[r.get(c) for c in cols] for r in records], title, name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "table",
            "title": self.title,
            "name": self.name,
            "rows": [to_jsonable(dict(zip(self.columns, r, strict=True))) for r in self.rows],
        }

    def formatted_rows(self) -> list[list[str]]:
        return [[format_value(v) for v in r] for r in self.rows]


@dataclass
class Chart:
    """An SVG chart and (optionally) the numbers behind it for the JSON twin."""

    svg: str
    title: str = ""
    data: Any = None
    kind = "chart"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "chart", "title": self.title, "data": to_jsonable(self.data)}

    def markup(self) -> Markup:
        return Markup(self.svg)


Block = Text | Metrics | Table | Chart


@dataclass
class Section:
    """A titled group of blocks, optionally with nested sections (rendered one level deeper)."""

    title: str
    blocks: list[Block] = field(default_factory=list)
    subsections: list[Section] = field(default_factory=list)
    anchor: str = ""
    collapsed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "blocks": [b.to_dict() for b in self.blocks],
            "subsections": [s.to_dict() for s in self.subsections],
        }


@lru_cache(maxsize=1)
def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("shipyard.reports", "templates"),
        autoescape=select_autoescape(["html", "j2"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = format_value
    return env


def _anchors(sections: Sequence[Section], prefix: str = "s") -> None:
    for i, s in enumerate(sections):
        if not s.anchor:
            s.anchor = f"{prefix}{i}"
        _anchors(s.subsections, f"{s.anchor}-")


def render_report(
    title: str,
    sections: Sequence[Section],
    *,
    subtitle: str = "",
    meta: Mapping[str, Any] | None = None,
    template: str = "report.html.j2",
) -> str:
    """Render a self-contained HTML page (inline CSS and SVG; no scripts or external links)."""
    _anchors(sections)
    generated = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return _env().get_template(template).render(
        title=title,
        subtitle=subtitle,
        meta={k: format_value(v) for k, v in (meta or {}).items()},
        sections=list(sections),
        generated=generated,
    )


def report_dict(
    title: str, sections: Sequence[Section], *, meta: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON twin of :func:`render_report`: same sections, same numbers, no markup."""
    return {
        "title": title,
        "meta": to_jsonable(dict(meta or {})),
        "sections": [s.to_dict() for s in sections],
    }
