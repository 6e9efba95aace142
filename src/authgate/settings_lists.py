"""Lists in one environment variable: ``a,b`` as well as a JSON list (``["a","b"]``).

Kept apart from ``authgate.settings`` so that the services' own settings models (which
``settings`` imports) can use it too.
"""

from __future__ import annotations

import json
from typing import Any


def comma_separated(value: Any) -> Any:
    """``value`` as a list when it is text; anything else as it is (for pydantic)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value
