"""JSON as a Node.js service writes it, and a plugin's own JSON files.

Triton's services are JavaScript: their JSON has no ``1.0`` (an integral number prints as
``1``) and keeps non-ASCII characters as they are. Actions that must produce the same bytes
(the exported manifest, IMGAPI's error messages) share these instead of each writing its own.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from importlib import resources
from typing import Any


def as_javascript(value: Any) -> Any:
    """``value`` with integral floats as ints, so ``json.dumps`` prints what JavaScript does."""
    if isinstance(value, Mapping):
        return {str(k): as_javascript(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_javascript(v) for v in value]
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def load_json_file(package: str | None, name: str) -> dict[str, Any]:
    """A JSON object shipped as package data beside a plugin's module (its action schema)."""
    if package is None:
        raise ValueError(f"{name}: not loaded from a package")
    text = resources.files(package).joinpath(name).read_text(encoding="utf-8")
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{package}/{name} is not a JSON object")
    return data
