"""Choosing a data source's implementation by kind: above the implementations, which import only
the shared interface and helpers of ``sources.py`` (so neither side imports the other)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shipyard.data.sources import KINDS, DataSource, Masker, resolve_secrets
from shipyard.errors import InvalidInput
from shipyard.secrets import SecretStore


def validate_spec(kind: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Check a source spec without opening it; returns the normalised spec."""
    if kind not in KINDS:
        raise InvalidInput(f"source kind {kind!r} is not known; use one of {list(KINDS)}", {"field": "kind"})
    if not isinstance(spec, Mapping):
        raise InvalidInput("spec must be a mapping", {"field": "spec"})
    if kind == "file":
        from shipyard.data.file_source import validate

        return validate(spec)
    if kind == "sql":
        from shipyard.data.sql_source import validate

        return validate(spec)
    from shipyard.data.spark_source import validate

    return validate(spec)


def open_source(kind: str, spec: Mapping[str, Any], secrets: SecretStore | None) -> DataSource:
    mask = Masker()
    values = resolve_secrets(spec, secrets, mask)
    if kind == "file":
        from shipyard.data.file_source import FileDataSource

        return FileDataSource(spec, values, mask)
    if kind == "sql":
        from shipyard.data.sql_source import SqlDataSource

        return SqlDataSource(spec, values, mask)
    from shipyard.data.spark_source import SparkDataSource

    return SparkDataSource(spec, values, mask)
