"""Data for the site's scripts, as files that set a global (browsers refuse fetch() from file://)."""

from __future__ import annotations

import json
from typing import Any


def js_global(name: str, data: Any) -> str:
    # "</" inside a script would end it early if a user-supplied name contained "</script>".
    payload = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    return f"window.{name} = {payload};\n"
