"""A standalone fake Manta (Triton object store) that node-manta and the Python SDK work against.

Depends only on aiohttp, cryptography, python-json-logger and the standard library; never
imports gateway or plugins.

    from fake_manta import FakeMantaServer
    async with FakeMantaServer(port=0, no_auth=True) as server:
        server.url

The names below are imported on first use (PEP 562), so importing the package, as pytest does
for the ``fake_manta`` plugin in every session, costs nothing until a fixture needs a server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fake_manta.accounts import AccountRegistry
    from fake_manta.admin import ADMIN_HEADERS
    from fake_manta.app import create_app
    from fake_manta.config import FakeMantaConfig
    from fake_manta.models import DiskBackend, MemoryBackend
    from fake_manta.server import FakeMantaServer, ThreadedFakeManta

#: Public name -> the module that defines it.
_EXPORTS = {
    "ADMIN_HEADERS": "fake_manta.admin",
    "AccountRegistry": "fake_manta.accounts",
    "DiskBackend": "fake_manta.models",
    "FakeMantaConfig": "fake_manta.config",
    "FakeMantaServer": "fake_manta.server",
    "MemoryBackend": "fake_manta.models",
    "ThreadedFakeManta": "fake_manta.server",
    "create_app": "fake_manta.app",
}

__all__ = [
    "ADMIN_HEADERS",
    "AccountRegistry",
    "DiskBackend",
    "FakeMantaConfig",
    "FakeMantaServer",
    "MemoryBackend",
    "ThreadedFakeManta",
    "create_app",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fake_manta' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
