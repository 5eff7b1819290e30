"""Fixtures for the ExportImage suite (see ``export_env`` for what a test gets)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.export_env import ExportEnv, make_env
from tests.support.storage_targets import TARGET_NAMES, open_target


@pytest.fixture(params=TARGET_NAMES)
async def env(
    request: pytest.FixtureRequest, tmp_path: Path, aiohttp_client: Any
) -> AsyncIterator[ExportEnv]:
    """The gateway on each storage target in turn."""
    moto = request.getfixturevalue("moto_s3") if request.param == "s3" else None
    async with open_target(request.param, tmp_path / "target", moto) as harness:
        yield await make_env(aiohttp_client, harness, tmp_path / "gateway")


@pytest.fixture
async def manta_env(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[ExportEnv]:
    """The gateway on the fake Manta (memory backend) only: Manta's directory semantics."""
    async with open_target("manta-memory", tmp_path / "target") as harness:
        yield await make_env(aiohttp_client, harness, tmp_path / "gateway")
