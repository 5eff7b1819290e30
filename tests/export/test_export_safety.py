"""A failed re-export keeps the previous export; what it cannot undo at once the sweeper does.

Each test exports image "old" to a destination, then exports image "new" to the same one with
a fault injected at one step, and compares the destination byte for byte with what it held
before (or, on a store that cannot copy, checks that it is empty where the issue allows it).
The destination directory is listed at the end: no safety copies, no orphans, no incomplete
uploads, and no journal entry left.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from gateway.catalog import Image
from gateway.server.appkeys import JOURNAL, SWEEPER
from tests.support.export_env import ExportEnv
from tests.support.storage_targets import RETRIES

BEYOND_RETRIES = RETRIES + 1


@pytest.fixture
def export_database(database: dict[str, Any]) -> dict[str, Any]:
    """This suite runs on both database engines (the journal and accounts on each)."""
    return database


def blob(size: int, seed: int) -> bytes:
    return bytes((i * seed + seed) % 251 for i in range(size))


@dataclass
class Exported:
    """What a destination holds: the file's and the manifest's bytes (None: absent)."""

    file: bytes | None
    manifest: bytes | None


async def holding(env: ExportEnv) -> Exported:
    async def read(path: str) -> bytes | None:
        return await env.read(path) if await env.exists(path) else None

    return Exported(await read(env.path("img.zfs")), await read(env.path("img.imgmanifest")))


async def listing(env: ExportEnv) -> list[str]:
    names = [
        info.path.rsplit("/", 1)[1]
        async for info in await env.harness.target.list_directory(env.path())
    ]
    return sorted(names)


async def assert_clean(env: ExportEnv, expected: list[str]) -> None:
    """Only the export's own objects are left: no safety copy, no upload, no journal entry."""
    assert await listing(env) == expected
    assert await env.harness.leftovers() == []
    journal = env.app[JOURNAL]
    assert await journal.expired() == []
    key = f"export:{env.harness.target.public_url}{env.path('img.imgmanifest')}"
    assert await journal.holder(key) is None


@pytest.fixture
async def exported(env: ExportEnv) -> tuple[Image, Image, Exported]:
    """ "old" exported to ``img``, and "new" imported but not exported."""
    old = await env.image(blob(40_000, seed=7), name="old")
    new = await env.image(blob(50_000, seed=9), name="new")
    answer = await env.export(old.uuid, env.path("img"))
    assert answer.status == 200, answer.body
    before = await holding(env)
    assert before.file is not None and before.manifest is not None
    return old, new, before


def add_faults(env: ExportEnv, rules: list[dict[str, Any]]) -> None:
    for rule in rules:
        env.harness.faults.add(**rule)


FAILURES = {
    "file PUT refused": [dict(method="PUT", path=r"/img\.zfs$", status=503, times=BEYOND_RETRIES)],
    "connection cut mid-file": [dict(method="PUT", path=r"/img\.zfs$", cut_after=20_000, times=20)],
    "previous manifest DELETE refused": [
        dict(method="DELETE", path=r"/img\.imgmanifest$", status=503, times=BEYOND_RETRIES)
    ],
}


@pytest.mark.parametrize("step", FAILURES)
async def test_failure_before_the_new_file_keeps_the_previous_export(
    env: ExportEnv, exported: tuple[Image, Image, Exported], step: str
) -> None:
    _, new, before = exported
    add_faults(env, FAILURES[step])
    answer = await env.export(new.uuid, env.path("img"))
    assert answer.status == 503, answer.body
    assert answer.body["code"] == "StorageIsDown"
    assert await holding(env) == before
    await assert_clean(env, ["img.imgmanifest", "img.zfs"])


async def test_manifest_put_refused_restores_the_previous_export(
    env: ExportEnv, exported: tuple[Image, Image, Exported]
) -> None:
    """The new file is in place when its manifest is refused: the previous file comes back
    from the safety copy (a store that cannot copy ends empty, never half-written)."""
    _, new, before = exported
    env.harness.faults.add(
        method="PUT", path=r"/img\.imgmanifest$", status=400, code="InvalidArgument", times=1
    )
    answer = await env.export(new.uuid, env.path("img"))
    assert answer.status == 502, answer.body
    assert "error exporting image manifest" in answer.body["message"]
    if env.harness.can_copy:
        assert await holding(env) == before
        await assert_clean(env, ["img.imgmanifest", "img.zfs"])
    else:
        assert await holding(env) == Exported(None, None)
        await assert_clean(env, [])


async def test_refused_cleanup_is_finished_by_the_sweeper(
    env: ExportEnv, exported: tuple[Image, Image, Exported]
) -> None:
    """Manifest refused, and then the undo refused too: the client hears it, the journal
    keeps the entry, and the next sweep (storage healthy again) finishes the undo."""
    _, new, before = exported
    env.harness.faults.add(
        method="PUT", path=r"/img\.imgmanifest$", status=400, code="InvalidArgument", times=1
    )
    env.harness.faults.add(
        method="DELETE", path=r"(\.previous|/img\.zfs)$", status=503, times=BEYOND_RETRIES
    )
    answer = await env.export(new.uuid, env.path("img"))
    assert answer.status == 502, answer.body
    assert answer.body["message"].endswith("the gateway finishes undoing it once storage allows")
    assert len(await env.app[JOURNAL].expired()) == 1
    env.harness.faults.reset()
    assert await env.app[SWEEPER].sweep() == 1
    if env.harness.can_copy:
        assert await holding(env) == before
        await assert_clean(env, ["img.imgmanifest", "img.zfs"])
    else:
        assert await holding(env) == Exported(None, None)
        await assert_clean(env, [])


async def test_refused_safety_copy_fails_the_export_untouched(
    env: ExportEnv, exported: tuple[Image, Image, Exported]
) -> None:
    if not env.harness.can_copy:
        pytest.skip("the store cannot copy: no safety copy is made")
    _, new, before = exported
    env.harness.faults.add(method="PUT", path=r"\.previous$", status=503, times=BEYOND_RETRIES)
    env.harness.faults.add(method="POST", path=r"\.previous$", status=503, times=BEYOND_RETRIES)
    answer = await env.export(new.uuid, env.path("img"))
    assert answer.status == 503, answer.body
    assert "copy of the previous image file" in answer.body["message"]
    assert await holding(env) == before
    await assert_clean(env, ["img.imgmanifest", "img.zfs"])


async def test_refused_safety_copy_removal_after_success(
    env: ExportEnv, exported: tuple[Image, Image, Exported]
) -> None:
    """The export succeeded; only its safety copy could not be removed: the sweeper does it."""
    _, new, _ = exported
    env.harness.faults.add(method="DELETE", path=r"\.previous$", status=503, times=BEYOND_RETRIES)
    answer = await env.export(new.uuid, env.path("img"))
    assert answer.status == 200, answer.body
    env.harness.faults.reset()
    await env.app[SWEEPER].sweep()
    after = await holding(env)
    assert after.file == blob(50_000, seed=9)
    assert after.manifest is not None and json.loads(after.manifest) == new.manifest
    await assert_clean(env, ["img.imgmanifest", "img.zfs"])


async def test_first_export_that_fails_leaves_nothing(env: ExportEnv) -> None:
    image = await env.image(blob(30_000, seed=5))
    env.harness.faults.add(
        method="PUT", path=r"/img\.imgmanifest$", status=400, code="InvalidArgument", times=1
    )
    answer = await env.export(image.uuid, env.path("img"))
    assert answer.status == 502, answer.body
    assert await holding(env) == Exported(None, None)
    await assert_clean(env, [])


async def test_reexport_of_the_same_image_makes_no_safety_copy(
    env: ExportEnv, exported: tuple[Image, Image, Exported]
) -> None:
    """The same bytes are already there: nothing to keep, so no copy request at all."""
    old, _, before = exported
    rule = env.harness.faults.add(method="PUT", path=r"\.previous$", status=500, times=1)
    answer = await env.export(old.uuid, env.path("img"))
    assert answer.status == 200, answer.body
    assert rule.hits == 0
    assert await holding(env) == before
    await assert_clean(env, ["img.imgmanifest", "img.zfs"])


async def test_a_huge_object_at_the_manifest_path_is_refused_untouched(env: ExportEnv) -> None:
    """More than 1 MiB is no image manifest: the export will not replace (nor journal) it."""
    image = await env.image(blob(30_000, seed=5))
    huge = blob(1024 * 1024 + 1, seed=3)
    await env.put(env.path("img.imgmanifest"), huge)
    answer = await env.export(image.uuid, env.path("img"))
    assert answer.status == 422, answer.body
    assert answer.body["code"] == "InvalidParameter"
    assert "no image manifest" in answer.body["message"]
    assert await holding(env) == Exported(None, huge)
    await assert_clean(env, ["img.imgmanifest"])
