"""Names users type for models, versions and aliases, checked once with errors that say the fix."""

from __future__ import annotations

import re

from shipyard.errors import InvalidInput

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
ALIAS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
#: the largest version number (the metadata databases keep it in a 32-bit INTEGER column)
MAX_VERSION = 2**31 - 1
#: resolved by ``get_version``/``load`` to the newest live version; cannot be set as an alias
LATEST = "latest"


def check_model_name(name: object) -> str:
    if not isinstance(name, str) or not MODEL_NAME.match(name) or ".." in name:
        raise InvalidInput(
            f"model name {name!r} is not valid: use 1-128 letters, digits, '_', '-' or '.', starting "
            "with a letter or digit (e.g. 'credit_scorecard')",
            {"field": "name", "value": str(name)},
        )
    return name


def check_alias(alias: object) -> str:
    if not isinstance(alias, str) or not ALIAS_NAME.match(alias):
        raise InvalidInput(
            f"alias {alias!r} is not valid: use 1-64 letters, digits, '_' or '-', starting with a "
            "letter or '_' (e.g. 'champion'); an alias cannot look like a version number",
            {"field": "alias", "value": str(alias)},
        )
    if alias == LATEST:
        raise InvalidInput(
            f"alias {LATEST!r} is reserved: it always means the newest version; pick another name",
            {"field": "alias", "value": alias},
        )
    return alias


def check_version(version: object) -> int:
    """A version number (an int or its decimal text) of 1 or more."""
    if isinstance(version, bool):
        value = None
    elif isinstance(version, int):
        value = version
    elif isinstance(version, str) and version.strip().isdigit():
        value = int(version)
    else:
        value = None
    if value is None or value < 1 or value > MAX_VERSION:
        raise InvalidInput(
            f"version {version!r} is not valid: give a version number from 1 to {MAX_VERSION}, such as 3",
            {"field": "version", "value": str(version)},
        )
    return value


def parse_ref(ref: int | str) -> int | str:
    """A version number, an alias name or ``latest``."""
    if isinstance(ref, int) and not isinstance(ref, bool):
        return check_version(ref)
    if isinstance(ref, str):
        text = ref.strip()
        if text.isdigit():
            return check_version(text)
        if text.lower().startswith("v") and text[1:].isdigit():
            return check_version(text[1:])
        if text == LATEST:
            return LATEST
        if ALIAS_NAME.match(text):
            return text
    raise InvalidInput(
        f"{ref!r} is neither a version number nor an alias; give e.g. 3 or 'champion'",
        {"field": "version", "value": str(ref)},
    )


def subject(name: str, suffix: str = "") -> str:
    """Audit subject for a model (``models/<name>/``) or one of its versions/aliases."""
    return f"models/{name}/{suffix}"
