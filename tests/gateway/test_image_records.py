"""``ImageRecords`` (the table the host lends to catalog plugins) on each database engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from gateway.catalog import (
    ImageAlreadyExists,
    ImageFile,
    ImageNotFound,
    ImageRecord,
    ImageRecords,
)
from gateway.server.database import Databases
from gateway.server.image_records import (
    DatabaseImageRecords,
    PostgresImageRecords,
    SQLiteImageRecords,
    image_records_for,
)
from gateway.settings import Settings

FILE = ImageFile(sha1="a" * 40, size=3, compression="none", content_md5="rL0Y20zC+Fzt72VPzMSk2A==")


def record(uuid: str, *locations: str, **manifest: Any) -> ImageRecord:
    return ImageRecord({"uuid": uuid, **manifest}, (FILE,), tuple(locations))


@pytest.fixture
async def records(tmp_path: Path, database: dict[str, Any]) -> AsyncIterator[DatabaseImageRecords]:
    databases = await Databases.open(Settings(data_dir=tmp_path, database=database), ("records",))
    yield DatabaseImageRecords(databases["records"])
    await databases.close()


async def test_it_is_the_contract(records: DatabaseImageRecords) -> None:
    assert isinstance(records, ImageRecords)


async def test_insert_get_list_oldest_first(records: DatabaseImageRecords) -> None:
    for name in ("c", "a", "b"):
        await records.insert_record(record(name, f"/files/{name}", name=name))
    assert [r.uuid for r in await records.list_records()] == ["c", "a", "b"]
    got = await records.get_record("a")
    assert got == record("a", "/files/a", name="a")
    assert await records.get_record("nope") is None
    with pytest.raises(ImageAlreadyExists):
        await records.insert_record(record("a", "/elsewhere"))
    assert await records.used_locations() == {"/files/a", "/files/b", "/files/c"}


async def test_clone_shares_locations_and_delete_frees_only_unused_ones(
    records: DatabaseImageRecords,
) -> None:
    await records.insert_record(record("src", "/shared", "/own"))
    with pytest.raises(ImageNotFound):
        await records.clone_record("gone", record("clone", "/shared"))
    await records.clone_record("src", record("clone", "/shared"))
    deleted = await records.delete_record("src")
    assert deleted is not None
    assert deleted[0].uuid == "src" and deleted[1] == {"/own"}  # "/shared" is still used
    assert await records.delete_record("src") is None
    assert await records.delete_record("clone") == (record("clone", "/shared"), {"/shared"})
    assert await records.used_locations() == frozenset()


async def test_change_manifest_is_atomic(records: DatabaseImageRecords) -> None:
    await records.insert_record(record("img", "/f", name="base"))

    def refuse(_: Mapping[str, Any]) -> Mapping[str, Any]:
        raise ValueError("bad change")

    with pytest.raises(ValueError, match="bad change"):
        await records.change_manifest("img", refuse)
    assert (await records.get_record("img")).manifest["name"] == "base"  # type: ignore[union-attr]
    assert await records.change_manifest("nope", dict) is None

    def setter(field: str) -> Any:
        def change(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
            return {**manifest, field: True}

        return change

    # Concurrent read-modify-writes never lose each other's fields.
    await asyncio.gather(*(records.change_manifest("img", setter(f"f{i}")) for i in range(8)))
    manifest = (await records.get_record("img")).manifest  # type: ignore[union-attr]
    assert all(manifest[f"f{i}"] for i in range(8)) and manifest["name"] == "base"


async def test_the_hosts_choice_follows_the_settings(
    tmp_path: Path, database: dict[str, Any]
) -> None:
    chosen = image_records_for(Settings(data_dir=tmp_path, database=database))
    assert isinstance(chosen, PostgresImageRecords if database else SQLiteImageRecords)
    chosen.open()
    try:
        await chosen.insert_record(record("one", "/f"))
        assert [r.uuid for r in await chosen.list_records()] == ["one"]
    finally:
        chosen.close()
    if not database:
        assert (tmp_path / "records.sqlite").is_file()
