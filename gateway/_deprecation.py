"""Forwarding for import paths that moved: the old name still works, with a DeprecationWarning."""

from __future__ import annotations

import warnings
from types import ModuleType
from typing import Any


def forward(old_module: str, new_module: ModuleType, name: str) -> Any:
    """``getattr(new_module, name)``, warning that ``old_module.name`` is deprecated.

    Called from an old module's ``__getattr__`` (PEP 562), so the warning fires on each use of
    an old name and never for names the old module does not forward.
    """
    if name.startswith("__") or not hasattr(new_module, name):
        raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
    warnings.warn(
        f"{old_module}.{name} is deprecated and will be removed in cloudapi-gateway 0.3; "
        f"import it from {new_module.__name__}",
        DeprecationWarning,
        stacklevel=3,
    )
    return getattr(new_module, name)
