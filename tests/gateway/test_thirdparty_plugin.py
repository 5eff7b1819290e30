"""A separately installed distribution (tests/thirdparty_plugin) extends the gateway over HTTP.

tox installs it; locally: ``python -m pip install --no-deps -e ./tests/thirdparty_plugin``.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from importlib.metadata import entry_points
from typing import Any

import pytest

from gateway import PROJECT_NAME
from gateway.server.app import create_app
from gateway.server.appkeys import ACTIONS
from gateway.settings import Settings
from tests.support.helpers import import_image

pytestmark = pytest.mark.skipif(
    not any(ep.name == "checksum" for ep in entry_points(group=PROJECT_NAME)),
    reason="tests/thirdparty_plugin is not installed (tox installs it)",
)

DATA = b"third-party plugin test image\n" * 100


@pytest.fixture
async def owner(client: Any, caller_factory: Any) -> Any:
    caller = await caller_factory(client, "carol")
    caller.image = await import_image(client.server.app, caller.account, DATA)
    return caller


async def test_entry_point_action_is_dispatched(owner: Any) -> None:
    resp = await owner.request("POST", f"/my/images/{owner.image.uuid}?action=checksum")
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {
        "id": owner.image.uuid,
        "algorithm": "sha1",
        "checksum": hashlib.sha1(DATA).hexdigest(),
        "matches_manifest": True,
    }


async def test_its_schema_is_enforced(owner: Any) -> None:
    resp = await owner.request(
        "POST", f"/my/images/{owner.image.uuid}", json={"action": "checksum", "algorithm": "crc"}
    )
    assert resp.status == 409
    assert await resp.json() == {
        "code": "InvalidArgument",
        "message": "algorithm must be one of sha1, sha256, md5",
    }


async def test_body_parameters_work_too(owner: Any) -> None:
    resp = await owner.request(
        "POST",
        f"/my/images/{owner.image.uuid}",
        json={"action": "checksum", "algorithm": "sha256"},
    )
    assert (await resp.json())["checksum"] == hashlib.sha256(DATA).hexdigest()


def test_not_loaded_without_entry_points(settings: Settings) -> None:
    assert "checksum" not in create_app(replace(settings, load_entrypoints=False))[ACTIONS]


def test_can_be_disabled(settings: Settings) -> None:
    assert "checksum" not in create_app(replace(settings, disabled_plugins=("checksum",)))[ACTIONS]
