"""Fixtures for the image-action suites (CloneImage): the real gateway, three callers.

The gateway is ``tests.support.export_env.make_env`` on the fake Manta (memory backend), with its
plugins loaded from the installed entry points as in production. ``bob`` (the harness's login)
owns the images, ``alice`` is the account they are shared with, ``carol`` a stranger.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.export_env import ExportEnv, make_env
from tests.support.helpers import add_caller
from tests.support.storage_targets import open_target


@pytest.fixture
async def env(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[ExportEnv]:
    """The gateway with callers bob, alice and carol (``env.signers[login]``)."""
    async with open_target("manta-memory", tmp_path / "target") as harness:
        gateway = await make_env(aiohttp_client, harness, tmp_path / "gateway")
        _, gateway.signers["carol"] = await add_caller(gateway.app, "carol")
        yield gateway
