"""Small JSON bodies (MPU create/commit, the admin surface): every bad input is a ValueError.

``json.loads`` raises RecursionError, not ValueError, on deeply nested input (``[[[[...``); left
alone that became a 500. Callers catch ValueError alone and answer 400.
"""

from __future__ import annotations

import json
from typing import Any


def loads(data: bytes | bytearray | str) -> Any:
    """Parse ``data``; malformed, non-UTF-8 or too deeply nested JSON raises ValueError."""
    try:
        return json.loads(data)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc
