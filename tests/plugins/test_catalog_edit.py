"""The embedded catalog's ``update_image`` and ``clone_image`` (``EditableCatalog``), on real
files and a real SQLite database."""

from __future__ import annotations

import errno
import hashlib
import os
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import plugins.catalog.embedded.store as store_module
from gateway.catalog import (
    CatalogError,
    EditableCatalog,
    ImageAlreadyExists,
    ImageNotFound,
    InvalidManifest,
)
from gateway.settings import Settings
from plugins.catalog.embedded import EmbeddedCatalog, EmbeddedCatalogFactory
from plugins.catalog.embedded.store import NO_LINK_ERRNOS, link_or_copy

UUID = "0b5e7b0c-1111-4222-8333-944444444444"
CLONE = "c1000000-1111-4222-8333-944444444444"
OWNER = "930896af-bf8c-48d4-885c-6573a94b1853"
CALLER = "5a1ce000-0000-4000-8000-000000000001"
DATA = bytes(range(256)) * (4 * 1024 + 7)  # just over 1 MiB

#: What the import stores for ``manifest()``, in IMGAPI's serialization order.
IMPORTED_KEYS = [
    "v", "uuid", "owner", "name", "version", "state", "disabled", "public", "published_at",
    "type", "os", "files", "description", "requirements", "tags",
]  # fmt: skip


def manifest(**changes: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "v": 2,
        "uuid": UUID,
        "owner": OWNER,
        "name": "base-64",
        "version": "1.0.0",
        "published_at": "2024-01-01T00:00:00.000Z",
        "type": "zone-dataset",
        "os": "smartos",
        "files": [
            {"sha1": hashlib.sha1(DATA).hexdigest(), "size": len(DATA), "compression": "gzip"}
        ],
        "description": "a test image",
        "requirements": {"min_ram": 256},
        "tags": {"role": "test"},
    }
    m.update(changes)
    return m


async def chunks(data: bytes = DATA, size: int = 100_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def read_all(catalog: EmbeddedCatalog, uuid: str) -> bytes:
    return b"".join([chunk async for chunk in catalog.open_file(uuid)])


@pytest.fixture
async def catalog(tmp_path: Path) -> AsyncIterator[EmbeddedCatalog]:
    cat = EmbeddedCatalogFactory().create({}, Settings(data_dir=tmp_path))
    await cat.open()
    await cat.import_image(manifest(), chunks())
    yield cat
    await cat.close()


def entries(catalog: EmbeddedCatalog) -> list[str]:
    """The catalog directory, database aside."""
    return sorted(p.name for p in catalog.root.iterdir() if not p.name.startswith("catalog."))


def test_the_embedded_catalog_is_editable(catalog: EmbeddedCatalog) -> None:
    assert isinstance(catalog, EditableCatalog)


# --- update_image ---------------------------------------------------------------------------


async def test_update_changes_the_stored_manifest(catalog: EmbeddedCatalog) -> None:
    image = await catalog.update_image(UUID, {"name": "renamed", "tags": {"a": "b"}})
    assert (image.manifest["name"], image.manifest["tags"]) == ("renamed", {"a": "b"})
    assert list(image.manifest) == IMPORTED_KEYS  # existing keys keep their places
    assert await catalog.get_image(UUID) == image
    assert image.files == (await catalog.get_image(UUID)).files  # type: ignore[union-attr]


async def test_new_keys_land_where_imgapi_serializes_them(catalog: EmbeddedCatalog) -> None:
    # Image.prototype.serialize: ..., files, acl, description, homepage, eula, ..., tags.
    image = await catalog.update_image(
        UUID, {"eula": "https://example.com/eula", "acl": [CALLER], "homepage": "https://x.io/"}
    )
    assert list(image.manifest) == [
        "v", "uuid", "owner", "name", "version", "state", "disabled", "public", "published_at",
        "type", "os", "files", "acl", "description", "homepage", "eula", "requirements", "tags",
    ]  # fmt: skip


async def test_none_removes_and_empty_values_follow_imgapi(catalog: EmbeddedCatalog) -> None:
    await catalog.update_image(UUID, {"acl": [CALLER]})
    image = await catalog.update_image(UUID, {"description": None, "acl": []})
    # IMGAPI's serialize drops an empty acl (`acl.length !== 0`) like a removed description.
    assert "description" not in image.manifest and "acl" not in image.manifest
    image = await catalog.update_image(UUID, {"tags": None})
    assert list(image.manifest) == [k for k in IMPORTED_KEYS if k not in ("description", "tags")]


async def test_disabled_moves_the_state(catalog: EmbeddedCatalog) -> None:
    # Image.prototype.disable/enable recompute the state from the two flags.
    image = await catalog.update_image(UUID, {"disabled": True})
    assert (image.manifest["state"], image.manifest["disabled"]) == ("disabled", True)
    image = await catalog.update_image(UUID, {"disabled": False})
    assert (image.manifest["state"], image.manifest["disabled"]) == ("active", False)


async def test_update_survives_reopening(catalog: EmbeddedCatalog, tmp_path: Path) -> None:
    await catalog.update_image(UUID, {"version": "2.0.0"})
    other = EmbeddedCatalog(catalog.root)
    await other.open()
    try:
        assert (await other.get_image(UUID)).manifest["version"] == "2.0.0"  # type: ignore[union-attr]
    finally:
        await other.close()


async def test_update_of_an_unknown_image(catalog: EmbeddedCatalog) -> None:
    with pytest.raises(ImageNotFound):
        await catalog.update_image(CLONE, {"name": "x"})
    assert not catalog.db.in_transaction


async def test_an_invalid_result_stores_nothing(catalog: EmbeddedCatalog) -> None:
    before = await catalog.get_image(UUID)
    with pytest.raises(InvalidManifest) as info:
        await catalog.update_image(UUID, {"name": "x" * 1025, "homepage": "ftp://nope"})
    assert [e["field"] for e in info.value.errors] == ["name", "homepage"]
    assert await catalog.get_image(UUID) == before
    assert not catalog.db.in_transaction


@pytest.mark.parametrize("field", ["uuid", "owner", "files"])
async def test_update_never_touches_identity_or_files(catalog: EmbeddedCatalog, field: str) -> None:
    with pytest.raises(CatalogError, match=field):
        await catalog.update_image(UUID, {field: None})


async def test_a_failure_inside_the_transaction_rolls_it_back(
    catalog: EmbeddedCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = await catalog.get_image(UUID)

    def boom(*args: Any) -> Any:
        raise RuntimeError("serializer failed")

    monkeypatch.setattr(store_module, "valid_changed_manifest", boom)
    with pytest.raises(RuntimeError):
        await catalog.update_image(UUID, {"name": "never"})
    monkeypatch.undo()
    assert not catalog.db.in_transaction
    assert await catalog.get_image(UUID) == before
    assert (await catalog.update_image(UUID, {"name": "later"})).manifest["name"] == "later"


async def test_two_processes_updating_lose_nothing(catalog: EmbeddedCatalog) -> None:
    # Another connection (another gateway process) changes another field between our reads.
    other = EmbeddedCatalog(catalog.root)
    await other.open()
    try:
        await other.update_image(UUID, {"name": "from-other"})
        await catalog.update_image(UUID, {"version": "9.9.9"})
        await other.update_image(UUID, {"description": "other again"})
        image = await catalog.get_image(UUID)
        assert image is not None
        m = image.manifest
        assert (m["name"], m["version"], m["description"]) == (
            "from-other",
            "9.9.9",
            "other again",
        )
    finally:
        await other.close()


async def test_a_writer_elsewhere_waits_for_the_update(catalog: EmbeddedCatalog) -> None:
    # BEGIN IMMEDIATE takes the write lock before reading, so a second writer blocks (and
    # times out) rather than interleaving its own read-modify-write.
    blocker = sqlite3.connect(catalog.root / "catalog.sqlite", isolation_level=None, timeout=0.1)
    blocker.execute("BEGIN IMMEDIATE")
    catalog.db.execute("PRAGMA busy_timeout=100")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await catalog.update_image(UUID, {"name": "blocked"})
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert not catalog.db.in_transaction
    assert (await catalog.update_image(UUID, {"name": "free"})).manifest["name"] == "free"


# --- clone_image ----------------------------------------------------------------------------


CLONE_FIELDS = {"owner": CALLER, "acl": None, "published_at": "2025-01-02T03:04:05.678Z"}


async def test_clone_records_a_new_image_with_the_same_bytes(catalog: EmbeddedCatalog) -> None:
    await catalog.update_image(UUID, {"acl": [CALLER]})
    original = await catalog.get_image(UUID)
    assert original is not None
    clone = await catalog.clone_image(UUID, new_uuid=CLONE, fields=CLONE_FIELDS)
    m = clone.manifest
    assert (m["uuid"], m["owner"]) == (CLONE, CALLER)
    assert m["published_at"] == CLONE_FIELDS["published_at"]
    assert "acl" not in m
    assert list(m) == [k for k in original.manifest if k != "acl"]
    changed = ("uuid", "owner", "published_at", "acl")
    assert {k: v for k, v in m.items() if k not in changed} == {
        k: v for k, v in original.manifest.items() if k not in changed
    }
    assert clone.files == original.files  # content_md5 included
    assert await catalog.get_image(CLONE) == clone
    assert await catalog.get_image(UUID) == original
    assert await read_all(catalog, CLONE) == DATA


async def test_clone_hard_links_the_file(catalog: EmbeddedCatalog) -> None:
    await catalog.clone_image(UUID, new_uuid=CLONE, fields=CLONE_FIELDS)
    a, b = catalog.file_path(UUID).stat(), catalog.file_path(CLONE).stat()
    assert a.st_ino == b.st_ino and a.st_dev == b.st_dev
    assert a.st_nlink == b.st_nlink == 2


@pytest.mark.parametrize("deleted", [UUID, CLONE])
async def test_each_survives_the_deletion_of_the_other(
    catalog: EmbeddedCatalog, deleted: str
) -> None:
    await catalog.clone_image(UUID, new_uuid=CLONE, fields=CLONE_FIELDS)
    kept = CLONE if deleted == UUID else UUID
    assert await catalog.delete_image(deleted)
    assert await catalog.get_image(deleted) is None
    assert await read_all(catalog, kept) == DATA
    assert catalog.file_path(kept).stat().st_nlink == 1
    assert entries(catalog) == [kept]


async def test_a_clone_of_a_clone(catalog: EmbeddedCatalog) -> None:
    await catalog.clone_image(UUID, new_uuid=CLONE, fields=CLONE_FIELDS)
    third = "c2000000-1111-4222-8333-944444444444"
    await catalog.clone_image(CLONE, new_uuid=third, fields={"name": "third"})
    assert catalog.file_path(third).stat().st_nlink == 3
    await catalog.delete_image(UUID)
    await catalog.delete_image(CLONE)
    assert await read_all(catalog, third) == DATA


async def test_linking_runs_off_the_event_loop(
    catalog: EmbeddedCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[threading.Thread] = []
    real_link = os.link

    def recording_link(src: Any, dst: Any) -> None:
        threads.append(threading.current_thread())
        real_link(src, dst)

    monkeypatch.setattr(store_module.os, "link", recording_link)
    await catalog.clone_image(UUID, new_uuid=CLONE, fields=CLONE_FIELDS)
    assert threads and threads[0] is not threading.main_thread()


@pytest.mark.parametrize("code", sorted(NO_LINK_ERRNOS))
async def test_clone_copies_where_the_filesystem_refuses_links(
    catalog: EmbeddedCatalog, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    def refuse(src: Any, dst: Any) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(store_module.os, "link", refuse)
    clone = await catalog.clone_image(UUID, new_uuid=CLONE, fields=CLONE_FIELDS)
    a, b = catalog.file_path(UUID).stat(), catalog.file_path(CLONE).stat()
    assert a.st_ino != b.st_ino and a.st_nlink == b.st_nlink == 1
    assert await read_all(catalog, CLONE) == DATA
    assert hashlib.sha1(await read_all(catalog, CLONE)).hexdigest() == clone.files[0].sha1
    await catalog.delete_image(UUID)
    assert await read_all(catalog, CLONE) == DATA


def test_link_or_copy_says_which(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "source"
    source.write_bytes(b"abc")
    assert link_or_copy(source, tmp_path / "linked") == "link"

    def cross_device(src: Any, dst: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(store_module.os, "link", cross_device)
    assert link_or_copy(source, tmp_path / "copied") == "copy"
    assert (tmp_path / "copied").read_bytes() == b"abc"


async def test_another_link_error_fails_and_leaves_nothing(
    catalog: EmbeddedCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(src: Any, dst: Any) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(store_module.os, "link", broken)
    with pytest.raises(OSError, match="I/O error"):
        await catalog.clone_image(UUID, new_uuid=CLONE, fields=CLONE_FIELDS)
    assert await catalog.get_image(CLONE) is None
    assert entries(catalog) == [UUID]


async def test_clone_of_an_unknown_image(catalog: EmbeddedCatalog) -> None:
    with pytest.raises(ImageNotFound):
        await catalog.clone_image(CLONE, new_uuid="c2000000-1111-4222-8333-944444444444", fields={})
    assert entries(catalog) == [UUID]


async def test_clone_onto_a_taken_uuid(catalog: EmbeddedCatalog) -> None:
    with pytest.raises(ImageAlreadyExists):
        await catalog.clone_image(UUID, new_uuid=UUID, fields=CLONE_FIELDS)
    await catalog.clone_image(UUID, new_uuid=CLONE, fields=CLONE_FIELDS)
    with pytest.raises(ImageAlreadyExists):
        await catalog.clone_image(UUID, new_uuid=CLONE, fields=CLONE_FIELDS)
    # A directory claimed by an import or clone in flight (no row yet) is taken too.
    busy = "c3000000-1111-4222-8333-944444444444"
    (catalog.root / busy).mkdir()
    with pytest.raises(ImageAlreadyExists):
        await catalog.clone_image(UUID, new_uuid=busy, fields=CLONE_FIELDS)
    assert (catalog.root / busy).is_dir() and not any((catalog.root / busy).iterdir())


async def test_clone_with_invalid_fields_stores_nothing(catalog: EmbeddedCatalog) -> None:
    with pytest.raises(InvalidManifest):
        await catalog.clone_image(UUID, new_uuid=CLONE, fields={"owner": "not-a-uuid"})
    assert entries(catalog) == [UUID]


@pytest.mark.parametrize("field", ["uuid", "files"])
async def test_clone_never_sets_uuid_or_files(catalog: EmbeddedCatalog, field: str) -> None:
    with pytest.raises(CatalogError, match=field):
        await catalog.clone_image(UUID, new_uuid=CLONE, fields={field: None})


async def test_a_source_deleted_while_cloning_is_not_found(
    catalog: EmbeddedCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process deletes the source between our read of its row and the link.
    def deleted_meanwhile(source: Path, destination: Path) -> str:
        other = sqlite3.connect(catalog.root / "catalog.sqlite", isolation_level=None)
        other.execute("DELETE FROM images WHERE uuid = ?", (UUID,))
        other.close()
        raise FileNotFoundError(source)

    monkeypatch.setattr(store_module, "link_or_copy", deleted_meanwhile)
    with pytest.raises(ImageNotFound):
        await catalog.clone_image(UUID, new_uuid=CLONE, fields=CLONE_FIELDS)
    assert await catalog.get_image(CLONE) is None
    assert not (catalog.root / CLONE).exists()
