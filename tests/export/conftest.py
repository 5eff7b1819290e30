"""Fixtures for the ExportImage suite (see ``export_env`` for what a test gets)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.export_env import ExportEnv, make_env
from tests.support.storage_targets import TARGET_NAMES, open_target


@pytest.fixture
def catalog_kind() -> str:
    """The catalog the gateway keeps images in; a module overrides it to run on several
    (``test_export_http`` runs on every one of ``CATALOG_KINDS``)."""
    return "embedded"


@pytest.fixture
def export_database() -> dict[str, Any]:
    """The gateway's ``[database]``: SQLite; a module overrides it with the parametrized
    ``database`` fixture to run on both engines (``test_export_http``, ``test_export_safety``)."""
    return {}


@pytest.fixture(params=TARGET_NAMES)
async def env(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    aiohttp_client: Any,
    catalog_kind: str,
    export_database: dict[str, Any],
) -> AsyncIterator[ExportEnv]:
    """The gateway on each storage target in turn."""
    moto = request.getfixturevalue("moto_s3") if request.param == "s3" else None
    async with open_target(request.param, tmp_path / "target", moto) as harness:
        if catalog_kind == "objectstore":
            await harness.target.mkdir("/operator/stor")
        yield await make_env(
            aiohttp_client,
            harness,
            tmp_path / "gateway",
            catalog_kind=catalog_kind,
            database=export_database,
        )


@pytest.fixture
async def manta_env(
    tmp_path: Path, aiohttp_client: Any, export_database: dict[str, Any]
) -> AsyncIterator[ExportEnv]:
    """The gateway on the fake Manta (memory backend) only: Manta's directory semantics."""
    async with open_target("manta-memory", tmp_path / "target") as harness:
        yield await make_env(
            aiohttp_client, harness, tmp_path / "gateway", database=export_database
        )
