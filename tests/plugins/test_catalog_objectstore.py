"""The object-store catalog on every storage target: imports that leave nothing behind when
they fail, files shared by clones, verify and the orphan sweep.

Each test builds the catalog the way the host does (``build_catalog`` with a ``[catalog]``
section), on a real store: the fake Manta (memory, disk, v2) or moto's S3.
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.catalog import (
    CatalogError,
    ImageAlreadyExists,
    ImageFileMismatch,
    ImageNotFound,
    ImageRecord,
    InvalidManifest,
    StoredFileCatalog,
)
from gateway.server.catalog_host import CatalogAssembly, build_catalog
from gateway.server.plugin_manager import ConfigurationError, Hooks, build_plugin_manager
from gateway.settings import Settings
from gateway.storage import StorageError
from plugins.catalog.objectstore import ObjectStoreCatalog
from tests.support.helpers import _chunks, make_manifest
from tests.support.storage_targets import (
    OPERATOR,
    TargetHarness,
    storage_harness,  # noqa: F401 - fixture
)

PREFIX = f"/{OPERATOR}/stor/imgapi"
OWNER = "930896af-bf8c-48d4-885c-6573a94b1853"


def blob(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def assemble(harness: TargetHarness, data_dir: Path, **section: Any) -> CatalogAssembly:
    settings = Settings(
        data_dir=data_dir,
        storage=harness.storage,
        catalog={"kind": "objectstore", "prefix": PREFIX, **section},
    )
    provided = Hooks(build_plugin_manager(settings)).provided()
    return build_catalog(
        settings, provided.image_catalogs, provided.storage_targets, export_target=harness.target
    )


@pytest.fixture
async def catalog(
    storage_harness: TargetHarness,  # noqa: F811 - fixture use
    tmp_path: Path,
) -> AsyncIterator[ObjectStoreCatalog]:
    assembly = assemble(storage_harness, tmp_path / "gateway")
    await storage_harness.target.mkdir(f"/{OPERATOR}/stor")
    async with assembly.opened() as opened:
        assert isinstance(opened, ObjectStoreCatalog)
        yield opened


async def stored_objects(catalog: ObjectStoreCatalog) -> list[str]:
    """Every object under the catalog's prefix, one level of uuid directories deep."""
    found: list[str] = []
    if await catalog.storage.stat(PREFIX) is None:
        return found
    for directory in [i async for i in await catalog.storage.list_directory(PREFIX)]:
        if directory.is_directory:
            found += [i.path async for i in await catalog.storage.list_directory(directory.path)]
        else:
            found.append(directory.path)
    return found


async def read(catalog: ObjectStoreCatalog, path: str) -> bytes:
    return b"".join([chunk async for chunk in await catalog.storage.get_object(path)])


async def test_an_import_stores_the_file_under_the_prefix_with_its_md5(
    catalog: ObjectStoreCatalog, tmp_path: Path
) -> None:
    data = blob(300_000)
    image = await catalog.import_image(make_manifest(OWNER, data), _chunks(data))
    assert image.files[0].content_md5 == md5_b64(data)
    assert isinstance(catalog, StoredFileCatalog)
    stored = await catalog.locate_file(image.uuid)
    assert stored.path.startswith(f"{PREFIX}/{image.uuid}/file0.")
    info = await catalog.storage.stat(stored.path)
    assert info is not None and info.size == len(data)
    assert info.content_md5 in (None, md5_b64(data))
    assert await read(catalog, stored.path) == data
    assert b"".join([c async for c in catalog.open_file(image.uuid)]) == data
    assert [i.uuid for i in await catalog.list_images()] == [image.uuid]
    assert (await catalog.get_image(image.uuid)) == image
    assert not list((tmp_path / "gateway" / "spool").iterdir())  # the spool file is gone


async def test_a_wrong_sha1_or_size_stores_nothing(
    catalog: ObjectStoreCatalog, tmp_path: Path
) -> None:
    data = blob(100_000)
    bad_sha1 = make_manifest(OWNER, data)
    bad_sha1["files"][0]["sha1"] = "0" * 40
    with pytest.raises(ImageFileMismatch, match="sha1"):
        await catalog.import_image(bad_sha1, _chunks(data))
    too_long = make_manifest(OWNER, data[:-1])
    with pytest.raises(ImageFileMismatch, match="larger"):
        await catalog.import_image(too_long, _chunks(data))
    with pytest.raises(InvalidManifest):
        await catalog.import_image({"uuid": "nope"}, _chunks(data))
    assert await catalog.list_images() == []
    assert await stored_objects(catalog) == []
    assert not list((tmp_path / "gateway" / "spool").iterdir())


async def test_a_failed_upload_leaves_no_record_and_no_object(
    catalog: ObjectStoreCatalog, storage_harness: TargetHarness  # noqa: F811 - fixture use
) -> None:
    data = blob(64_000)
    manifest = make_manifest(OWNER, data)
    storage_harness.faults.add(method="PUT", path=f".*/{manifest['uuid']}/file0.*", status=500,
                               times=10)
    with pytest.raises(StorageError):
        await catalog.import_image(manifest, _chunks(data))
    assert await catalog.get_image(manifest["uuid"]) is None
    assert await stored_objects(catalog) == []


async def test_a_record_refused_at_the_end_removes_the_uploaded_file(
    catalog: ObjectStoreCatalog,
) -> None:
    """Another process records the same uuid while this import uploads: the import loses,
    deletes only its own upload, and the winner's file stays."""
    data, theirs = blob(50_000, 1), blob(50_000, 2)
    manifest = make_manifest(OWNER, data)
    winner = make_manifest(OWNER, theirs, uuid=manifest["uuid"])

    async def racing_body() -> AsyncIterator[bytes]:
        async for chunk in _chunks(data):
            yield chunk
        await catalog.import_image(winner, _chunks(theirs))  # lands while ours is spooled

    with pytest.raises(ImageAlreadyExists):
        await catalog.import_image(manifest, racing_body())
    stored = await catalog.locate_file(manifest["uuid"])
    assert await read(catalog, stored.path) == theirs
    assert await stored_objects(catalog) == [stored.path]


async def test_a_duplicate_import_is_refused_before_any_upload(
    catalog: ObjectStoreCatalog,
) -> None:
    data = blob(10_000)
    manifest = make_manifest(OWNER, data)
    await catalog.import_image(manifest, _chunks(data))
    with pytest.raises(ImageAlreadyExists):
        await catalog.import_image(manifest, _chunks(blob(10_000, 9)))
    assert len(await stored_objects(catalog)) == 1


async def test_clones_share_the_file_and_the_last_delete_removes_it(
    catalog: ObjectStoreCatalog,
) -> None:
    data = blob(80_000)
    original = await catalog.import_image(make_manifest(OWNER, data), _chunks(data))
    clone = await catalog.clone_image(
        original.uuid, new_uuid="7b6c0f4e-5b1e-4c53-9a3e-3b9d9f2c1e11", fields={"name": "copy"}
    )
    assert clone.name == "copy" and clone.files == original.files
    location = (await catalog.locate_file(original.uuid)).path
    assert (await catalog.locate_file(clone.uuid)).path == location
    assert await catalog.delete_image(original.uuid)
    assert await read(catalog, location) == data  # the clone still uses it
    assert b"".join([c async for c in catalog.open_file(clone.uuid)]) == data
    assert await catalog.delete_image(clone.uuid)
    assert await catalog.storage.stat(location) is None
    assert not await catalog.delete_image(clone.uuid)
    with pytest.raises(ImageNotFound):
        await catalog.clone_image(original.uuid, new_uuid=original.uuid, fields={})


async def test_update_changes_only_the_manifest(catalog: ObjectStoreCatalog) -> None:
    data = blob(5_000)
    image = await catalog.import_image(make_manifest(OWNER, data), _chunks(data))
    updated = await catalog.update_image(image.uuid, {"description": "new", "public": True})
    assert updated.manifest["description"] == "new" and updated.public
    assert (await catalog.get_image(image.uuid)) == updated
    with pytest.raises(InvalidManifest):
        await catalog.update_image(image.uuid, {"name": ""})
    assert (await catalog.get_image(image.uuid)) == updated
    with pytest.raises(CatalogError):
        await catalog.update_image(image.uuid, {"owner": OWNER})
    with pytest.raises(ImageNotFound):
        await catalog.update_image("2b1d1f57-4c3e-4d8a-9e0f-0e6b3c0f2a51", {"name": "x"})


async def test_verify_reports_missing_and_changed_files(
    catalog: ObjectStoreCatalog,
) -> None:
    kept, lost, changed = blob(20_000, 1), blob(20_000, 2), blob(20_000, 3)
    await catalog.import_image(make_manifest(OWNER, kept), _chunks(kept))
    gone = await catalog.import_image(make_manifest(OWNER, lost), _chunks(lost))
    swapped = await catalog.import_image(make_manifest(OWNER, changed), _chunks(changed))
    assert [p async for p in catalog.verify_files(read=True)] == []
    await catalog.storage.delete_object((await catalog.locate_file(gone.uuid)).path)
    other = blob(20_000, 4)  # same size, other bytes: only a hash can tell

    async def body() -> AsyncIterator[bytes]:
        yield other

    path = (await catalog.locate_file(swapped.uuid)).path
    await catalog.storage.put_object(
        path, body, size=len(other), content_md5=md5_b64(other), content_type="x/y"
    )
    deep = {(p.uuid, p.problem.split()[0]) async for p in catalog.verify_files(read=True)}
    assert deep == {(gone.uuid, "missing:"), (swapped.uuid, "sha1")}
    shallow = {p.uuid: p.problem async for p in catalog.verify_files(read=False)}
    assert shallow[gone.uuid].startswith("missing")
    assert shallow[swapped.uuid].startswith("MD5")  # every target reports the MD5 of a PUT


async def test_the_sweep_removes_only_old_unreferenced_objects(
    catalog: ObjectStoreCatalog,
) -> None:
    data = blob(30_000)
    image = await catalog.import_image(make_manifest(OWNER, data), _chunks(data))
    used = (await catalog.locate_file(image.uuid)).path
    orphan = f"{PREFIX}/{image.uuid}/file0.0123456789ab"

    async def body() -> AsyncIterator[bytes]:
        yield b"left by a crashed import"

    await catalog.storage.put_object(
        orphan, body, size=24, content_md5=None, content_type="application/octet-stream"
    )
    assert await catalog.sweep_orphans(older_than=3600, dry_run=False) == []  # too young
    assert await catalog.sweep_orphans(older_than=-60, dry_run=True) == [orphan]
    assert await catalog.storage.stat(orphan) is not None  # a dry run deletes nothing
    assert await catalog.sweep_orphans(older_than=-60, dry_run=False) == [orphan]
    assert await catalog.storage.stat(orphan) is None
    assert await read(catalog, used) == data


async def test_records_survive_a_restart(
    storage_harness: TargetHarness,  # noqa: F811 - fixture use
    tmp_path: Path,
) -> None:
    await storage_harness.target.mkdir(f"/{OPERATOR}/stor")
    data = blob(12_345)
    async with assemble(storage_harness, tmp_path).opened() as first:
        image = await first.import_image(make_manifest(OWNER, data), _chunks(data))
    async with assemble(storage_harness, tmp_path).opened() as second:
        assert (await second.get_image(image.uuid)) == image
        assert b"".join([c async for c in second.open_file(image.uuid)]) == data


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"prefix": "imgapi"}, "prefix must be an absolute path"),
        ({"prefix": "/operator/stor"}, "prefix must be an absolute path"),
        ({"prefix": "/operator/stor/../x"}, "prefix must be an absolute path"),
        ({"prefix": "/operator/stor/a\nb"}, "prefix must be an absolute path"),
        ({"prefix": "/o/stor/i", "colour": 1}, "colour"),
        ({"prefix": "/o/stor/i", "storage": {"kind": "nope"}}, "unknown"),
    ],
)
def test_bad_sections_are_refused_at_start(
    tmp_path: Path, section: dict[str, Any], message: str
) -> None:
    settings = Settings(
        data_dir=tmp_path, storage={}, catalog={"kind": "objectstore", **section}
    )
    provided = Hooks(build_plugin_manager(settings)).provided()
    with pytest.raises(ConfigurationError, match=message):
        build_catalog(settings, provided.image_catalogs, provided.storage_targets, None)


def test_without_any_storage_the_catalog_says_what_to_configure(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, catalog={"kind": "objectstore", "prefix": PREFIX})
    provided = Hooks(build_plugin_manager(settings)).provided()
    with pytest.raises(ConfigurationError, match=r"configure \[storage\]"):
        build_catalog(settings, provided.image_catalogs, provided.storage_targets, None)


def test_records_are_plain_data() -> None:
    record = ImageRecord({"uuid": "u"}, (), ())
    assert record.uuid == "u" and record.image().files == ()
