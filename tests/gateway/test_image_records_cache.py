"""The image records' in-memory cache: served from memory, and every write seen in time.

Two ``image_records_for`` instances on one database stand for two gateways (or a gateway and
the CLI): what one writes, the other must see, within a millisecond on SQLite and within the
refresh interval on PostgreSQL; what an instance writes itself, it sees at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from gateway.catalog import ImageFile, ImageRecord
from gateway.server.change_watch import RECHECK_AFTER
from gateway.server.image_records import (
    PostgresImageRecords,
    SQLiteImageRecords,
    image_records_for,
)
from gateway.settings import Settings

FILE = ImageFile(sha1="a" * 40, size=3, compression="none", content_md5="rL0Y20zC+Fzt72VPzMSk2A==")
REFRESH = 0.2
#: Generous: a loaded machine may delay the poller well past its interval.
DEADLINE = 10.0

Records = SQLiteImageRecords | PostgresImageRecords


def record(uuid: str, **manifest: Any) -> ImageRecord:
    return ImageRecord({"uuid": uuid, **manifest}, (FILE,), (f"/files/{uuid}",))


def renamed(name: str) -> Callable[[Mapping[str, Any]], Mapping[str, Any]]:
    return lambda manifest: {**manifest, "name": name}


async def eventually(check: Callable[[], Awaitable[bool]], engine: str) -> None:
    """SQLite sees another writer's commit within ``RECHECK_AFTER`` (it looks at the file's
    ``data_version`` once a millisecond at most); PostgreSQL within the refresh interval."""
    if engine == "sqlite":
        await asyncio.sleep(2 * RECHECK_AFTER)
        assert await check()
        return
    deadline = time.monotonic() + DEADLINE
    while not await check():
        assert time.monotonic() < deadline, "the change was never seen"
        await asyncio.sleep(REFRESH / 4)


@pytest.fixture
async def pair(tmp_path: Path, database: dict[str, Any]) -> AsyncIterator[tuple[Records, Records]]:
    settings = Settings(data_dir=tmp_path, database={**database, "refresh_interval": REFRESH})
    first, second = image_records_for(settings), image_records_for(settings)
    first.open()
    second.open()
    yield first, second
    first.close()
    second.close()


def engine_of(records: Records) -> str:
    return "sqlite" if isinstance(records, SQLiteImageRecords) else "postgresql"


async def test_repeated_reads_are_served_from_memory(pair: tuple[Records, Records]) -> None:
    here, _ = pair
    await here.insert_record(record("img", name="v1"))
    if engine_of(here) == "postgresql":
        await asyncio.sleep(3 * REFRESH)  # until the poller has seen the insert's counter bump
    assert (await here.get_record("img")) == record("img", name="v1")
    assert here.cache is not None
    hits = here.cache.hits
    for _ in range(3):
        assert (await here.get_record("img")) == record("img", name="v1")
        assert [r.uuid for r in await here.list_records()] == ["img"]
    assert here.cache.hits >= hits + 5  # the first list_records fills, the rest hit


async def test_own_writes_are_seen_at_once(pair: tuple[Records, Records]) -> None:
    here, _ = pair
    assert await here.get_record("img") is None  # cached as absent
    await here.insert_record(record("img", name="v1"))
    assert (await here.get_record("img")) == record("img", name="v1")
    assert [r.uuid for r in await here.list_records()] == ["img"]
    await here.change_manifest("img", renamed("v2"))
    assert (await here.get_record("img")).manifest["name"] == "v2"  # type: ignore[union-attr]
    await here.clone_record("img", record("copy", name="c"))
    assert [r.uuid for r in await here.list_records()] == ["img", "copy"]
    await here.delete_record("img")
    assert await here.get_record("img") is None
    assert [r.uuid for r in await here.list_records()] == ["copy"]


async def test_another_instances_writes_are_seen(pair: tuple[Records, Records]) -> None:
    here, there = pair
    engine = engine_of(here)
    await there.insert_record(record("img", name="v1"))
    assert (await here.get_record("img")) == record("img", name="v1")
    assert [r.uuid for r in await here.list_records()] == ["img"]
    assert await here.get_record("new") is None

    await there.change_manifest("img", renamed("v2"))

    async def renamed_seen() -> bool:
        got = await here.get_record("img")
        return got is not None and got.manifest["name"] == "v2"

    await eventually(renamed_seen, engine)

    await there.insert_record(record("new", name="n"))

    async def inserted_seen() -> bool:
        listed = [r.uuid for r in await here.list_records()]
        return listed == ["img", "new"] and await here.get_record("new") is not None

    await eventually(inserted_seen, engine)

    await there.delete_record("img")

    async def deleted_seen() -> bool:
        return await here.get_record("img") is None and [
            r.uuid for r in await here.list_records()
        ] == ["new"]

    await eventually(deleted_seen, engine)


async def test_a_read_overlapping_a_write_is_not_kept(pair: tuple[Records, Records]) -> None:
    """Reads racing this instance's writes: whatever they return, the next read is fresh."""
    here, _ = pair
    await here.insert_record(record("img", name="v0"))
    for n in range(1, 6):
        await asyncio.gather(
            here.change_manifest("img", renamed(f"v{n}")),
            *(here.get_record("img") for _ in range(4)),
            here.list_records(),
        )
        assert (await here.get_record("img")).manifest["name"] == f"v{n}"  # type: ignore[union-attr]
        assert [r.manifest["name"] for r in await here.list_records()] == [f"v{n}"]


async def test_without_a_refresh_interval_every_read_asks_the_database(
    tmp_path: Path, database: dict[str, Any]
) -> None:
    if not database:
        pytest.skip("refresh_interval = 0 only turns the PostgreSQL poller off")
    settings = Settings(data_dir=tmp_path, database={**database, "refresh_interval": 0})
    here, there = image_records_for(settings), image_records_for(settings)
    here.open()
    there.open()
    try:
        await here.insert_record(record("img", name="v1"))
        assert (await here.get_record("img")) == record("img", name="v1")
        assert here.cache is None
        await there.change_manifest("img", renamed("v2"))
        assert (await here.get_record("img")).manifest["name"] == "v2"  # type: ignore[union-attr]
    finally:
        here.close()
        there.close()
