"""A standalone fake Manta (Triton object store) that node-manta and the Python SDK work against.

Depends only on aiohttp, cryptography, python-json-logger and the standard library; never
imports gateway or plugins.

    from fake_manta import FakeMantaServer
    async with FakeMantaServer(port=0, no_auth=True) as server:
        server.url
"""

from fake_manta.accounts import AccountRegistry
from fake_manta.app import create_app
from fake_manta.config import FakeMantaConfig
from fake_manta.models import DiskBackend, MemoryBackend
from fake_manta.server import FakeMantaServer, ThreadedFakeManta

__all__ = [
    "AccountRegistry",
    "DiskBackend",
    "FakeMantaConfig",
    "FakeMantaServer",
    "MemoryBackend",
    "ThreadedFakeManta",
    "create_app",
]
