"""Data for the site's scripts, as files that set a global (browsers refuse fetch() from file://)."""

from __future__ import annotations

import json
from typing import Any


def js_value(data: Any) -> str:
    """JSON that is safe inside a script: "</" would end the script early if a user-supplied
    name contained "</script>"."""
    return json.dumps(data, ensure_ascii=False).replace("</", "<\\/")


def js_global(name: str, data: Any) -> str:
    return f"window.{name} = {js_value(data)};\n"
