"""Every message the app shows has its Simplified Chinese translation, with the same placeholders."""

from __future__ import annotations

import json
import re

from shipyard.ui.assets import STATIC_DIR

MESSAGE = re.compile(r"\bt\(\s*'((?:[^'\\]|\\.)*)'")
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _messages() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted((STATIC_DIR / "js").rglob("*.js")):
        if "locales" in path.parts:
            continue
        for match in MESSAGE.finditer(path.read_text()):
            found.setdefault(match.group(1).replace("\\'", "'"), path.name)
    return found


def _table() -> dict[str, str]:
    text = (STATIC_DIR / "js" / "locales" / "zh.js").read_text()
    body = text[text.index("export default") + len("export default"):].strip().rstrip(";")
    return json.loads(body)


def test_every_message_is_translated():
    table = _table()
    missing = sorted(m for m in _messages() if m not in table)
    assert missing == []
    assert len(_messages()) > 300


def test_translations_keep_the_placeholders():
    table = _table()
    for message in _messages():
        assert set(PLACEHOLDER.findall(table[message])) == set(PLACEHOLDER.findall(message)), message
        assert table[message].strip(), message
