"""Every import path docs/plugins.md published before the layout split still works, with a warning.

One test per old path: the name resolves to the very object at its new home, and the warning
names the new path. Names the old module never had still raise AttributeError.
"""

from __future__ import annotations

import importlib
import warnings

import pytest

#: (old module, a name it published, its new module)
MOVED = [
    ("gateway.app", "create_app", "gateway.server.app"),
    ("gateway.plugins", "build_plugin_manager", "gateway.server.plugin_manager"),
    ("gateway.plugin_support", "SectionReader", "gateway.plugin_kit"),
    ("gateway.plugin_support", "backoff_delay", "gateway.plugin_kit"),
    ("gateway.images", "to_cloudapi_image", "gateway.server.image_view"),
    ("gateway.images", "is_visible", "gateway.server.image_view"),
]


@pytest.mark.parametrize(("old", "name", "new"), MOVED)
def test_old_path_forwards_with_a_deprecation_warning(old: str, name: str, new: str) -> None:
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning) as record:
        value = getattr(module, name)
    assert value is getattr(importlib.import_module(new), name)
    message = str(record[0].message)
    assert f"{old}.{name}" in message and new in message
    assert record[0].filename == __file__  # the warning points at the caller


@pytest.mark.parametrize("old", sorted({old for old, _, _ in MOVED}))
def test_old_path_has_no_names_of_its_own(old: str) -> None:
    module = importlib.import_module(old)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError):
            module.no_such_name  # noqa: B018


def test_from_import_of_an_old_path_warns() -> None:
    with pytest.warns(DeprecationWarning, match="gateway.server.app"):
        from gateway.app import create_app
    from gateway.server.app import create_app as new

    assert create_app is new
